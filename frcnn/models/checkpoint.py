"""Checkpoints: the project's own file format, and raw state dicts of torchvision models.

A checkpoint is a plain dict saved with ``torch.save`` and read with ``torch.load(weights_only=True)``
only, so a file can never run code while it loads:

    {"format": "frcnn-checkpoint/1", "model": "default", "class_names": [...],
     "settings": {flat key: value}, "state_dict": {...}, "meta": {...}}

``meta`` holds what training wants to resume (step, optimiser state, log); the app ignores it.

Before ``torch.load`` a file is checked for what loading it would allocate: ``torch.save`` writes a zip whose
records are stored uncompressed, so their sizes add up to about the file's size; ``torch.load`` also inflates
deflate-compressed records, so a 1 MB file could ask for 1 GB. The sum of the records' uncompressed sizes must
stay under ``max_bytes`` (:data:`MAX_WEIGHTS_BYTES`; the app passes less for uploads), a compressed record may
expand at most :data:`MAX_RECORD_RATIO`:1, and the zip directory must agree with the file (stored records'
sizes equal, compressed sizes adding up to no more than the file). The pre-1.6 format (torchvision's
vgg16 weights are in it) allocates each storage at the size its pickle declares before reading the data, so
its pickle is first scanned by an unpickler that builds nothing and imports nothing (:class:`_StorageScan`):
the declared storages must fit in ``max_bytes`` and in the file itself.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from frcnn.errors import FrcnnError

FORMAT = "frcnn-checkpoint/1"
MAX_WEIGHTS_BYTES: int = 600 * 2**20  # records' uncompressed bytes: vgg16's ~528 MB fit, resnet50_fpn_v2 167 MB
MAX_RECORD_RATIO: int = 20  # uncompressed : compressed of one deflated record (torch.save stores, 1:1)
_RATIO_FREE_BYTES = 2**20  # records up to this size are not ratio-checked
_PROTOCOL_WARNING = r"Detected pickle protocol \d+ in the checkpoint"
"""torch's weights_only unpickler warns (two lines on stderr) on a pickle protocol other than torch.save's 2,
before it refuses or loads the file: a crafted file (``pickle.dumps`` writes protocol 4 or 5) would print it
above our one-line refusal. Ignored around ``torch.load`` only. ``catch_warnings`` saves and restores the
process's filter list, so with two threads loading at once this one filter may stay in place (harmless), and a
filter another thread adds during a load may be dropped (Python's caveat for every ``catch_warnings``)."""


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


def read_weights_file(path: str | os.PathLike, max_bytes: int = MAX_WEIGHTS_BYTES) -> dict[str, Any]:
    """Load a checkpoint or a raw state dict, safely: nothing runs, and a file that would allocate more
    than ``max_bytes`` is refused before anything is loaded. Raises FrcnnError with one line on any problem."""
    path = Path(path)
    if not path.is_file():
        raise FrcnnError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise FrcnnError(f"{path}: empty file (0 bytes)")
    check_weights_size(path, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PROTOCOL_WARNING, category=UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f"it would load {found.group(1)}" if found else "it holds more than tensors and plain values"
        raise FrcnnError(f"{path}: refused, not a plain weights file ({what}; only weights_only files load)") from None
    except MemoryError:
        raise FrcnnError(f"{path}: out of memory loading it") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        if "allocate" in str(exc):  # torch's allocator: "DefaultCPUAllocator: can't allocate memory"
            raise FrcnnError(f"{path}: out of memory loading it") from None
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


def check_weights_size(path: str | os.PathLike, max_bytes: int = MAX_WEIGHTS_BYTES) -> int:
    """The bytes ``torch.load`` would allocate for the records of ``path`` (their uncompressed sizes), read
    from the zip directory without loading anything; FrcnnError past ``max_bytes`` or when the directory
    cannot be true (see the module docstring)."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise FrcnnError(f"{path}: {size} bytes is over the limit of {max_bytes} bytes ({_mb(max_bytes)}) for a "
                         "weights file")
    try:
        with zipfile.ZipFile(path) as z:
            records = z.infolist()
    except zipfile.BadZipFile as exc:
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":  # a zip, cut short or damaged
                raise FrcnnError(f"{path}: not a readable PyTorch weights file (truncated or corrupt: "
                                 f"{str(exc)[:120]})") from None
        return _check_legacy_size(path, size, max_bytes)
    except (OSError, EOFError, ValueError, zipfile.LargeZipFile) as exc:
        raise FrcnnError(f"{path}: not a readable PyTorch weights file ({type(exc).__name__}: {exc})") from None
    total = sum(r.file_size for r in records)
    if total > max_bytes:
        raise FrcnnError(f"{path}: refused, its records would take {total} bytes ({_mb(total)}) once loaded, "
                         f"over the limit of {max_bytes} bytes ({_mb(max_bytes)})")
    if sum(r.compress_size for r in records) > size:
        raise FrcnnError(f"{path}: refused, its zip directory declares more data than the file holds "
                         "(corrupt or crafted)")
    for r in records:
        if r.compress_type == zipfile.ZIP_STORED and r.compress_size != r.file_size:
            raise FrcnnError(f"{path}: refused, record {r.filename[:40]!r} is stored but declares "
                             f"{r.file_size} bytes for {r.compress_size} (corrupt or crafted)")
        if r.file_size > _RATIO_FREE_BYTES and r.file_size > MAX_RECORD_RATIO * max(r.compress_size, 1):
            raise FrcnnError(f"{path}: refused, record {r.filename[:40]!r} expands {r.compress_size} bytes to "
                             f"{r.file_size} ({_mb(r.file_size)}), over {MAX_RECORD_RATIO}:1 (a decompression "
                             "bomb?)")
    return total


def _mb(n: int) -> str:
    """``n`` bytes for people: "4.0 KB", "1.5 MB", "600 MB"."""
    if n < 2**20:
        return f"{n / 2**10:.1f} KB"
    return f"{n / 2**20:.1f} MB" if n < 10 * 2**20 else f"{n >> 20} MB"


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a pre-1.6 torch.save file
_ELEMENT_BYTES = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
                  "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
                  "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16}
_LARGEST_ELEMENT = 16  # bytes, assumed for a storage type not in _ELEMENT_BYTES


def _check_legacy_size(path: Path, size: int, max_bytes: int) -> int:
    """The storage bytes a pre-1.6 file declares (see the module docstring), refused past ``max_bytes`` or
    past the file's own size."""
    scan = _StorageScan(path)
    total = sum(scan.storage_bytes.values())
    if total > max_bytes:
        raise FrcnnError(f"{path}: refused, its tensors would take {total} bytes ({_mb(total)}) once loaded, "
                         f"over the limit of {max_bytes} bytes ({_mb(max_bytes)})")
    if total > size:
        raise FrcnnError(f"{path}: refused, it declares {total} bytes of tensors but the file holds {size} "
                         "(corrupt or crafted)")
    return total


class _Inert:
    """Stands for every class, function and object a scanned pickle names: it accepts any call, item or
    state and keeps none of it, so scanning runs no code and builds nothing big."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert()

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _StorageScan(pickle.Unpickler):
    """Reads the pickles at the head of a pre-1.6 weights file the way torch does (magic number, protocol,
    system info, the object), recording each storage's declared bytes by its root key instead of allocating."""

    def __init__(self, path: Path) -> None:
        self.path, self.storage_bytes, self._classes = path, {}, {}
        with open(path, "rb") as f:
            super().__init__(f)
            try:
                if self.load() != _LEGACY_MAGIC:
                    raise FrcnnError(f"{path}: not a PyTorch weights file (neither the zip format torch.save "
                                     "writes nor its pre-1.6 format)")
                self.load(), self.load(), self.load()  # protocol version, system info, the object
            except FrcnnError:
                raise
            except MemoryError:
                raise FrcnnError(f"{path}: out of memory reading it") from None
            except Exception as exc:  # noqa: BLE001 - a malformed pickle fails in many ways
                raise FrcnnError(f"{path}: not a readable PyTorch weights file (truncated or corrupt: "
                                 f"{type(exc).__name__})") from None

    def find_class(self, module: str, name: str) -> type:
        key = str(name)[:100]  # one class a name, kept for this scan only
        if key not in self._classes:
            self._classes[key] = type(key, (_Inert,), {})
        return self._classes[key]

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 6 and pid[0] in ("storage", b"storage"):
            storage_type, root_key, _, numel, _ = pid[1:]
            if not isinstance(numel, int) or numel < 0:
                raise FrcnnError(f"{self.path}: refused, a storage declares {str(numel)[:20]!r} elements")
            element = _ELEMENT_BYTES.get(getattr(storage_type, "__name__", ""), _LARGEST_ELEMENT)
            key = str(root_key)[:100]
            self.storage_bytes[key] = max(self.storage_bytes.get(key, 0), numel * element)
        return _Inert()
