"""Checkpoints: the project's own file format, and raw state dicts of torchvision models.

A checkpoint is a plain dict saved with ``torch.save`` and read with ``torch.load(weights_only=True)``
only, so a file can never run code while it loads:

    {"format": "frcnn-checkpoint/1", "model": "default", "class_names": [...],
     "settings": {flat key: value}, "state_dict": {...}, "meta": {...}}

``meta`` holds what training wants to resume (step, optimiser state, log); the app ignores it.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from frcnn.errors import FrcnnError

FORMAT = "frcnn-checkpoint/1"


def save_checkpoint(path: str | os.PathLike, model: str, class_names: list[str], settings: Mapping[str, Any],
                    state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any] | None = None) -> None:
    """Write atomically (temp file, then rename), so an interrupted save never leaves a broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "model": model, "class_names": list(class_names),
               "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
               "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "meta": dict(meta or {})}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_weights_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint or a raw state dict, safely. Raises FrcnnError with one line on any problem."""
    path = Path(path)
    if not path.is_file():
        raise FrcnnError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise FrcnnError(f"{path}: empty file (0 bytes)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f"it would load {found.group(1)}" if found else "it holds more than tensors and plain values"
        raise FrcnnError(f"{path}: refused, not a plain weights file ({what}; only weights_only files load)") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise FrcnnError(f"{path}: not a readable PyTorch weights file (truncated or corrupt: "
                         f"{str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise FrcnnError(f"{path}: expected a dict of weights, found {type(data).__name__}")
    if data.get("format") == FORMAT:
        for key in ("model", "class_names", "settings", "state_dict"):
            if key not in data:
                raise FrcnnError(f"{path}: checkpoint has no {key!r}")
        return data
    if "model" in data and isinstance(data["model"], dict) and "format" not in data:
        data = data["model"]  # a training-script dump {"model": state_dict, ...}
    if not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise FrcnnError(f"{path}: neither an frcnn checkpoint nor a state dict of tensors")
    return {"format": None, "model": None, "class_names": None, "settings": None, "state_dict": data, "meta": {}}
