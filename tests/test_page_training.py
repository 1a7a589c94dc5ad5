"""The Training page through AppTest: a few steps on tiny synthetic scenes run in the background, the page
shows the curves, and the result becomes selectable as the session's weights in the sidebar. On a shared
server: a second session's job waits in the queue with its place shown, and a session that goes ends its job
and leaves no files (the reaper, told by its ``is_alive`` that the session has gone)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_pages._sessions import Reaper, end_session, process_root, remove_stale
from app_pages._shared import plain  # user text is shown escaped
from frcnn.jobs import JobQueue, TrainingJob, server_queue
from tests.figures import figures

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(autouse=True)
def _no_jobs_left():
    """Every session's jobs and folders go at the end of a test, even a failed one."""
    yield
    for owner in server_queue().owners():
        end_session(owner)


def _training_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("app_pages/training.py").run()
    assert not at.exception, at.exception
    return at


def _start(at: AppTest, steps: int) -> TrainingJob:
    at.number_input(key="train_steps").set_value(steps)
    at.number_input(key="train_batch").set_value(1)
    at.select_slider(key="train_size").set_value(128)
    at.button[0].click().run()  # the form's submit button
    assert not at.exception, at.exception
    return at.session_state["training_job"]


def test_train_a_few_steps_and_use_the_model():
    at = _training_page()
    assert at.number_input(key="train_steps").max == server_queue().max_steps == 5_000
    job = _start(at, 3)
    job.join(300)
    assert job.status == "done", job.error
    at.run()
    assert not at.exception, at.exception
    assert job.step == 3 and "done: step 3 of 3" in at.get("progress")[0].proto.text
    curves = json.dumps(figures(at)[0])
    assert all(term in curves for term in ("rpn_objectness", "rpn_box", "roi_classifier", "roi_box"))
    box = at.selectbox(key="trained_weights")
    chosen = next(o for o in box.options if o.startswith("default-"))
    box.select(chosen).run()
    assert not at.exception, at.exception
    assert any(c.value.startswith(f"Weights: {chosen}") for c in at.sidebar.caption)
    assert at.session_state["settings"].input.min_size == 128  # the trained model's own settings
    folder = process_root() / at.session_state["session_key"]
    assert job.out.parent.parent == folder  # the outputs live in the session's folder


def test_a_session_that_goes_ends_its_job_and_leaves_no_files():
    at = _training_page()
    job = _start(at, 200)
    key = at.session_state["session_key"]
    folder = process_root() / key
    assert job.owner == key and job.out.is_relative_to(folder) and folder.is_dir()
    deadline = time.time() + 120
    while job.step < 1 and job.running and time.time() < deadline:
        time.sleep(0.1)
    assert job.status == "running", job.error
    reaper = Reaper(server_queue(), process_root(), is_alive=lambda k: k != key, grace=0)
    assert reaper.sweep() == [key]  # the runtime no longer knows the session
    job.join(60)
    assert job.status == "stopped" and not job.running and job.note == "ended with its session"
    assert not folder.exists() and server_queue().job_of(key) is None and key not in server_queue().owners()


def test_a_second_session_waits_in_the_queue_while_the_first_trains():
    first, second = _training_page(), _training_page()
    running = _start(first, 200)
    queued = _start(second, 3)
    assert (running.status, queued.status) == ("running", "queued")
    second.run()
    assert "queued: position 1 of 1" in second.get("progress")[0].proto.text
    start = second.button[0]
    assert start.disabled and "one job per session" in start.help
    assert second.button(key="train_cancel")  # it can leave the queue
    end_session(first.session_state["session_key"])  # the first tab closes: the second one's turn
    assert running.status == "stopped" and queued.status in ("running", "done")
    queued.join(300)
    second.run()
    assert queued.status == "done" and "done: step 3 of 3" in second.get("progress")[0].proto.text
    assert not second.button[0].disabled  # the Start button is back


def test_the_reaper_waits_out_the_reconnect_window_and_clears_old_servers(tmp_path):
    now, alive = [0.0], {"a": True}
    queue = JobQueue()
    (tmp_path / "a").mkdir()
    reaper = Reaper(queue, tmp_path, is_alive=lambda k: alive.get(k, False), grace=120, clock=lambda: now[0])
    (tmp_path / "stray").mkdir()  # a folder no session owns
    assert reaper.sweep() == [] and (tmp_path / "a").is_dir()
    alive["a"] = False
    now[0] = 100.0
    assert reaper.sweep() == [] and (tmp_path / "a").is_dir()  # it may still reconnect
    now[0] = 221.0
    assert reaper.sweep() == ["a", "stray"] and not any(tmp_path.iterdir())
    (tmp_path / str(os.getpid())).mkdir()
    (tmp_path / "999999999").mkdir()  # no such process
    assert remove_stale(tmp_path) == [tmp_path / "999999999"] and (tmp_path / str(os.getpid())).is_dir()


def test_a_refused_dataset_leaves_no_files():
    at = _training_page()
    at.radio(key="train_source").set_value("upload")
    at.file_uploader(key="train_upload").set_value(("d.zip", b"not a zip", "application/zip"))
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert any(plain("d.zip: not a readable zip") in e.value for e in at.error)
    folder = process_root() / at.session_state["session_key"]
    assert "training_job" not in at.session_state and not list(folder.glob("train-*"))  # its folder went


def _writes_a_session_file():
    import streamlit as st

    from app_pages._sessions import session_file

    st.write(str(session_file("weights-0123.pt", b"w")))
    try:
        session_file("../escape.pt", b"w")
    except ValueError as exc:  # FrcnnError
        st.write(str(exc))


def test_session_files_live_in_the_session_folder_and_go_with_it():
    at = AppTest.from_function(_writes_a_session_file).run()
    assert not at.exception, at.exception
    path, refused = Path(at.markdown[0].value), at.markdown[1].value
    key = at.session_state["session_key"]
    assert path == process_root() / key / "weights-0123.pt" and path.read_bytes() == b"w"
    assert refused.startswith("not a plain file name") and not (process_root() / "escape.pt").exists()
    end_session(key)
    assert not path.parent.exists()
