"""Training in the background: a job runs, stops on request with a checkpoint, resumes from it to the end;
a server's queue bounds the jobs (N at once, one per owner, a step cap, FIFO), discards an owner's jobs and
files, and stops the jobs of idle owners; the COCO zip extraction refuses unsafe archives."""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from frcnn.data.dataset import CocoFolder, ShapesScenes, extract_coco_zip, split_held_out
from frcnn.data.shapes import SceneConfig, write_coco_dataset
from frcnn.errors import FrcnnError
from frcnn.jobs import JobQueue, TrainingJob
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


LONG = TrainConfig(steps=40, batch_size=1, scales=(64,), warmup=1, log_every=1)  # stopped long before it ends
SHORT = TrainConfig(steps=2, batch_size=1, scales=(64,), warmup=1, log_every=1)


def _submit(queue: JobQueue, owner: str, folder, config: TrainConfig = LONG) -> TrainingJob:
    folder.mkdir(parents=True, exist_ok=True)
    return queue.submit(owner, "default", ShapesScenes(50, 0, TINY), folder / "m.pt",
                        REGISTRY["default"].defaults.replace(SMALL), config, device="cpu", folder=folder)


def _wait_for_a_step(job: TrainingJob) -> None:
    deadline = time.time() + 120
    while job.step < 1 and job.running and time.time() < deadline:
        time.sleep(0.05)
    assert job.step >= 1, (job.status, job.error)


def test_the_next_job_waits_its_turn_and_starts_when_the_first_ends(tmp_path):
    queue = JobQueue(max_running=1, max_steps=100)
    first = _submit(queue, "a", tmp_path / "a")
    second = _submit(queue, "b", tmp_path / "b", SHORT)
    third = _submit(queue, "c", tmp_path / "c", SHORT)
    assert (first.status, second.status, third.status) == ("running", "queued", "queued")
    assert queue.position(second) == (1, 2) and queue.position(third) == (2, 2) and queue.counts() == (1, 2)
    assert queue.position(first) == (0, 2)
    third.cancel()  # a queued job leaves the queue and never runs
    assert third.status == "cancelled" and not third.active and queue.position(second) == (1, 1)
    _wait_for_a_step(first)
    first.stop()
    first.join(120)
    assert first.status == "stopped" and second.status in ("running", "done")  # its turn came at once
    second.join(120)
    assert second.status == "done" and second.step == 2 and third.step == 0 and queue.counts() == (0, 0)


def test_one_job_per_owner_and_the_caps_are_refused_in_one_line(tmp_path):
    queue = JobQueue(max_running=1, max_steps=10, max_queued=1)
    with pytest.raises(FrcnnError, match="11 steps is outside 1 to 10") as refused:
        _submit(queue, "a", tmp_path / "a", TrainConfig(steps=11, scales=(64,)))
    assert "\n" not in str(refused.value) and queue.counts() == (0, 0)
    queued = _submit(queue, "a", tmp_path / "a", TrainConfig(steps=10, scales=(64,)))  # at the cap: taken
    try:
        with pytest.raises(FrcnnError, match="already has a job queued or running") as refused:
            _submit(queue, "a", tmp_path / "a2", SHORT)
        assert "\n" not in str(refused.value)
        _submit(queue, "b", tmp_path / "b", SHORT)
        with pytest.raises(FrcnnError, match="the queue is full"):
            _submit(queue, "c", tmp_path / "c", SHORT)
        assert queue.counts() == (1, 1)
    finally:
        for owner in ("a", "b"):
            queue.discard_owner(owner, timeout=120)
    assert not queued.active and queue.counts() == (0, 0)


def test_discarding_an_owner_stops_its_jobs_and_removes_their_folders(tmp_path):
    queue = JobQueue(max_running=1, max_steps=100)
    done = _submit(queue, "a", tmp_path / "a-done", SHORT)
    done.join(120)
    running = _submit(queue, "a", tmp_path / "a")
    waiting = _submit(queue, "b", tmp_path / "b")
    _wait_for_a_step(running)
    assert done.status == "done" and (tmp_path / "a" / "m.pt").parent.is_dir()
    assert queue.discard_owner("a", timeout=120) == [running]
    assert running.status == "stopped" and not running.running and running.note == "ended with its session"
    assert not (tmp_path / "a").exists() and not (tmp_path / "a-done").exists()  # every job the owner had
    assert "a" not in queue.owners() and waiting.status in ("running", "done")  # the next one's turn
    queue.discard_owner("b", timeout=120)
    assert waiting.status in ("stopped", "done") and not (tmp_path / "b").exists()


def test_the_idle_rule_stops_the_jobs_of_owners_not_seen(tmp_path):
    now = [0.0]
    queue = JobQueue(max_running=2, max_steps=100, idle_seconds=60, clock=lambda: now[0])
    seen, gone = _submit(queue, "seen", tmp_path / "seen"), _submit(queue, "gone", tmp_path / "gone")
    try:
        _wait_for_a_step(gone)
        now[0] = 50.0
        queue.touch("seen")
        assert queue.reap_idle() == []  # 50 s: nobody idle yet
        now[0] = 61.0
        assert queue.reap_idle() == [gone]  # "seen" was touched at 50 s
        gone.join(120)
        assert gone.status == "stopped" and "not seen for 1 min" in gone.note and seen.active
        assert (tmp_path / "gone" / "m.pt").is_file()  # the checkpoint stays (resumable) until discarded
    finally:
        for owner in ("seen", "gone"):
            queue.discard_owner(owner, timeout=120)


def test_a_job_past_its_slot_stops_with_a_checkpoint(tmp_path):
    queue = JobQueue(max_running=1, max_steps=100, max_seconds=0)
    job = _submit(queue, "a", tmp_path / "a")
    job.join(120)
    assert job.status == "stopped" and job.step == 1 and "slot" in job.note and (tmp_path / "a" / "m.pt").is_file()
    again = job.resume()  # through the queue again
    assert again.owner == "a" and again._queue is queue
    again.join(120)
    assert again.status == "stopped" and again.step == 2
    queue.discard_owner("a")


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
