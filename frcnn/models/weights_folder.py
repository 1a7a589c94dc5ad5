"""The server's weights folder: weights files the operator put on disk, offered per model.

Uploads from visitors stay capped (the app's 25 MB); big files (vgg16's 528 MB, resnet50_fpn_v2's 167 MB)
reach the app through two folders on the server instead:

- torchvision's cache, ``torch.hub.get_dir()/checkpoints`` (``~/.cache/torch/hub/checkpoints/``): only the
  file torchvision publishes for the model, under its published name (the basename of the weights enum's
  ``url``, e.g. ``fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth``);
- the folder named by ``$FRCNN_WEIGHTS_DIR`` (:data:`WEIGHTS_DIR_ENV`): the published file as well, and any
  other ``.pt`` / ``.pth`` file in it (not its subfolders) that fits the model: a checkpoint of this project
  for that model, or a state dict whose keys are the model's (a VGG-16 ImageNet state dict for ``vgg16``).
  Whether a file fits is read from its pickle alone (:class:`_Peek`: no tensor is loaded, nothing is imported
  or run); a file whose pickle cannot be read that way is offered and checked when it loads.

A published name carries the first hex digits of the file's SHA-256 (torch.hub's ``check_hash`` convention,
:data:`frcnn.models.download.HASH_PREFIX`): such a file is hashed and offered only when its digest starts
with them (``verified`` True; False: corrupt or not torchvision's). Hashing 528 MB takes seconds, so the
digest is kept per (path, size, mtime). Other files have no published hash (``verified`` None).

Chosen files load like any other weights path, ``read_weights_file`` (``weights_only=True`` and the size
checks).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from frcnn.models.checkpoint import FORMAT
from frcnn.models.download import HASH_PREFIX

WEIGHTS_DIR_ENV = "FRCNN_WEIGHTS_DIR"
SUFFIXES = (".pt", ".pth")
MAX_FILES = 100  # files of a folder looked at, by name: a folder is the operator's, not a dump
MAX_PICKLE_BYTES = 64 << 20  # a zip's data.pkl read to tell what a file holds (a big model's: ~100 KB)
_CACHE_ENTRIES = 256
HUB_CACHE, WEIGHTS_DIR = "torch hub cache", f"${WEIGHTS_DIR_ENV}"  # where a file was found, for its label


@dataclass(frozen=True)
class WeightsFile:
    """One file the app can offer for a model."""

    path: Path  # on the server; never shown to visitors (``label`` names the file and its folder)
    label: str  # "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth (torch hub cache, sha256 checked)"
    verified: bool | None  # sha256 starts with the name's prefix: True / False; None: no published hash


def published_name(model_name: str) -> str | None:
    """torchvision's file name for the model's weights ("vgg16-397923af.pth"), None when it has none."""
    from frcnn.models.registry import REGISTRY

    spec = REGISTRY.get(model_name)
    enum = None if spec is None else (spec.coco_weights or spec.backbone_weights)
    return None if enum is None else os.path.basename(enum.url)


def available_weights(model_name: str) -> list[WeightsFile]:
    """The files in the hub cache and in ``$FRCNN_WEIGHTS_DIR`` that fit ``model_name`` (see the module
    docstring), the published file first; mismatched hashes are listed with ``verified`` False."""
    from frcnn.models.registry import MODEL_NAMES

    own = published_name(model_name)
    others = {published_name(m) for m in MODEL_NAMES if m != model_name} - {None, own}
    found: list[WeightsFile] = []
    seen: set[Path] = set()
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    folders = [(hub, HUB_CACHE)]
    if os.environ.get(WEIGHTS_DIR_ENV):
        folders.append((Path(os.environ[WEIGHTS_DIR_ENV]).expanduser(), WEIGHTS_DIR))
    for folder, where in folders:
        for path in _weights_files(folder):
            key = path.resolve()
            if key in seen or path.name in others:
                continue
            if path.name == own:
                seen.add(key)
                verified = hash_matches(path)
                note = "sha256 checked" if verified else "sha256 does not match its name"
                found.append(WeightsFile(path, f"{path.name} ({where}, {note})", verified))
            elif where == WEIGHTS_DIR and _fits(path, model_name) is not False:
                seen.add(key)
                found.append(WeightsFile(path, f"{path.name} ({where})", None))
    return sorted(found, key=lambda f: f.path.name != own)


def hash_matches(path: Path) -> bool | None:
    """Whether the file's sha256 starts with the hex digits its name carries ("name-<prefix>.pth"); None when
    the name carries none. The digest is computed once per (path, size, mtime)."""
    expected = HASH_PREFIX.search(path.name)
    if expected is None:
        return None
    return _sha256(path).startswith(expected.group(1))


def _weights_files(folder: Path) -> list[Path]:
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(SUFFIXES))[:MAX_FILES]
    except OSError:  # no such folder, not a folder, not readable
        return []
    return [folder / n for n in names if (folder / n).is_file()]


_digests: dict[tuple[str, int, int], str] = {}
_fits_cache: dict[tuple[str, int, int, str], bool | None] = {}
_lock = threading.Lock()  # the app's sessions run in threads


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _remember(store: dict, key: tuple, value: Any) -> Any:
    with _lock:
        if len(store) >= _CACHE_ENTRIES:
            store.pop(next(iter(store)))
        store[key] = value
    return value


def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    key = _file_key(path)
    if key in _digests:
        return _digests[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return _remember(_digests, key, digest.hexdigest())


def _fits(path: Path, model_name: str) -> bool | None:
    """Whether the file holds weights for ``model_name``, read from its pickle alone; None: cannot tell."""
    key = (*_file_key(path), model_name)
    if key in _fits_cache:
        return _fits_cache[key]
    data = _peek(path)
    if not isinstance(data, dict):
        fits = None
    elif data.get("format") == FORMAT:
        fits = data.get("model") == model_name
    else:
        state = data["model"] if isinstance(data.get("model"), dict) else data  # a training-script dump
        keys = frozenset(k for k in state if isinstance(k, str))
        fits = keys == model_keys(model_name) or (model_name == "vgg16" and keys == _vgg16_imagenet_keys())
    return _remember(_fits_cache, key, fits)


@cache
def model_keys(model_name: str) -> frozenset[str]:
    """The state-dict keys of the model, from a build on the meta device (no memory, no weights)."""
    from frcnn.models.registry import REGISTRY

    with torch.device("meta"):
        return frozenset(REGISTRY[model_name].build(2).state_dict())


@cache
def _vgg16_imagenet_keys() -> frozenset[str]:
    from torchvision.models import vgg16

    with torch.device("meta"):
        return frozenset(vgg16(weights=None).state_dict())


def _peek(path: Path) -> Any:
    """The file's object with every tensor, class and function replaced by a stand-in; None when unreadable."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                record = next((r for r in z.infolist() if r.filename.endswith("/data.pkl")), None)
                if record is None or record.file_size > MAX_PICKLE_BYTES:
                    return None
                with z.open(record) as f:
                    return _Peek(f).load()
        with open(path, "rb") as f:  # the pre-1.6 format: magic number, protocol, system info, the object
            peek = _Peek(f)
            for _ in range(3):
                peek.load()
            return peek.load()
    except Exception:  # noqa: BLE001 - a file that is not a pickle fails in many ways: "cannot tell"
        return None


class _Stub:
    """Stands for every class, function and tensor a peeked pickle names: takes any call or state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Stub:
        return _Stub()

    def __setstate__(self, state: Any) -> None:
        pass


class _Dict(dict):
    """collections.OrderedDict in a peeked pickle (a state dict's, with its ``_metadata`` attribute)."""


class _Peek(pickle.Unpickler):
    """An unpickler that imports nothing and builds only dicts, lists, strings, numbers and :class:`_Stub`."""

    def find_class(self, module: str, name: str) -> type:
        return _Dict if (module, name) == ("collections", "OrderedDict") else _Stub

    def persistent_load(self, pid: Any) -> Any:
        return _Stub()
