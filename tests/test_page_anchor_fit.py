"""The Anchor fit page through AppTest: the fit runs in the background (the page shows its progress, or its place
in the queue, and a Cancel button), then the recall it shows is the library's on the same scenes, and the
suggested anchors apply to the session's settings. A settings change replaces the session's job, a closed tab's
job stops, and a bad upload is one error. (The reader of uploaded COCO files and its refusals are tested in
test_annotations.)"""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app_pages._shared import plain  # user text is shown escaped
from frcnn.anchor_fit import check_stop, dataset_items, fit_anchors
from frcnn.data.dataset import ShapesScenes
from frcnn.fit_jobs import FitRequest, FitSource, server_fit_queue
from frcnn.settings import Settings
from tests.figures import figures

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(autouse=True)
def _fresh_fits():
    """Each test starts without cached fits, and leaves no job running."""
    queue = server_fit_queue()
    queue.cache.clear()
    yield
    queue.shutdown()
    queue.cache.clear()


def _values(v) -> np.ndarray:
    """A plotly array from the spec: a list, or numpy's bytes ({"bdata": base64, "dtype": ...})."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v)


def _metric(at, label: str, i: int = 0) -> str:
    return [m.value for m in at.metric if m.label == label][i]


def _fit_page(n: int = 20) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["fit_n"] = n
    at.run()
    at.switch_page("app_pages/anchor_fit.py").run()
    assert not at.exception, at.exception
    return at


def _progress(at) -> str:
    return " ".join(p.proto.text for p in at.get("progress"))


def _until_done(at, limit: float = 300) -> AppTest:
    """Rerun the page (as its fragment polls) until the session's job has ended, at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        job = at.session_state["fit_job"] if "fit_job" in at.session_state else None  # noqa: SIM401 - no .get
        if job is None or not job.active:
            break
        time.sleep(0.2)
        at.run()
    at.run()
    assert not at.exception, at.exception
    return at


def test_synthetic_fit_runs_in_the_background_matches_the_library_and_suggestions_apply():
    at = _fit_page(20)
    assert "of 20 scenes" in _progress(at) or "queued" in _progress(at)  # the script did not fit
    assert at.button(key="fit_cancel") and not [m for m in at.metric if m.label == "Boxes"]
    _until_done(at)
    assert at.session_state["fit_job"].status == "done" and not at.get("progress")
    s = at.session_state["settings"]
    fit = fit_anchors(list(dataset_items(ShapesScenes(20, 1))), s)
    assert _metric(at, "Boxes") == f"{len(fit.best_iou):,}"
    assert _metric(at, "Recall @ IoU 0.7") == f"{fit.recall(0.7):.1%}"
    spec = figures(at)[0]
    points = _values(spec["data"][0]["x"])
    assert len(points) == len(fit.best_iou)  # one point per ground-truth box: its width
    np.testing.assert_allclose(np.sort(points), np.sort(fit.shapes[:, 0].numpy()), rtol=1e-5)
    assert len(_values(spec["data"][1]["x"])) == len(s.anchors.sizes) * len(s.anchors.ratios)
    assert any("at once" in c.value and "1,000 scenes" in c.value for c in at.caption)  # the caps, stated
    at.number_input(key="fit_num_sizes").set_value(2).run()
    assert _metric(at, "Boxes") == f"{len(fit.best_iou):,}"  # the current anchors' fit is cached: shown at once
    _until_done(at)
    at.number_input(key="fit_num_ratios").set_value(2).run()
    _until_done(at)
    at.button(key="fit_apply").click().run()
    new = at.session_state["settings"].anchors
    assert len(new.sizes) == 2 and len(new.ratios) == 2 and not at.exception


