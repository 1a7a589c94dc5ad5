"""The Anchor fit page through AppTest: the recall it shows is the library's on the same scenes, and the
suggested anchors apply to the session's settings. (AppTest cannot upload files: the reader of uploaded COCO
files, and its refusals, are tested in test_annotations.)"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from frcnn.anchor_fit import dataset_items, fit_anchors
from frcnn.data.dataset import ShapesScenes

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _values(v) -> np.ndarray:
    """A plotly array from the spec: a list, or numpy's bytes ({"bdata": base64, "dtype": ...})."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v)


def _metric(at, label: str, i: int = 0) -> str:
    return [m.value for m in at.metric if m.label == label][i]


def test_synthetic_fit_matches_the_library_and_suggestions_apply():
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["fit_n"] = 20
    at.run()
    at.switch_page("app_pages/anchor_fit.py").run()
    assert not at.exception, at.exception
    s = at.session_state["settings"]
    fit = fit_anchors(list(dataset_items(ShapesScenes(20, 1))), s)
    assert _metric(at, "Boxes") == f"{len(fit.best_iou):,}"
    assert _metric(at, "Recall @ IoU 0.7") == f"{fit.recall(0.7):.1%}"
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    points = _values(spec["data"][0]["x"])
    assert len(points) == len(fit.best_iou)  # one point per ground-truth box: its width
    np.testing.assert_allclose(np.sort(points), np.sort(fit.shapes[:, 0].numpy()), rtol=1e-5)
    assert len(_values(spec["data"][1]["x"])) == len(s.anchors.sizes) * len(s.anchors.ratios)
    at.number_input(key="fit_num_sizes").set_value(2).run()
    at.number_input(key="fit_num_ratios").set_value(2).run()
    assert not at.exception
    at.button(key="fit_apply").click().run()
    new = at.session_state["settings"].anchors
    assert len(new.sizes) == 2 and len(new.ratios) == 2 and not at.exception


def test_upload_mode_asks_for_a_coco_file():
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("app_pages/anchor_fit.py")
    at.session_state["fit_source"] = "upload"
    at.run()
    assert not at.exception and any("Upload a COCO" in i.value for i in at.info)
