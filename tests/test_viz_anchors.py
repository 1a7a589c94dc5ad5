"""The anchor pages' figures from a real trace of the default model (random weights) on a synthetic scene:
boxes drawn are read back from the outlines themselves (each layer's path) against counts worked out here,
and hover numbers are the trace's own (and tx, ty, tw, th follow the paper's formulas). The dense layers are
bounded: per-cell rasters whose cells count every anchor, and boxes on request up to a stated cap."""

from __future__ import annotations

import math
import re

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from torchvision.ops import box_iou

from frcnn import Tracer, load_model
from frcnn.analysis.anchor_stats import anchor_coverage
from frcnn.analysis.anchors import anchor_counts, coverage, coverage_rows, positive_rows, target_counts
from frcnn.data.shapes import make_scene
from frcnn.viz.anchors import (
    MAX_ANCHOR_BOXES,
    MAX_CENTRE_DOTS,
    MAX_REQUESTED_BOXES,
    anchor_customdata,
    anchor_targets_figure,
    anchors_figure,
    centre_step,
    pick_location,
    share,
    spread,
)
from frcnn.viz.common import GL_MIN_POINTS, add_points, marker_trace
from tests.figures import box_layers


@pytest.fixture(scope="module")
def setup():
    det = load_model("default", "random", "cpu")
    tracer = Tracer(det)
    scene = make_scene(7, 2)
    image = torch.from_numpy(scene.image.copy()).permute(2, 0, 1).contiguous()
    boxes, labels = torch.from_numpy(scene.boxes.copy()), torch.from_numpy(scene.labels)
    settings = det.defaults.replace({"input.min_size": 256, "input.max_size": 512})

    def run(s=settings, gt=True):
        return tracer.run(image, s, boxes if gt else None, labels if gt else None)

    return run, settings, scene.image


def _n_boxes(t) -> int:
    return len(t.boxes)


def _lines(fig, prefix: str):
    """The box layers (path shapes) whose legend name starts with ``prefix``."""
    return [t for t in box_layers(fig) if t.name.startswith(prefix)]


def _outline_boxes(t) -> np.ndarray:
    """(N, 4) boxes back from a layer's outline path."""
    return t.boxes


def _markers(fig, name: str):
    return next(t for t in fig.data if getattr(t, "mode", None) == "markers" and t.name == name)


def test_counts_are_the_traces(setup):
    run, _, _ = setup
    trace = run()
    c = anchor_counts(trace)
    (h, w), = trace.anchors.grid_sizes
    (k,), (stride,) = trace.anchors.num_per_location, trace.anchors.strides
    assert (k, stride) == (30, 8)  # the default model: 10 sizes x 3 ratios at stride 8
    assert c["total"] == len(trace.anchors.boxes) == h * w * k
    assert c["inside"] == trace.counts()["inside"]
    assert (c["per_location"], c["grid"], c["stride"]) == (str(k), f"{w}×{h}", str(stride))


def test_all_anchors_at_every_location_are_drawn_once(setup):
    run, _, image = setup
    trace = run()
    fig = anchors_figure(image, trace, scope="all", every=1, max_boxes=None)
    drawn = sum(_n_boxes(t) for t in _lines(fig, "size "))
    assert drawn == len(trace.anchors.boxes)
    assert fig.layout.title.text.startswith(f"{drawn:,} of {drawn:,} anchors drawn")
    inside = anchors_figure(image, trace, scope="inside", every=1, max_boxes=None)
    iy, ix = pick_location(trace, None)
    (k,) = trace.anchors.num_per_location
    here = trace.anchors.location_index(0, iy, ix)
    outside_here = int((~trace.anchors.inside[here]).sum())
    assert sum(_n_boxes(t) for t in _lines(inside, "size ")) == int(trace.anchors.inside.sum()) + outside_here
    only = anchors_figure(image, trace, scope="location")
    assert sum(_n_boxes(t) for t in _lines(only, "size ")) == k


