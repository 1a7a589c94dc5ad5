"""RoI sampling / pooling figures and the detections table, from a real trace of the default model (random
weights) on a synthetic scene, checked against the trace's own values and torchvision's ops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.ops import roi_align, roi_pool

from frcnn import Tracer, load_model
from frcnn.analysis.roi import default_roi, pool_roi, roi_counts
from frcnn.data.shapes import make_scene
from frcnn.stages.preprocess import to_network
from frcnn.viz.detections import detections_figure, match_detections
from frcnn.viz.roi import (
    clicked_roi,
    detections_rows,
    feature_bins_figure,
    pooled_figure,
    roi_boxes,
    roi_descriptions,
    sampling_figure,
)
from tests.figures import box_layers


@pytest.fixture(scope="module")
def setup():
    det = load_model("default", "random", "cpu")
    tracer = Tracer(det)
    scene = make_scene(7, 0)
    image = torch.from_numpy(scene.image.copy()).permute(2, 0, 1).contiguous()
    settings = det.defaults.replace({"input.min_size": 256, "input.max_size": 512, "roi.score_thresh": 0.0})
    with_gt = tracer.run(image, settings, torch.from_numpy(scene.boxes.copy()), torch.from_numpy(scene.labels))
    without = tracer.run(image, settings)
    return scene, with_gt, without


def _trace_named(fig, prefix):
    """The box layers (path shapes), then the traces, whose name starts with ``prefix``."""
    return [t for t in [*box_layers(fig), *fig.data] if t.name and t.name.startswith(prefix)]


def _boxes_in(layer) -> int:
    return len(layer.boxes)


def test_counts_match_the_trace(setup):
    _, trace, without = setup
    c = roi_counts(trace)
    t = trace.roi_targets
    assert c["foreground"] == trace.counts()["rois_fg"] and c["background"] == trace.counts()["rois_bg"]
    assert c["foreground"] + c["background"] == len(t.labels)
    assert c["candidates"] == len(trace.proposals.boxes) + len(trace.gt_boxes)
    assert c["candidates_foreground"] + c["candidates_background"] + c["ignored"] == c["candidates"]
    assert roi_counts(without) == {"proposals": len(without.proposals.boxes)}


def test_sampling_figure_draws_each_layer_with_hover_numbers(setup):
    scene, trace, _ = setup
    t = trace.roi_targets
    fig = sampling_figure(scene.image, trace, selected=0)
    fg_lines = _trace_named(fig, "foreground RoIs (")[0]
    bg_lines = _trace_named(fig, "background RoIs (")[0]
    assert _boxes_in(fg_lines) == int((t.labels > 0).sum())
    assert _boxes_in(bg_lines) == int((t.labels == 0).sum())
    assert _boxes_in(_trace_named(fig, "ignored")[0]) == int((t.candidate_labels < 0).sum())
    assert _boxes_in(_trace_named(fig, "ground truth (")[0]) == len(scene.boxes)
    assert _boxes_in(_trace_named(fig, "picked RoI (")[0]) == 1
    fg_points = [d for d in fig.data if d.name == "foreground RoIs" and d.mode == "markers"][0]
    index = np.asarray(fg_points.customdata).reshape(-1)
    assert (t.labels[index] > 0).all()
    for i, text in zip(index, fg_points.text, strict=True):  # hover IoU is the trace's
        assert f"IoU {float(t.ious[i]):.2f}" in text and text.startswith(f"RoI #{i} fg")
    centre = (t.boxes[index, :2] + t.boxes[index, 2:]) / 2
    np.testing.assert_allclose(fg_points.x, centre[:, 0].numpy(), rtol=1e-5)


def test_default_roi_is_the_best_foreground_proposal(setup):
    _, trace, without = setup
    t = trace.roi_targets
    i = default_roi(trace)
    is_gt = t.candidate_is_gt[t.sampled]
    fg_proposals = (t.labels > 0) & ~is_gt
    if fg_proposals.any():
        assert fg_proposals[i] and t.ious[i] == t.ious[fg_proposals].max()
    else:
        assert t.labels[i] > 0
    assert default_roi(without) == 0
    assert len(roi_descriptions(without)) == len(roi_boxes(without)) == len(without.proposals.boxes)


def test_clicked_roi_reads_customdata():
    assert clicked_roi(None) is None
    assert clicked_roi({"points": [{"x": 1, "y": 2}]}) is None
    assert clicked_roi({"points": [{"customdata": [4]}, {"customdata": 7}]}) == 7
    assert clicked_roi({"points": [{"customdata": [4]}]}) == 4
    assert clicked_roi({"points": [{"customdata": {"0": 9}}]}) == 9


def test_without_gt_the_figure_shows_the_proposals(setup):
    scene, _, without = setup
    fig = sampling_figure(scene.image, without)
    assert _boxes_in(_trace_named(fig, "proposals (")[0]) == len(without.proposals.boxes)


def test_pool_roi_equals_the_trace_and_torchvision(setup):
    _, _, trace = setup
    s = trace.settings.roi
    i = 3
    pooled = pool_roi(trace, roi_boxes(trace)[i], s.output_size, s.sampling_ratio)
    traced = trace.roi_pooling.features[i]  # the detector pooled the proposals with roi.pool
    torch.testing.assert_close(pooled.roi_pool if s.pool == "roi_pool" else pooled.roi_align, traced)
    fmap = trace.features.maps[0]
    box = to_network(trace.proposals.boxes[i:i + 1], trace.preprocess.scale)
    scale = 1 / trace.features.strides[0]
    torch.testing.assert_close(pooled.roi_align, roi_align(fmap, [box], s.output_size, scale, s.sampling_ratio)[0])
    torch.testing.assert_close(pooled.roi_pool, roi_pool(fmap, [box], s.output_size, scale)[0])


def test_pool_grid_bins_are_the_cells_roi_pool_maxes(setup):
    _, trace, _ = setup
    pooled = pool_roi(trace, roi_boxes(trace)[default_roi(trace)], 5, 2)
    fmap = trace.features.maps[pooled.level][0]  # (K, H, W)
    g = pooled.pool_grid
    for r in range(5):
        for c in range(5):
            cells = fmap[:, g.y_start[r]:g.y_end[r], g.x_start[c]:g.x_end[c]]
            expected = cells.amax(dim=(1, 2)) if cells.numel() else torch.zeros(fmap.shape[0])
            torch.testing.assert_close(pooled.roi_pool[:, r, c], expected)


@pytest.mark.parametrize("op", ["roi_pool", "roi_align"])
def test_bins_figure_draws_s_squared_bins_with_pooled_values(setup, op):
    _, trace, _ = setup
    size, ratio = 4, 2
    pooled = pool_roi(trace, roi_boxes(trace)[default_roi(trace)], size, ratio)
    fig = feature_bins_figure(trace, pooled, op, channel=None, used=op == "roi_align")
    bins = [d for d in [*box_layers(fig), *fig.data] if d.name and "bins" in d.name]
    assert _boxes_in(bins[0]) == size * size
    values = pooled.pooled(op).ravel()
    assert f"{values[5]:.4f}" in bins[1].text[5]  # hover of bin (1, 1)
    samples = [d for d in fig.data if d.name and d.name.startswith("bilinear samples")]
    assert len(samples) == (op == "roi_align")
    if samples:
        assert len(samples[0].x) == (size * ratio) ** 2
    heat = fig.data[0]
    assert heat.type == "heatmap"
    x0, y0 = int(heat.x0), int(heat.y0)
    mean_map = trace.features.maps[pooled.level][0].mean(0).numpy()
    np.testing.assert_allclose(np.asarray(heat.z)[0, 0], mean_map[y0, x0], rtol=1e-5)
    assert ("used by the detector" in fig.layout.title.text) == (op == "roi_align")


def test_pooled_figure_shows_the_grid_of_one_channel(setup):
    _, trace, _ = setup
    pooled = pool_roi(trace, roi_boxes(trace)[0], 3, 2)
    ch = pooled.most_active_channel()
    fig = pooled_figure(pooled, "roi_align", channel=ch)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), pooled.roi_align[ch].numpy(), rtol=1e-6)
    assert f"channel {ch}" in fig.layout.title.text
    mean = pooled_figure(pooled, "roi_pool")
    np.testing.assert_allclose(np.asarray(mean.data[0].z), pooled.roi_pool.mean(0).numpy(), rtol=1e-5)
    assert fig.data[0].texttemplate.startswith("%{z:.")  # values written in the cells of a small grid
    big = pool_roi(trace, roi_boxes(trace)[0], 12, 2)
    assert pooled_figure(big, "roi_pool").data[0].texttemplate is None


def test_detections_rows_match_the_trace(setup):
    _, trace, without = setup
    d = trace.detections
    rows = detections_rows(trace, 0.5)
    assert len(rows) == len(d.boxes) > 0
    m = match_detections(d.boxes, d.scores, d.labels, trace.gt_boxes, trace.gt_labels, 0.5)
    assert sum(r["TP"] for r in rows) == int(m.true_positive.sum())
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert rows[0]["class"] == trace.class_names[int(d.labels[0])]
    assert math.isclose(rows[0]["x1"], float(d.boxes[0, 0]), abs_tol=0.051)
    assert "TP" not in detections_rows(without)[0]



def test_detections_figure_draws_the_scores_from_min_score_and_keeps_the_rest_in_the_legend():
    """On the trained default model (real true positives): the drawn detections are those scoring at least
    ``min_score``, each TP / FP as it is among all detections (greedy matching takes them best first), the misses
    are the GT boxes no drawn detection matches, and the low scores are one legend-only layer."""
    tracer = Tracer(load_model("default", device="cpu"))
    scene = make_scene(2026, 0)
    image = torch.from_numpy(scene.image.copy()).permute(2, 0, 1).contiguous()
    gt, labels = torch.from_numpy(scene.boxes.copy()), torch.from_numpy(scene.labels)
    trace = tracer.run(image, None, gt, labels)  # the paper's score threshold, 0.05: many low scores
    d = trace.detections
    every = match_detections(d.boxes, d.scores, d.labels, gt, labels, 0.5)
    fig = detections_figure(scene.image, trace, 0.5, min_score=0.5)
    drawn = (d.scores >= 0.5).numpy()
    assert 0 < drawn.sum() < len(drawn)
    tp = _boxes_in(_trace_named(fig, "true positive (")[0])
    fp = _boxes_in(_trace_named(fig, "false positive (")[0])
    assert tp == int(every.true_positive.numpy()[drawn].sum()) > 0
    assert tp + fp == int(drawn.sum())
    assert _boxes_in(_trace_named(fig, "missed GT (")[0]) == len(gt) - tp  # each TP matches its own GT box
    assert _boxes_in(_trace_named(fig, "ground truth, found (")[0]) == tp  # each GT box drawn once
    low = _trace_named(fig, "scoring under 0.5")
    assert low and all(t.visible == "legendonly" for t in low)
    assert _boxes_in(next(t for t in low if t.mode == "lines")) == int((~drawn).sum())
    assert f"drawn: {int(drawn.sum())} of {len(drawn)} detections (score ≥ 0.5)" in fig.layout.title.text
    assert not _trace_named(detections_figure(scene.image, trace, 0.5), "scoring under")  # min_score 0: all drawn
    by_class = detections_figure(scene.image, tracer.run(image), min_score=0.5)  # no ground truth: by class
    assert sum(_boxes_in(t) for t in box_layers(by_class) if t.visible != "legendonly") == \
        int(drawn.sum())
