"""Issue 16, items 3, 4, 6, 8, 9, 10: numbers that agree (detections' precision named, IoU shown for classes the
model does not know, the RoI panels' size and colour scale, the sweep's axis), anchor shapes as torchvision lays
them, distinct styles and hues, and figures laid out in a font a PNG export has."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator

from frcnn import Tracer, load_model
from frcnn.analysis.matching import match_detections
from frcnn.analysis.roi import default_roi, pool_roi
from frcnn.data.shapes import make_scene
from frcnn.viz.anchor_fit import anchor_shapes
from frcnn.viz.anchors import layer_colour
from frcnn.viz.common import FONT_FAMILY, GROUND_TRUTH, HIGHLIGHT, image_figure, styled
from frcnn.viz.detections import detections_figure
from frcnn.viz.losses import SweepPoint, flat_terms, sweep_figure, why_flat
from frcnn.viz.roi import cell_format, detections_rows, pool_note, pooled_figure, pooled_range, roi_boxes
from tests.figures import box_layers


@pytest.fixture(scope="module")
def trace():
    det = load_model("default", "random", "cpu")
    scene = make_scene(7, 0)
    image = torch.from_numpy(scene.image.copy()).permute(2, 0, 1).contiguous()
    settings = det.defaults.replace({"input.min_size": 256, "input.max_size": 512, "roi.score_thresh": 0.0})
    return scene, Tracer(det).run(image, settings, torch.from_numpy(scene.boxes.copy()),
                                  torch.from_numpy(scene.labels))


# ------------------------------------------------------------------------------------------- item 3
def test_a_gt_class_the_model_does_not_know_still_shows_the_overlap():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    gt = torch.tensor([[0.0, 0.0, 10.0, 5.0]])  # IoU 0.5 with the first detection
    m = match_detections(boxes, torch.tensor([0.9, 0.8]), torch.tensor([1, 1]), gt, torch.tensor([99]), 0.5)
    assert not m.true_positive.any() and float(m.iou[0]) == 0.0  # another class: no match
    assert m.overlap_gt.tolist() == [0, -1]
    assert float(m.overlap_iou[0]) == pytest.approx(0.5) and float(m.overlap_iou[1]) == 0.0


def test_detections_table_shows_the_iou_with_a_box_of_an_unknown_class(trace):
    _, t = trace
    unknown = t.__class__(**{**t.__dict__, "gt_labels": torch.full_like(t.gt_labels, len(t.class_names) + 3)})
    rows = detections_rows(unknown)
    assert not any(r["TP"] for r in rows)
    assert max(r["IoU"] for r in rows) > 0.3  # the detections overlap the boxes, whatever their class
    assert any(r["GT class"] and r["GT class"].startswith("class") for r in rows)


def test_figure_title_names_what_it_scores(trace):
    scene, t = trace
    n = len(t.detections.boxes)
    assert f"all {n} detections (score ≥ 0)" in detections_figure(scene.image, t).layout.title.text
    cut = float(t.detections.scores.median())
    drawn = int((t.detections.scores >= cut).sum())
    assert f"drawn: {drawn} of {n} detections (score ≥ {cut:g})" in \
        detections_figure(scene.image, t, min_score=cut).layout.title.text


# ------------------------------------------------------------------------------------------- item 4
def test_pooled_panels_share_one_scale_short_numbers_and_the_heads_size(trace):
    _, t = trace
    pooled = pool_roi(t, roi_boxes(t)[default_roi(t)], 6, 2)
    figs = [pooled_figure(pooled, op, used=op == "roi_align", head_size=7) for op in ("roi_pool", "roi_align")]
    lo, hi = pooled_range(pooled)
    assert all((f.data[0].zmin, f.data[0].zmax) == (lo, hi) for f in figs)
    assert "used by the detector" not in figs[1].layout.title.text
    assert "its head pools 7×7" in figs[1].layout.title.text
    assert "used by the detector" in pooled_figure(pooled, "roi_align", used=True, head_size=6).layout.title.text
    fmt = figs[0].data[0].texttemplate
    assert fmt == f"%{{z:{cell_format(lo, hi)}}}" and fmt.endswith("f}")
    for v in np.concatenate([np.asarray(f.data[0].z).ravel() for f in figs]):
        assert len(format(float(v), cell_format(lo, hi)).lstrip("-")) <= 5
    assert cell_format(0, 0.83) == ".2f" and cell_format(0, 4.2) == ".1f" and cell_format(0, 17) == ".0f"


def test_pool_note_says_the_head_was_trained_with_the_other_op():
    assert pool_note("roi_align", "roi_align") is None
    assert "trained on RoIAlign" in pool_note("roi_align", "roi_pool")


# ------------------------------------------------------------------------------------------- item 6
def test_sweep_axis_fits_the_values_and_flat_terms_are_explained():
    values = {"rpn_objectness": 0.52, "rpn_box": 0.03, "roi_classifier": 0.8, "roi_box": 0.2, "total": 1.55}
    points = [SweepPoint(v, {**values, "rpn_objectness": 0.5 + v / 100}) for v in (0.5, 0.7, 0.9)]
    fig = sweep_figure(points, "rpn.fg_iou_thresh")
    lo, hi = fig.layout.yaxis.range
    assert 0.49 < lo < 0.505 and 0.509 < hi < 0.52  # fits 0.505..0.509, not -0.5..1
    lo, hi = fig.layout.yaxis3.range
    assert lo < 0.8 < hi and hi - lo < 0.2
    assert flat_terms(points) == ["rpn_box", "roi_classifier", "roi_box"]
    text = why_flat("rpn.fg_iou_thresh", flat_terms(points))
    assert "RoI classifier, RoI box: rpn.fg_iou_thresh does not reach them" in text
    assert "RPN box: the same at these values" in text
    assert why_flat("roi.fg_iou_thresh", []) is None
    # a proposal setting reaches the RoI terms (through the proposals) but not the RPN's own loss
    text = why_flat("rpn.nms_thresh", ["rpn_box", "roi_box"])
    assert "RPN box: rpn.nms_thresh does not reach them" in text and "RoI box: the same at these values" in text
    assert "does not reach" not in why_flat("input.min_size", ["rpn_box", "roi_box"])


# ------------------------------------------------------------------------------------------- item 8
def test_anchor_shapes_are_torchvisions_rounded_anchors():
    sizes, ratios = [16.0, 22.0, 46.0], [0.5, 1.0, 2.0]
    base = AnchorGenerator().generate_anchors(sizes, ratios)
    np.testing.assert_allclose(anchor_shapes(sizes, ratios),
                               torch.stack([base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]], 1).numpy())
    assert anchor_shapes([22.0], [0.5]).tolist() == [[32.0, 16.0]]


# ------------------------------------------------------------------------------------------- item 9
def _lab(h: str) -> tuple[float, float, float]:
    r, g, b = (int(h[i:i + 2], 16) / 255 for i in (1, 3, 5))
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    x = (0.4124 * lin[0] + 0.3576 * lin[1] + 0.1805 * lin[2]) / 0.95047
    y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    z = (0.0193 * lin[0] + 0.1192 * lin[1] + 0.9505 * lin[2]) / 1.08883
    f = [v ** (1 / 3) if v > 0.008856 else 7.787 * v + 16 / 116 for v in (x, y, z)]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def test_ten_anchor_sizes_get_ten_distinct_hues():
    colours = [layer_colour(i) for i in range(10)]
    assert min(math.dist(_lab(a), _lab(b)) for a, b in itertools.combinations(colours, 2)) > 25
    assert min(math.dist(_lab(c), _lab(x)) for c in colours for x in (GROUND_TRUTH, HIGHLIGHT)) > 25


def test_a_missed_box_is_drawn_once_and_the_four_roles_differ(trace):
    scene, t = trace
    fig = detections_figure(scene.image, t, 0.5, min_score=float(t.detections.scores.max()) + 1)  # none drawn
    lines = {tr.name.split(" (")[0]: tr for tr in box_layers(fig)}
    n_boxes = {k: len(v.boxes) for k, v in lines.items()}
    assert n_boxes["missed GT"] == len(t.gt_boxes) and n_boxes["ground truth, found"] == 0  # each GT box once
    roles = [lines[k].line for k in ("ground truth, found", "missed GT", "true positive", "false positive")]
    assert len({r.color for r in roles}) == 4
    assert lines["missed GT"].line.dash == "dash" and lines["false positive"].line.dash is None


# ------------------------------------------------------------------------------------------- item 10
def test_figures_use_a_system_font_that_a_png_export_has(trace):
    scene, t = trace
    assert detections_figure(scene.image, t).layout.font.family == FONT_FAMILY
    assert image_figure(scene.image).layout.font.family == FONT_FAMILY
    import plotly.graph_objects as go

    assert styled(go.Figure()).layout.font.family == FONT_FAMILY
    assert "'" not in FONT_FAMILY and '"' not in FONT_FAMILY  # quotes break fonts in plotly's SVG export