def test_more_anchors_than_the_cap_thin_the_lattice_and_say_so(setup):
    run, _, image = setup
    trace = run()
    (h, w), = trace.anchors.grid_sizes
    (k,) = trace.anchors.num_per_location
    assert len(trace.anchors.boxes) > MAX_ANCHOR_BOXES
    fig = anchors_figure(image, trace, scope="all", every=1)  # every location asked: 30,720 anchors
    drawn = sum(_n_boxes(t) for t in _lines(fig, "size "))
    step = int(re.search(r"thinned to every (\d+)\w\w location", fig.layout.title.text).group(1))
    iy, ix = pick_location(trace, None)
    cells = sum((i - iy) % step == 0 and (j - ix) % step == 0 for i in range(h) for j in range(w))
    assert drawn == cells * k <= MAX_ANCHOR_BOXES < (cells + 1) * k * (step / (step - 1)) ** 2
    assert fig.layout.title.text.startswith(f"{drawn:,} of {len(trace.anchors.boxes):,} anchors drawn")
    small = anchors_figure(image, trace, scope="all", every=4)  # under the cap: as asked, nothing said
    assert "thinned" not in small.layout.title.text


def test_thinning_keeps_every_nth_location_around_the_chosen_one(setup):
    run, _, image = setup
    trace = run()
    (h, w), = trace.anchors.grid_sizes
    (k,) = trace.anchors.num_per_location
    for every, point in [(3, None), (5, (10.0, 20.0)), (8, (1e4, 1e4))]:
        iy, ix = pick_location(trace, point)
        fig = anchors_figure(image, trace, point=point, scope="all", every=every)
        cells = sum((i - iy) % every == 0 and (j - ix) % every == 0 for i in range(h) for j in range(w))
        assert sum(_n_boxes(t) for t in _lines(fig, "size ")) == cells * k


def test_the_chosen_location_is_the_nearest_centre_and_its_k_anchors_share_it(setup):
    run, settings, image = setup
    trace = run()
    hh, ww = trace.image_size
    sy, sx = trace.preprocess.scale
    (k,), (st,) = trace.anchors.num_per_location, trace.anchors.strides
    for point in [None, (30.0, 40.0), (ww - 1.0, 5.0)]:
        px, py = point or (ww / 2, hh / 2)
        iy, ix = pick_location(trace, point)
        (gh, gw), = trace.anchors.grid_sizes
        best = min(((j * st / sx - px) ** 2 + (i * st / sy - py) ** 2, (i, j)) for i in range(gh) for j in range(gw))
        assert (iy, ix) == best[1]
        fig = anchors_figure(image, trace, point=point, scope="location", colour_by="ratio")
        boxes = np.concatenate([_outline_boxes(t) for t in _lines(fig, "ratio ")])
        assert len(boxes) == k
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        assert np.allclose(centres, [ix * st / sx, iy * st / sy], atol=0.005)


def test_size_and_ratio_filters(setup):
    run, _, image = setup
    trace = run()
    sy, sx = trace.preprocess.scale
    fig = anchors_figure(image, trace, scope="all", every=2, sizes=[64.0], ratios=[0.5, 2.0])
    layers = _lines(fig, "size ")
    assert [t.name.split(" (")[0] for t in layers if _n_boxes(t)] == ["size 64", "size 64 at the chosen cell"]
    b = np.concatenate([_outline_boxes(t) for t in layers])
    w, h = (b[:, 2] - b[:, 0]) * sx, (b[:, 3] - b[:, 1]) * sy  # back in network-input pixels
    assert np.allclose(np.sqrt(w * h), 64, rtol=0.05)
    r = h / w
    assert np.all(np.minimum(abs(r - 0.5) / 0.5, abs(r - 2.0) / 2.0) < 0.1)  # ratios 0.5 and 2 only
    assert (abs(r - 0.5) < 0.05).any() and (abs(r - 2.0) < 0.1).any()


def test_best_anchor_per_ground_truth_and_recall(setup):
    run, settings, image = setup
    trace = run()
    for inside_only in (False, True):
        cov = coverage(trace, inside_only)
        t = run(settings.replace({"rpn.ignore_cross_boundary": inside_only}))
        assert np.allclose(cov.best_iou.numpy(), t.anchor_targets.best_iou_per_gt.numpy(), atol=2e-3)
        for same in (trace, t):  # from the stage where it masked the same anchors, else by its own IoU: equal
            brute = anchor_coverage(same.anchors.boxes, same.gt_boxes, same.anchors.inside if inside_only else None)
            got = coverage(same, inside_only)
            assert np.allclose(got.best_iou.numpy(), brute.best_iou.numpy(), atol=2e-3)
            iou = box_iou(same.gt_boxes, same.anchors.boxes)  # (G, A): the named anchor reaches the best IoU
            assert np.allclose(iou[torch.arange(len(iou)), got.best_anchor].numpy(), brute.best_iou.numpy(),
                               atol=2e-3)
            assert not inside_only or bool(same.anchors.inside[got.best_anchor].all())
        expected = sum(float(v) >= 0.5 for v in cov.best_iou) / len(trace.gt_boxes)
        assert cov.recall(0.5) == pytest.approx(expected)
        rows = coverage_rows(trace, cov)
        assert [r["best IoU"] for r in rows] == [round(float(v), 3) for v in cov.best_iou]
    fig = anchors_figure(image, trace, cov=cov)
    best = _lines(fig, "best anchor per GT")[0]
    assert np.allclose(_outline_boxes(best), trace.anchors.boxes[cov.best_anchor].numpy(), atol=0.005)
    hover = _markers(fig, "best anchor per GT").text
    assert [float(re.search(r"IoU ([0-9.]+)", s).group(1)) for s in hover] == \
        [round(float(v), 3) for v in cov.best_iou]


