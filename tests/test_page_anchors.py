"""The Anchors and Anchor targets pages through streamlit's AppTest, on the app's default sample and its ground
truth: the anchor count follows the sizes (as a list, or as base x scales), a head that cannot use the anchors
is said so, raising the positive IoU never adds positives, and the minibatch keeps its size and positive share."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.figures import box_layers, figures

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _metrics(at) -> dict[str, int | str]:
    out = {}
    for m in at.metric:
        v = m.value.replace(",", "")
        out[m.label] = int(v) if v.isdigit() else v
    return out


def _spec(at, i: int = 0) -> dict:
    return figures(at)[i]


@pytest.fixture(scope="module")
def app():
    at = AppTest.from_file(APP, default_timeout=90).run()
    assert not at.exception
    return at


def test_anchors_page_counts_follow_the_sizes(app):
    at = app.switch_page("app_pages/anchors.py").run()
    assert not at.exception and at.title[0].value == "Anchors"
    m = _metrics(at)
    w, h = (int(v) for v in m["Grid (W×H)"].split("×"))
    assert m["Per location (k)"] == 30 and m["Anchors"] == w * h * 30  # the default model: 10 sizes x 3 ratios
    assert "anchors drawn" in _spec(at)["layout"]["title"]["text"]
    assert not any("do not use these anchors" in i.value for i in at.info)  # the trained head's own anchors

    at.multiselect(key="set:anchors.sizes").set_value([64.0, 128.0]).run()
    m2 = _metrics(at)
    assert not at.exception and m2["Per location (k)"] == 6 and m2["Anchors"] == w * h * 6 != m["Anchors"]
    assert any("do not use these anchors" in i.value for i in at.info)

    at.radio(key="anchors_size_mode").set_value("scales on a base size").run()
    assert at.multiselect(key="anchors_scales").value == [4.0, 8.0]  # 64, 128 on a 16-px base
    at.multiselect(key="anchors_scales").set_value([8.0, 16.0, 32.0]).run()
    assert _metrics(at)["Anchors"] == w * h * 9
    at.select_slider(key="anchors_base").set_value(8).run()
    assert "sizes = 8 × scales = 64, 128, 256 px" in [c.value for c in at.caption]
    at.radio(key="anchors_size_mode").set_value("a list of sizes").run()
    assert not at.exception and at.multiselect(key="set:anchors.sizes").value == [64.0, 128.0, 256.0]

    at.slider(key="set:anchors.stride").set_value(32).run()
    m3 = _metrics(at)
    assert m3["Stride (px)"] == 32 and m3["Anchors"] < w * h * 9 / 3


def test_anchors_page_best_anchor_table_and_recall(app):
    at = app.switch_page("app_pages/anchors.py").run()
    at.multiselect(key="set:anchors.sizes").set_value([32.0, 64.0, 128.0, 256.0, 512.0]).run()
    at.slider(key="set:anchors.stride").set_value(16).run()
    m = _metrics(at)
    table, by_size = (d.value for d in at.table)  # static tables while there are at most 30 GT boxes
    assert len(table) == m["Ground-truth boxes"] > 0
    share = (table["best IoU"] >= 0.5).mean()
    assert m["Best-possible recall @ IoU 0.5"] == f"{share:.0%}"
    assert by_size["boxes"].sum() == len(table)
    assert (by_size["recall@0.5"].fillna(0) * by_size["boxes"]).sum() == pytest.approx((table["best IoU"] >= 0.5).sum())
    at.radio(key="anchors_scope").set_value("location").run()
    spec = _spec(at)
    assert spec["layout"]["title"]["text"].startswith("15 of ")


def test_raising_the_positive_iou_never_adds_positives(app):
    at = app.switch_page("app_pages/anchor_targets.py").run()
    assert not at.exception and at.title[0].value == "Anchor targets"
    positives = []
    for fg in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        at.slider(key="set:rpn.fg_iou_thresh").set_value(fg).run()
        assert not at.exception
        positives.append(_metrics(at)["Positive"])
    assert all(a >= b for a, b in zip(positives, positives[1:], strict=False))
    assert positives[0] > positives[-1] > 0  # the low-quality rule keeps each box's best anchor


def test_the_minibatch_keeps_its_size_and_positive_share(app):
    at = app.switch_page("app_pages/anchor_targets.py").run()
    at.slider(key="set:rpn.fg_iou_thresh").set_value(0.5).run()
    for size, fraction in [(256, 0.5), (64, 0.25), (16, 0.75), (8, 0.0)]:
        at.slider(key="set:rpn.batch_size_per_image").set_value(size).run()
        at.slider(key="set:rpn.positive_fraction").set_value(fraction).run()
        assert not at.exception
        m = _metrics(at)
        assert m["Sampled positive"] + m["Sampled negative"] <= size
        assert m["Sampled positive"] <= int(size * fraction)
        assert m["Sampled positive"] == min(m["Positive"], int(size * fraction))
    spec = _spec(at)
    names = [t.get("name", "") for t in spec["data"]] + [b.name for b in box_layers(spec)]
    assert any(n.startswith("positive in the minibatch") for n in names)


def test_anchor_targets_without_ground_truth_say_how_to_add_it():
    app = AppTest.from_file(APP, default_timeout=90)
    first = app.session_state  # as after "Clear ground truth" on Start, before app.py builds the context
    first["gt_source"] = ("sample", "Synthetic scene 1")
    first["edited_gt"] = (torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    app.query_params["sample"] = "Synthetic scene 1"
    app.run()
    at = app.switch_page("app_pages/anchor_targets.py").run()
    assert not at.exception
    assert any("need ground truth" in w.value for w in at.warning)
    at.switch_page("app_pages/anchors.py").run()
    assert not at.exception and any("No ground truth" in w.value for w in at.warning)


def test_a_removed_model_size_can_be_picked_again():
    at = AppTest.from_file(APP, default_timeout=90).run().switch_page("app_pages/anchors.py").run()
    sizes = at.multiselect(key="set:anchors.sizes")
    own = list(sizes.value)
    assert 22.0 in own  # the default model's sizes are not all in the page's list of round sizes
    at.multiselect(key="set:anchors.sizes").set_value([v for v in own if v != 22.0]).run()
    assert "22" in at.multiselect(key="set:anchors.sizes").options  # (as the widget writes them)
    at.multiselect(key="set:anchors.sizes").set_value(own).run()
    assert not at.exception and at.multiselect(key="set:anchors.sizes").value == own