def test_coming_back_is_instant_and_a_settings_change_replaces_the_job():
    at = _until_done(_fit_page(20))
    done = at.session_state["fit_job"]
    at.switch_page("app_pages/anchors.py").run()
    at.switch_page("app_pages/anchor_fit.py").run()
    assert at.session_state["fit_job"] is done and _metric(at, "Boxes") and at.button(key="fit_apply")  # cached
    at.slider(key="fit_n").set_value(1000).run()
    long = at.session_state["fit_job"]
    assert long is not done and long.active and "of 1,000 scenes" in _progress(at)
    at.slider(key="fit_n").set_value(20).run()  # back to a cached fit: the long one is not wanted
    long.join(30)
    assert long.status == "cancelled" and "settings changed" in long.note and at.button(key="fit_apply")


def test_cancel_stops_the_fit():
    at = _fit_page(1000)
    job = at.session_state["fit_job"]
    at.button(key="fit_cancel").click().run()
    job.join(30)
    _until_done(at)
    assert job.status == "cancelled" and not job.running and job.result is None
    assert any("The fit was cancelled" in i.value for i in at.info) and at.button(key="fit_again")
    assert not [m for m in at.metric if m.label == "Boxes"] and not at.error
    at.button(key="fit_again").click().run()
    assert at.session_state["fit_job"].active


def test_a_fit_whose_session_went_stops(monkeypatch):
    alive = [True]
    monkeypatch.setattr("app_pages._sessions.is_session_alive", lambda key: alive[0])  # the page imports it per run
    monkeypatch.setattr(server_fit_queue(), "grace", 0)
    at = _fit_page(1000)
    job = at.session_state["fit_job"]
    assert job.running
    alive[0] = False  # the runtime no longer has the tab connected
    job.join(30)
    assert job.status == "cancelled" and job.note == "stopped: its session ended" and not job.running


def _blocker(gate: threading.Event, key: str) -> FitRequest:
    """A fit of another session that holds its place until ``gate`` opens."""

    def read(progress, should_stop):
        while not gate.wait(0.01):
            check_stop(should_stop)
        return [], ()

    return FitRequest(FitSource(key, "images", 1, "waiting", read), Settings(), 1, 1)


def test_past_the_servers_cap_a_fit_waits_in_the_queue():
    queue, gate = server_fit_queue(), threading.Event()
    blockers = [queue.submit(f"other-{i}", _blocker(gate, f"test:block-{i}")) for i in range(queue.max_running)]
    at = _fit_page(20)
    assert "queued: position 1 of 1" in _progress(at) and at.button(key="fit_cancel")
    gate.set()
    for job in blockers:
        job.join(30)
    _until_done(at)
    assert at.session_state["fit_job"].status == "done" and at.button(key="fit_apply")


def test_upload_mode_asks_for_a_coco_file_and_a_bad_one_is_one_error():
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("app_pages/anchor_fit.py")
    at.session_state["fit_source"] = "upload"
    at.run()
    assert not at.exception and any("Upload a COCO" in i.value for i in at.info)
    at.file_uploader(key="fit_upload").set_value(("a.json", b"{not json", "application/json")).run()
    _until_done(at)
    assert [e.value for e in at.error] == [plain("a.json: not valid JSON (line 1: Expecting property name "
                                                 "enclosed in double quotes)")]
    doc = {"images": [{"id": 1, "width": 200, "height": 100}],
           "annotations": [{"id": 1, "image_id": 1, "bbox": [10, 10, 40, 30]},
                           {"id": 2, "image_id": 1, "bbox": [150, 50, 80, 60]}]}  # the second crosses the edge
    at.file_uploader(key="fit_upload").set_value(("b.json", json.dumps(doc).encode(), "application/json")).run()
    _until_done(at)
    assert _metric(at, "Boxes") == "2" and any(c.value == "1 box clipped to the image" for c in at.caption)
    assert [e.value for e in at.error] == [plain("anchor fit: 2 boxes cannot make 30 clusters")]  # as before
    at.number_input(key="fit_num_sizes").set_value(1)
    at.number_input(key="fit_num_ratios").set_value(2).run()
    _until_done(at)
    assert not at.error and at.button(key="fit_apply")  # 2 clusters of 2 boxes