def test_targets_figure_hover_numbers_are_the_traces(setup):
    run, _, image = setup
    trace = run()
    t = trace.anchor_targets
    fig = anchor_targets_figure(image, trace)
    sampled_pos = set(t.sampled_positive.tolist())
    pos = _markers(fig, "positive in the minibatch")
    idx = np.asarray(pos.customdata)[:, 0].astype(int)
    assert set(idx.tolist()) == sampled_pos
    assert _n_boxes(_lines(fig, "positive in the minibatch")[0]) == len(sampled_pos)
    data = np.asarray(pos.customdata)
    assert np.allclose(data[:, 1], t.max_iou[idx].numpy(), atol=1e-6)
    assert np.array_equal(data[:, 2].astype(int), t.matched_gt[idx].numpy())
    assert np.allclose(data[:, 3:7], trace.gt_boxes[t.matched_gt[idx]].numpy(), atol=1e-4)
    assert np.allclose(data[:, 7:11], t.regression_targets[idx].numpy(), atol=1e-5)
    # the paper's formulas, from the boxes in the image's pixels (tx, tw do not change with the resize)
    a, g = data[:, 11:15], data[:, 3:7]
    aw, ah, gw, gh = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1], g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    tx = ((g[:, 0] + g[:, 2]) / 2 - (a[:, 0] + a[:, 2]) / 2) / aw
    ty = ((g[:, 1] + g[:, 3]) / 2 - (a[:, 1] + a[:, 3]) / 2) / ah
    assert np.allclose(np.stack([tx, ty, np.log(gw / aw), np.log(gh / ah)], 1), data[:, 7:11], atol=0.005)
    assert "</b> · positive · in the minibatch<br>" in pos.hovertemplate  # one label a layer
    # and one line a positive: the rule that made it (tests/test_explanations.py checks them against the Matcher)
    assert "<br>%{text}<extra>" in pos.hovertemplate and len(pos.text) == len(idx)
    assert all(s.startswith(("positive by IoU", "positive as the best anchor of GT #")) for s in pos.text)


def _shades(fig, name: str):
    return [t for t in fig.data if t.type == "heatmap" and t.name.startswith(name)]


def test_targets_figure_counts_every_label_once(setup):
    run, _, image = setup
    trace = run()
    labels = trace.anchor_targets.labels
    sampled = np.zeros(len(labels), dtype=bool)
    sampled[trace.anchor_targets.sampled_positive] = True
    sampled[trace.anchor_targets.sampled_negative] = True
    rest_neg = int(((labels == 0).numpy() & ~sampled).sum())
    fig = anchor_targets_figure(image, trace)

    def cells(name: str) -> int:  # the raster's counts, a cell each
        (shade,) = _shades(fig, name)
        return int(np.nansum(np.asarray(shade.z, dtype=float)))

    assert cells("negative, not sampled") == rest_neg and cells("ignored") == int((labels == -1).sum())
    dots = _markers(fig, f"negative in the minibatch: {len(trace.anchor_targets.sampled_negative)} (a dot per cell)")
    assert int(np.asarray(dots.customdata)[:, 2].sum()) == len(trace.anchor_targets.sampled_negative)
    neg_boxes = _lines(fig, "boxes of the sampled negatives")[0]
    assert neg_boxes.visible == "legendonly" and _n_boxes(neg_boxes) == len(trace.anchor_targets.sampled_negative)
    assert not _lines(fig, "negative, not sampled") and not _lines(fig, "ignored")  # no boxes unless asked
    c = target_counts(trace)
    assert c == {k: trace.counts()[k] for k in c}
    rows = positive_rows(trace)
    assert len(rows) == c["positive"] and sum(r["in minibatch"] for r in rows) == c["sampled_positive"]


