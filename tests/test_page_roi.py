"""The RoI, detections and losses pages through streamlit's AppTest: they render without exception, and what
they show moves the way the pipeline says it must (a higher foreground IoU never adds foreground RoIs, a
higher score threshold never adds detections), the pooling figure follows roi.pool, the losses page shows
four finite terms and the sweep chart one point per value."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.figures import figures

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SCENE = "Synthetic scene 1"  # the default sample: ground truth in the default model's classes
PHOTO = "Astronaut (photo)"  # COCO classes the default model does not know


def _page(name: str, sample: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    if sample:  # a shared link's sample (AppTest re-runs only the page after the first run, not app.py)
        at.query_params["sample"] = sample
    at.run()
    at.switch_page(f"app_pages/{name}").run()
    assert not at.exception, at.exception
    return at


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label or m.label.startswith(label + " ("))


def _specs(at: AppTest) -> list[dict]:
    return figures(at)


def _title(spec: dict) -> str:
    title = spec["layout"].get("title", {})
    return title.get("text", "") if isinstance(title, dict) else str(title)


def test_roi_page_foreground_never_grows_with_the_iou_and_pool_switches():
    at = _page("roi.py")
    counts = []
    for thresh in (0.5, 0.6, 0.8, 0.95):
        at.slider(key="set:roi.fg_iou_thresh").set_value(thresh).run()
        assert not at.exception, at.exception
        counts.append(int(_metric(at, "Foreground RoIs")))
    assert counts == sorted(counts, reverse=True), counts
    assert counts[0] > 0  # the GT boxes themselves are foreground
    before = [_title(s) for s in _specs(at)]
    assert sum("used by the detector" in t and "RoIAlign" in t for t in before) == 2  # the default model's
    at.selectbox(key="set:roi.pool").select("roi_pool").run()
    assert not at.exception, at.exception
    after = [_title(s) for s in _specs(at)]
    assert after != before
    assert sum("used by the detector" in t and "RoIPool" in t for t in after) == 2
    at.slider(key="set:roi.output_size").set_value(3).run()
    assert not at.exception, at.exception
    pooled = [s for s in _specs(at) if "output 3×3" in _title(s)]
    assert len(pooled) == 2 and all(len(s["data"][0]["z"]) == 3 for s in pooled)


def test_detections_never_grow_with_the_score_threshold():
    at = _page("detections.py")
    counts = []
    for thresh in (0.0, 0.1, 0.17, 0.3, 0.9):
        at.slider(key="set:roi.score_thresh").set_value(thresh).run()
        assert not at.exception, at.exception
        counts.append(int(_metric(at, "Detections")))
        assert len(at.dataframe[0].value) == counts[-1]
    assert counts == sorted(counts, reverse=True), counts
    assert counts[0] > counts[-1]
    at.slider(key="det_iou").set_value(0.9).run()
    assert not at.exception
    assert 0.0 <= float(_metric(at, "Precision")) <= 1.0


def test_detections_page_draws_the_scores_from_its_display_slider_and_keeps_the_rest_in_the_legend():
    at = _page("detections.py")
    at.slider(key="set:roi.score_thresh").set_value(0.0).run()
    total = int(_metric(at, "Detections"))
    for draw_from in (0.0, 0.5, 1.0):
        at.slider(key="det_min_score").set_value(draw_from).run()
        assert not at.exception, at.exception
        assert int(_metric(at, "Detections")) == total == len(at.dataframe[0].value)  # only the figure changes
        low = [t for t in _specs(at)[0]["data"] if t.get("name", "").startswith(f"scoring under {draw_from:g}")]
        said = re.search(r"(\d+) of (\d+) detections score under", " ".join(c.value for c in at.caption))
        hidden = int(said.group(1)) if said else 0
        scores = at.dataframe[0].value["score"]  # rounded to 4 decimals
        assert sum(s < draw_from - 1e-4 for s in scores) <= hidden <= sum(s < draw_from + 1e-4 for s in scores)
        assert bool(low) == (hidden > 0) and all(t["visible"] == "legendonly" for t in low)
        assert draw_from == 0.0 or hidden > 0  # at score threshold 0 the trained model keeps low scores


@pytest.mark.parametrize("sample", [None, PHOTO])
def test_losses_page_shows_four_finite_terms_and_a_sweep(sample):
    at = _page("losses.py", sample)
    assert at.session_state["context"].image_name == (sample or SCENE)
    terms = [_metric(at, label) for label in ("RPN objectness", "RPN box", "RoI classifier", "RoI box")]
    if sample == PHOTO:  # the photo's classes are not the model's: RoI terms are missing, and said so
        assert terms[2:] == ["n/a", "n/a"] and any("No RoI terms" in w.value for w in at.warning)
        return
    assert all(math.isfinite(float(v)) for v in terms), terms
    at.selectbox(key="loss_sweep_key").select("roi.batch_size_per_image").run()
    values = [16, 64, 256]
    at.multiselect(key="loss_sweep_values:roi.batch_size_per_image").set_value(values).run()
    assert not at.exception, at.exception
    sweep = [s for s in _specs(at) if sum(d["type"] == "scatter" for d in s["data"]) == 4][0]
    for line in sweep["data"]:
        assert line["x"] == values and len(line["y"]) == len(values)


@pytest.mark.parametrize("name", ["roi.py", "detections.py", "losses.py"])
def test_without_ground_truth_the_pages_say_how_to_add_it(name):
    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["gt_source"] = ("sample", SCENE)  # as after "Clear ground truth" on Start
    at.session_state["edited_gt"] = (torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    at.query_params["sample"] = SCENE
    at.run()
    at.switch_page(f"app_pages/{name}").run()
    assert not at.exception, at.exception
    assert any("Start" in i.value and "annotation file" in i.value for i in at.info)
    if name == "roi.py":  # the proposals can still be pooled
        assert at.selectbox(key="roi_pick").options[0].startswith("proposal #0")
        assert len(_specs(at)) == 5
