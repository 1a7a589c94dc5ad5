"""Training in the background: a job runs, stops on request with a checkpoint, resumes from it to the end;
the COCO zip extraction refuses unsafe archives."""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from frcnn.data.dataset import CocoFolder, ShapesScenes, extract_coco_zip, split_held_out
from frcnn.data.shapes import SceneConfig, write_coco_dataset
from frcnn.errors import FrcnnError
from frcnn.jobs import TrainingJob
from frcnn.models import REGISTRY, load_model
from frcnn.train import TrainConfig

TINY = SceneConfig(min_side=64, max_side=96, max_objects=3)
SMALL = {"input.min_size": 64, "input.max_size": 128}


def test_a_job_stops_resumes_and_finishes(tmp_path):
    config = TrainConfig(steps=6, batch_size=1, scales=(64,), warmup=1, checkpoint_every=2, log_every=1,
                         eval_every=3)
    settings = REGISTRY["default"].defaults.replace(SMALL)
    job = TrainingJob("default", ShapesScenes(50, 0, TINY), tmp_path / "m.pt", settings, config,
                      evaluate_on=ShapesScenes(2, 1, TINY), device="cpu")
    deadline = time.time() + 120
    while job.step < 2 and job.running and time.time() < deadline:
        time.sleep(0.05)
    job.stop()  # it stops after its current step, and saves
    job.join(120)
    assert job.status == "stopped" and 0 < job.step < 6 and (tmp_path / "m.pt").is_file()
    again = job.resume()
    again.join(300)
    assert again.status == "done" and again.step == 6 and not again.error
    assert [r["step"] for r in again.records if "total" in r] == list(range(1, 7))
    assert any("map_50" in r for r in again.records)
    det = load_model("default", tmp_path / "m.pt", "cpu")  # the result loads as a model
    assert det.defaults.input.min_size == 64


def test_a_failing_job_reports_in_one_line(tmp_path):
    job = TrainingJob("default", ShapesScenes(5, 0, TINY), tmp_path / "m.pt",
                      REGISTRY["default"].defaults.replace(SMALL), TrainConfig(steps=2, lr=1e6, scales=(64,)),
                      device="cpu")
    job.join(120)
    assert job.status in ("failed", "done")
    if job.status == "failed":
        assert "\n" not in job.error and job.error


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buffer.getvalue()


def test_coco_zip_extracts_and_splits(tmp_path):
    src = tmp_path / "src"
    write_coco_dataset(src, n=5, seed=3, config=TINY)
    files = {f"set/{p.relative_to(src).as_posix()}": p.read_bytes() for p in src.rglob("*") if p.is_file()}
    files["set/notes.exe"] = b"MZ"  # not an image or JSON: skipped
    root = extract_coco_zip(_zip(files), tmp_path / "out")
    assert (root / "annotations.json").is_file() and not (root / "notes.exe").exists()
    train, held = split_held_out(CocoFolder(root))
    assert (len(train), len(held)) == (4, 1) and train.class_names == held.class_names


@pytest.mark.parametrize("files, words", [
    ({"../evil.json": b"{}"}, "unsafe path"),
    ({"/abs/annotations.json": b"{}"}, "unsafe path"),
    ({"images/a.png": b"x"}, "no annotations.json"),
])
def test_unsafe_or_incomplete_zips_are_refused(tmp_path, files, words):
    with pytest.raises(FrcnnError, match=words):
        extract_coco_zip(_zip(files), tmp_path / "out", "d.zip")
    assert not (tmp_path / "evil.json").exists()