def test_the_raster_cell_is_the_anchors_cell_and_hovers_its_numbers(setup):
    run, _, image = setup
    trace = run()
    t = trace.anchor_targets
    (shade,) = _shades(anchor_targets_figure(image, trace), "ignored")
    z, best = np.asarray(shade.z, dtype=float), np.asarray(shade.customdata, dtype=float)
    ignored = np.flatnonzero(t.labels.numpy() == -1)
    (h, w), = trace.anchors.grid_sizes
    (k,) = trace.anchors.num_per_location
    loc = ignored // k
    expect = np.bincount(loc, minlength=h * w).reshape(h, w).astype(float)
    assert np.array_equal(np.nan_to_num(z), expect) and np.isnan(z[expect == 0]).all()  # empty cells: no tint
    iou = np.full(h * w, -1.0)
    np.maximum.at(iou, loc, t.max_iou.numpy()[ignored])
    assert np.allclose(best[expect > 0], iou.reshape(h, w)[expect > 0], atol=1e-6)
    centres = trace.anchors.boxes[::k]  # anchor 0 of each cell, row-major: its centre is the cell's
    cx, cy = ((centres[:, 0] + centres[:, 2]) / 2).numpy(), ((centres[:, 1] + centres[:, 3]) / 2).numpy()
    assert np.allclose(shade.x0 + np.arange(w) * shade.dx, cx[:w], atol=0.005)
    assert np.allclose(shade.y0 + np.arange(h) * shade.dy, cy[::w], atol=0.005)
    assert "%{pointNumber[0]}, %{pointNumber[1]}): %{z} of its 30 anchors ignored" in shade.hovertemplate
    assert shade.hoverongaps is False


