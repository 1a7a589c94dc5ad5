"""The Detections page through AppTest: it matches the detections to the ground truth once per run (the
metrics, the figure and the table read that one matching), and its numbers are those of the library's."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

import frcnn.analysis.matching as matching
import frcnn.viz.detections as viz_detections
import frcnn.viz.roi as viz_roi

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_the_page_matches_once(monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(len(args[0]))
        return original(*args, **kwargs)

    original = matching.match_detections
    for module in (matching, viz_detections, viz_roi):
        monkeypatch.setattr(module, "match_detections", counted)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("app_pages/detections.py")
    calls.clear()
    at.run()
    assert not at.exception, at.exception
    assert len(calls) == 1  # the figure and the table take the page's matching
    trace = at.session_state["context"].tracer.run(at.session_state["context"].image, at.session_state["settings"],
                                                   at.session_state["context"].gt_boxes,
                                                   at.session_state["context"].gt_labels)
    d = trace.detections
    every = original(d.boxes, d.scores, d.labels, trace.gt_boxes, trace.gt_labels, 0.5)
    metric = {m.label: m.value for m in at.metric}
    assert metric["True positives"] == str(int(every.true_positive.sum()))
    assert metric["Missed GT boxes"] == str(int(every.missed.sum()))
