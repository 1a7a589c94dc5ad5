"""The server's weights folder (issue 16, items 11-12): torchvision's cache and $FRCNN_WEIGHTS_DIR offer the
files that fit each model, published names hash-checked (once per file version), the sidebar's picker returns
the chosen path, and a crafted checkpoint is refused in one line with no torch warning."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from frcnn.errors import FrcnnError
from frcnn.models import load_model, save_checkpoint
from frcnn.models import weights_folder as wf
from frcnn.models.registry import REGISTRY, build_default

RESNET = "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth"  # torchvision's published name


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """An empty hub cache (TORCH_HOME) and an empty $FRCNN_WEIGHTS_DIR, both under tmp_path."""
    hub, own = tmp_path / "torch" / "hub" / "checkpoints", tmp_path / "weights"
    hub.mkdir(parents=True)
    own.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(wf.WEIGHTS_DIR_ENV, str(own))
    wf._digests.clear()
    wf._fits_cache.clear()
    return hub, own


def _published(monkeypatch, model: str, data: bytes, digits: int = 8) -> str:
    """Make ``model``'s published file name one whose hash prefix ``data`` matches (a real one cannot be
    forged), e.g. "fake_coco-1a2b3c4d.pth"."""
    name = f"fake_coco-{hashlib.sha256(data).hexdigest()[:digits]}.pth"
    real = wf.published_name
    monkeypatch.setattr(wf, "published_name", lambda m: name if m == model else real(m))
    return name


def _default_checkpoint(path: Path) -> Path:
    det_classes = REGISTRY["default"].class_names()
    module = build_default(len(det_classes))
    save_checkpoint(path, "default", list(det_classes), REGISTRY["default"].defaults.to_flat(), module.state_dict())
    return path


def test_published_names_come_from_the_weights_enums():
    assert wf.published_name("resnet50_fpn_v2") == RESNET
    assert wf.published_name("vgg16") == "vgg16-397923af.pth"
    assert wf.published_name("mobilenet_v3_fpn").startswith("fasterrcnn_mobilenet_v3_large_fpn")
    assert wf.published_name("default") is None


def test_nothing_on_disk_offers_nothing(folders, monkeypatch):
    monkeypatch.delenv(wf.WEIGHTS_DIR_ENV)
    assert all(wf.available_weights(m) == [] for m in REGISTRY)


def test_a_published_file_is_offered_when_its_sha256_starts_with_its_name(folders, monkeypatch):
    hub, own = folders
    data = b"weights of a detector" * 1000
    name = _published(monkeypatch, "resnet50_fpn_v2", data)
    (hub / name).write_bytes(data)
    (own / name).write_bytes(data[::-1])  # same name, other bytes: corrupt
    (hub / "other_file-0123abcd.pth").write_bytes(b"x")  # the cache's other files are not the operator's
    files = wf.available_weights("resnet50_fpn_v2")
    assert [(f.path, f.verified) for f in files] == [(hub / name, True), (own / name, False)]
    assert files[0].label == f"{name} (torch hub cache, sha256 checked)"
    assert str(hub) not in files[0].label  # a label never shows a server path
    assert wf.available_weights("mobilenet_v3_fpn") == [] and wf.available_weights("default") == []


def test_a_real_published_name_with_other_bytes_is_not_verified(folders):
    hub, _ = folders
    (hub / RESNET).write_bytes(b"not torchvision's file")
    assert [f.verified for f in wf.available_weights("resnet50_fpn_v2")] == [False]


def test_the_digest_is_kept_per_path_size_and_mtime(folders, monkeypatch):
    hub, _ = folders
    data = b"a" * 5000
    name = _published(monkeypatch, "vgg16", data)
    (hub / name).write_bytes(data)
    hashed = []
    real = hashlib.sha256
    monkeypatch.setattr(wf.hashlib, "sha256", lambda *a: hashed.append(1) or real(*a))
    assert [f.verified for f in wf.available_weights("vgg16")] == [True]
    assert [f.verified for f in wf.available_weights("vgg16")] == [True] and len(hashed) == 1
    (hub / name).write_bytes(b"b" * 5000)  # same size, new content: a new mtime
    os.utime(hub / name, ns=(1, 1))
    assert [f.verified for f in wf.available_weights("vgg16")] == [False] and len(hashed) == 2


def test_other_files_in_the_folder_are_offered_to_the_model_they_fit(folders):
    _, own = folders
    _default_checkpoint(own / "shapes.pt")
    save_checkpoint(own / "vgg_run.pt", "vgg16", ["__background__", "a"], {}, {"w": torch.zeros(1)})
    mobilenet = {k: torch.zeros(1) for k in wf.model_keys("mobilenet_v3_fpn")}
    torch.save(mobilenet, own / "mobilenet_state.pth")
    torch.save({k: torch.zeros(1) for k in ("features.0.weight", "classifier.0.weight")}, own / "bad_vgg.pth")
    (own / "unreadable.pt").write_bytes(b"not a pickle at all")
    (own / "notes.txt").write_text("ignored: not .pt/.pth")
    (own / wf.published_name("resnet50_fpn_v2")).write_bytes(b"x")  # another model's file, by its name
    names = {m: [f.path.name for f in wf.available_weights(m)] for m in REGISTRY}
    assert names == {"default": ["shapes.pt", "unreadable.pt"], "vgg16": ["unreadable.pt", "vgg_run.pt"],
                     "resnet50_fpn_v2": [RESNET, "unreadable.pt"],
                     "mobilenet_v3_fpn": ["mobilenet_state.pth", "unreadable.pt"]}
    assert all(f.verified is None for f in wf.available_weights("default"))
    assert wf.available_weights("resnet50_fpn_v2")[0].verified is False  # its bytes are not torchvision's


def test_peeking_runs_nothing(folders, tmp_path, monkeypatch):
    _, own = folders
    mark = tmp_path / "ran"
    monkeypatch.setenv("FRCNN_EVIL_MARK", str(mark))
    torch.save({"format": "frcnn-checkpoint/1", "model": "default", "hook": _Evil()}, own / "evil.pt")
    assert [f.path.name for f in wf.available_weights("default")] == ["evil.pt"]
    with pytest.raises(FrcnnError, match="refused"):
        load_model("default", own / "evil.pt", "cpu")
    assert not mark.exists()


def test_a_listed_file_loads_with_the_usual_checks(folders):
    _, own = folders
    path = _default_checkpoint(own / "shapes.pt")
    chosen = wf.available_weights("default")[0].path
    det = load_model("default", chosen, "cpu")
    assert det.weights == str(path) and det.class_names == REGISTRY["default"].class_names()


def test_a_vgg16_imagenet_file_goes_to_the_backbone_and_names_what_does_not_fit(tmp_path):
    """torchvision's vgg16-397923af.pth (features.*, classifier.*) is a backbone file, loaded as "auto" loads
    it; the real one is 528 MB, so here a file of its keys with wrong shapes says where it does not fit."""
    keys = {k: torch.zeros(1) for k in wf._vgg16_imagenet_keys()}
    torch.save(keys, tmp_path / "vgg16-00000000.pth")
    with pytest.raises(FrcnnError, match="does not fit vgg16's backbone") as err:
        load_model("vgg16", tmp_path / "vgg16-00000000.pth", "cpu")
    assert "\n" not in str(err.value)


# ---- the sidebar's picker ----------------------------------------------------------------------------


def _picker_script():
    import streamlit as st

    from app_pages._weights import weights_picker

    st.text(f"chosen: {weights_picker('resnet50_fpn_v2', st.sidebar)}")


def test_the_picker_offers_the_folders_files_and_returns_the_chosen_path(folders, monkeypatch):
    from streamlit.testing.v1 import AppTest

    hub, own = folders
    data = b"coco weights" * 100
    name = _published(monkeypatch, "resnet50_fpn_v2", data)
    (hub / name).write_bytes(data)
    (own / name).write_bytes(b"corrupt")
    at = AppTest.from_function(_picker_script, default_timeout=60).run()
    assert not at.exception
    box = at.sidebar.selectbox(key="server_weights:resnet50_fpn_v2")
    assert box.options == ["(none)", f"{name} (torch hub cache, sha256 checked)"] and box.value == "(none)"
    assert at.text[0].value == "chosen: None"
    assert "sha256 does not match" in at.sidebar.caption[0].value
    box.select(box.options[1]).run()
    assert at.text[0].value == f"chosen: {hub / name}"


def test_the_picker_draws_nothing_without_files(folders):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_picker_script, default_timeout=60).run()
    assert not at.exception and len(at.sidebar.selectbox) == 0 and at.text[0].value == "chosen: None"


# ---- item 12: a crafted checkpoint, refused in one line ------------------------------------------------


class _Evil:
    """Unpickling this would run a command; weights_only loading refuses it without running it."""

    def __reduce__(self):
        return (os.system, ("touch " + os.environ.get("FRCNN_EVIL_MARK", "/nonexistent/ran"),))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "pre-1.6"])
def test_the_cli_refuses_a_pickle_that_would_run_code_in_one_line(zip_format, tmp_path):
    """Protocol 4 (what pickle.dumps writes): torch's unpickler warned in two lines before our one."""
    image, evil, mark = tmp_path / "a.png", tmp_path / "evil.pt", tmp_path / "ran"
    Image.new("RGB", (64, 48), "white").save(image)
    os.environ["FRCNN_EVIL_MARK"] = str(mark)
    try:
        torch.save({"state_dict": {}, "hook": _Evil()}, evil, pickle_protocol=4,
                   _use_new_zipfile_serialization=zip_format)
    finally:
        del os.environ["FRCNN_EVIL_MARK"]
    proc = subprocess.run([sys.executable, "-m", "frcnn", "trace", str(image), "--weights", str(evil),
                           "--device", "cpu"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FRCNN_OFFLINE": "1"})
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "refused, not a plain weights file" in proc.stderr
    assert not mark.exists()