def test_a_large_grid_is_shaded_in_blocks_that_still_count_every_anchor(setup, monkeypatch):
    run, _, image = setup
    trace = run()
    (h, w), = trace.anchors.grid_sizes
    (k,) = trace.anchors.num_per_location
    ignored = np.flatnonzero(trace.anchor_targets.labels.numpy() == -1)
    monkeypatch.setattr("frcnn.viz.anchors.MAX_SHADE_CELLS", h * w // 5)  # blocks of 3 x 3 cells
    (shade,) = _shades(anchor_targets_figure(image, trace), "ignored")
    z = np.nan_to_num(np.asarray(shade.z, dtype=float))
    assert z.shape == (math.ceil(h / 3), math.ceil(w / 3)) and z.sum() == len(ignored)
    loc = ignored // k
    expect = np.zeros(z.shape)
    np.add.at(expect, ((loc // w) // 3, (loc % w) // 3), 1)
    assert np.array_equal(z, expect)
    centres = trace.anchors.boxes[::k]
    cx = ((centres[:, 0] + centres[:, 2]) / 2).numpy()
    assert shade.x0 == pytest.approx(float(cx[1]), abs=1e-3) and shade.dx == pytest.approx(3 * float(cx[1] - cx[0]))
    assert "3×3 cells around (%{x:.0f}, %{y:.0f}): %{z} of their 270 anchors ignored" in shade.hovertemplate
    assert shade.zmax == 9 * k and "3×3 a block" in shade.name


def test_requested_boxes_are_capped_spread_and_counted(setup):
    run, _, image = setup
    trace = run()
    labels = trace.anchor_targets.labels.numpy()
    sampled = np.zeros(len(labels), dtype=bool)
    sampled[trace.anchor_targets.sampled_positive] = True
    sampled[trace.anchor_targets.sampled_negative] = True
    rest_neg, ignored = np.flatnonzero((labels == 0) & ~sampled), np.flatnonzero(labels == -1)
    for neg, ign in ((True, False), (False, True), (True, True)):
        fig = anchor_targets_figure(image, trace, negatives_as_boxes=neg, ignored_as_boxes=ign)
        asked = [m for m, on in ((rest_neg, neg), (ignored, ign)) if on]
        caps = share([len(m) for m in asked], MAX_REQUESTED_BOXES)
        assert sum(caps) <= MAX_REQUESTED_BOXES
        for name, index, cap in zip([n for n, on in (("negative, not sampled", neg), ("ignored", ign)) if on],
                                    asked, caps, strict=True):
            (line,) = _lines(fig, name)
            drawn = spread(index, cap)
            assert _n_boxes(line) == len(drawn) == min(cap, len(index))
            assert np.allclose(_outline_boxes(line), trace.anchors.boxes.numpy()[drawn], atol=0.005)
            marks = next(t for t in fig.data if getattr(t, "mode", None) == "markers" and t.name == name)
            assert np.array_equal(np.asarray(marks.customdata)[:, 0].astype(int), drawn)
            if len(drawn) < len(index):
                assert line.name == f"{name} ({len(drawn):,} of {len(index):,} drawn)"
                assert f"{len(drawn):,} of {len(index):,} {name}" in fig.layout.title.text
        assert _shades(fig, "negative, not sampled") and _shades(fig, "ignored")  # the rasters still count all
    everything = anchor_targets_figure(image, trace, True, True, max_boxes=len(labels))
    assert _n_boxes(_lines(everything, "negative, not sampled")[0]) == len(rest_neg)
    assert _n_boxes(_lines(everything, "ignored")[0]) == len(ignored)
    assert share([181_063, 800], 2000) == [1200, 800] and share([5, 7], 2000) == [5, 7] and share([], 9) == []
    assert spread(np.arange(10), 20).tolist() == list(range(10)) and spread(np.arange(10), 3).tolist() == [0, 4, 9]


def test_without_ground_truth(setup):
    run, settings, image = setup
    trace = run(gt=False)
    assert trace.anchor_targets is None
    cov = coverage(trace, False)
    assert len(cov.best_iou) == 0 and math.isnan(cov.recall(0.5)) and coverage_rows(trace, cov) == []
    fig = anchors_figure(image, trace, cov=cov)
    assert not _lines(fig, "ground truth") and not _lines(fig, "best anchor")
    empty = Tracer(load_model("default", "random", "cpu")).run(
        torch.from_numpy(image.copy()).permute(2, 0, 1).contiguous(), settings, torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.int64))
    assert anchor_customdata(empty).shape == (len(empty.anchors.boxes), 15)
    fig = anchor_targets_figure(image, empty)
    assert _n_boxes(_lines(fig, "positive in the minibatch")[0]) == 0


def test_centre_dots_are_thinned_to_a_clickable_lattice_and_all_with_every_1(setup):
    run, _, image = setup
    trace = run()
    (h, w), = trace.anchors.grid_sizes
    for every in (1, 2, 16):
        fig = anchors_figure(image, trace, every=every)
        dots = next(t for t in fig.data if t.mode == "markers" and t.name.startswith("anchor centres"))
        step = centre_step(h * w, every)
        assert step <= every and (every > 1 or step == 1)
        assert len(dots.x) == math.ceil(h / step) * math.ceil(w / step)
        assert len(dots.x) <= max(MAX_CENTRE_DOTS * 1.1, h * w / every ** 2)
        # every dot is a real centre, and clicking it picks its own cell
        assert dots.text is None and dots.hovertemplate.startswith("cell (%{customdata[0]}, %{customdata[1]})")
        for x, y, cell in list(zip(dots.x, dots.y, dots.customdata, strict=True))[:: max(1, len(dots.x) // 20)]:
            assert tuple(int(v) for v in cell) == pick_location(trace, (float(x), float(y)))
    assert centre_step(64 * 80, 16) == 4 and centre_step(64 * 80, 1) == 1 and centre_step(400, 8) == 1


def test_small_marker_traces_are_svg_so_a_figure_needs_no_webgl_context(setup):
    """Streamlit mounts a changed chart anew; a WebGL trace then costs a new WebGL context."""
    run, _, image = setup
    trace = run()
    fig = anchors_figure(image, trace, cov=coverage(trace, True))
    assert {t.type for t in fig.data} == {"scatter"}
    assert marker_trace(GL_MIN_POINTS - 1) is go.Scatter and marker_trace(GL_MIN_POINTS) is go.Scattergl
    for t in anchors_figure(image, trace, every=1).data:  # every location's centre
        if t.mode == "markers":
            assert t.type == ("scattergl" if len(t.x) >= GL_MIN_POINTS else "scatter"), (t.name, len(t.x))
    many = add_points(go.Figure(), np.arange(GL_MIN_POINTS), np.arange(GL_MIN_POINTS), "#000000", "many")
    assert many.data[0].type == "scattergl"
