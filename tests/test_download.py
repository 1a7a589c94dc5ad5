"""Weights downloads: streamed with progress, hash-checked, then loaded with weights_only (a file:// URL
stands in for the network)."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest
import torch

from frcnn.errors import FrcnnError
from frcnn.models import registry
from frcnn.models.download import fetch


def _weights_file(tmp_path, name="weights"):
    src = tmp_path / "src.pth"
    torch.save({"w": torch.arange(1000.0)}, src)
    prefix = hashlib.sha256(src.read_bytes()).hexdigest()[:8]
    named = tmp_path / f"{name}-{prefix}.pth"
    src.rename(named)
    return named


def test_fetch_reports_progress_and_checks_the_hash(tmp_path):
    src = _weights_file(tmp_path)
    seen = []
    out = fetch(src.as_uri(), tmp_path / "hub" / src.name, lambda done, total: seen.append((done, total)), chunk=512)
    assert out.read_bytes() == src.read_bytes()
    assert len(seen) > 2 and seen[-1][0] == src.stat().st_size
    assert all(a[0] < b[0] for a, b in zip(seen, seen[1:], strict=False))


def test_fetch_refuses_a_file_whose_hash_does_not_match(tmp_path):
    src = _weights_file(tmp_path)
    wrong = tmp_path / "weights-00000000.pth"
    wrong.write_bytes(src.read_bytes())
    with pytest.raises(FrcnnError, match="sha256"):
        fetch(wrong.as_uri(), tmp_path / "hub" / wrong.name)
    assert not (tmp_path / "hub" / wrong.name).exists()
    with pytest.raises(FrcnnError, match="cannot download"):
        fetch((tmp_path / "missing-12345678.pth").as_uri(), tmp_path / "hub" / "missing-12345678.pth")


def test_a_weights_entry_downloads_into_the_hub_cache_once(tmp_path, monkeypatch):
    monkeypatch.delenv(registry.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    src = _weights_file(tmp_path)
    entry = SimpleNamespace(url=src.as_uri())
    state = registry._download(entry)
    assert torch.equal(state["w"], torch.arange(1000.0))
    assert (tmp_path / "hub" / "checkpoints" / src.name).is_file()
    src.unlink()  # the second time it comes from the cache
    assert torch.equal(registry._download(entry)["w"], torch.arange(1000.0))
