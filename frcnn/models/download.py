"""Downloading pretrained weights with progress, for users who are online.

torchvision's weights API names each file ``<name>-<sha256 prefix>.pth``; :func:`fetch` streams the file
into torch's hub cache (``~/.cache/torch/hub/checkpoints/``), reports progress through a callback (the
app's progress bar, the CLI's tqdm), checks the hash prefix, and moves it into place only when complete.
The file is then read like any other weights file, with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from frcnn.errors import FrcnnError

HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")  # torch.hub's convention: name-<sha256 prefix>.ext
Progress = Callable[[int, int], None]  # (bytes done, bytes in all or 0 when unknown)


def fetch(url: str, target: Path, progress: Progress | None = None, chunk: int = 1 << 20) -> Path:
    """Download ``url`` to ``target`` (atomically), checking the hash prefix in the file's name if any."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while block := response.read(chunk):
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise FrcnnError(f"cannot download {url} ({getattr(exc, 'reason', exc)})") from None
    expected = HASH_PREFIX.search(target.name)
    if expected and not digest.hexdigest().startswith(expected.group(1)):
        tmp.unlink(missing_ok=True)
        raise FrcnnError(f"{target.name}: the download's sha256 does not start with {expected.group(1)} (corrupt)")
    os.replace(tmp, target)
    return target
