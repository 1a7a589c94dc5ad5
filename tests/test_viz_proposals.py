"""The proposal page's figures, built from a real trace of the default model (random weights) on a synthetic
scene, checked against the trace's own numbers and torchvision's nms."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou, nms

from frcnn import Settings, Tracer, load_model
from frcnn.analysis.proposals import nms_state, recall_at, recall_curve, replay, top_candidates
from frcnn.data.shapes import make_scene
from frcnn.viz.proposals import (
    FUNNEL_STEPS,
    funnel_figure,
    nms_step_figure,
    nms_step_rows,
    objectness_figure,
    proposals_figure,
    recall_figure,
    recall_steps,
)
from tests.figures import box_layers


@pytest.fixture(scope="module")
def scene():
    return make_scene(3, 0)


@pytest.fixture(scope="module")
def tracer():
    return Tracer(load_model("default", "random", "cpu"))


@pytest.fixture(scope="module")
def trace(tracer, scene):
    s = Settings().replace({"input.min_size": 256, "input.max_size": 512, "rpn.pre_nms_top_n": 2000,
                            "rpn.post_nms_top_n": 200, "rpn.min_size": 4})
    image = torch.from_numpy(scene.image).permute(2, 0, 1).contiguous()
    return tracer.run(image, s, torch.as_tensor(scene.boxes), torch.as_tensor(scene.labels))


def _traces(fig, group=None, mode=None):
    """Marker traces (mode "markers") or box layers (mode "lines": the path shapes) of a legend group."""
    items = box_layers(fig) if mode == "lines" else [t for t in fig.data if t.type in ("scatter", "scattergl")]
    return [t for t in items if (group is None or t.legendgroup == group) and (mode is None or t.mode == mode)]


def _num_boxes(layers) -> int:
    return sum(len(t.boxes) for t in layers)


def test_objectness_heatmap_is_the_max_or_mean_probability_on_the_stride_grid(scene, trace):
    logits = trace.rpn.objectness_maps[0]
    stride = trace.features.strides[0]
    h, w = trace.preprocess.image_size
    rows, cols = -(-h // stride), -(-w // stride)  # cells over the resized image, padding left out
    assert rows <= logits.shape[1] and cols <= logits.shape[2]
    for reduce, expected in (("max", torch.sigmoid(logits).amax(0)), ("mean", torch.sigmoid(logits).mean(0))):
        fig = objectness_figure(scene.image, trace, 0, reduce)
        heat = next(t for t in fig.data if t.type == "heatmap")
        np.testing.assert_allclose(np.asarray(heat.z), expected[:rows, :cols].numpy(), atol=1e-6)
        assert (heat.zmin, heat.zmax) == (0.0, 1.0)
        stretched = next(t for t in objectness_figure(scene.image, trace, 0, reduce, stretch=True).data
                         if t.type == "heatmap")
        assert stretched.zmin == pytest.approx(float(expected[:rows, :cols].min()))
        assert stretched.zmax == pytest.approx(float(expected[:rows, :cols].max()), abs=2e-6)
        sy, sx = trace.preprocess.scale
        assert heat.dx == pytest.approx(trace.features.strides[0] / sx)
        assert heat.dy == pytest.approx(trace.features.strides[0] / sy)
        assert _num_boxes(_traces(fig, "ground truth", "lines")) == len(scene.boxes)


@pytest.mark.parametrize("shade", [True, False])
def test_proposals_figure_draws_the_best_n_of_each_layer_with_their_scores(scene, trace, shade):
    p = trace.proposals
    fig = proposals_figure(scene.image, trace, top_n=25, shade_by_score=shade)
    before, after = _traces(fig, "before NMS", "lines"), _traces(fig, "after NMS", "lines")
    assert _num_boxes(before) == 25 and _num_boxes(after) == 25
    assert [t.name for t in before if t.showlegend] == ["before NMS (25)"]
    assert [t.name for t in after if t.showlegend] == ["after NMS (25)"]
    hover = [h for t in _traces(fig, "after NMS", "markers") for h in t.text]
    ranks = sorted((int(re.search(r"#(\d+)", h).group(1)), float(re.search(r"P\(object\) ([\d.]+)", h).group(1)))
                   for h in hover)
    assert [r for r, _ in ranks] == list(range(1, 26))
    np.testing.assert_allclose([s for _, s in ranks], p.scores[:25].numpy(), atol=5e-4)
    pre_scores = sorted((float(re.search(r"P\(object\) ([\d.]+)", h).group(1))
                         for t in _traces(fig, "before NMS", "markers") for h in t.text), reverse=True)
    np.testing.assert_allclose(pre_scores, p.pre_nms_scores.sort(descending=True).values[:25].numpy(), atol=5e-4)
    kept = sum("kept: proposal" in h for t in _traces(fig, "before NMS", "markers") for h in t.text)
    top = set(top_candidates(p.pre_nms_scores, 25).tolist())
    assert kept == len(top & set(p.keep.tolist()))


def test_box_outlines_are_one_svg_path_per_layer(scene, trace):
    """No WebGL lines (they misdraw on the image's reversed y axis) and no line traces of gap-separated boxes (one
    path element a box in plotly.js): a layer of boxes is one path shape."""
    figs = [objectness_figure(scene.image, trace), proposals_figure(scene.image, trace, 300, False)]
    for fig in figs:
        assert not [t for t in fig.data if "lines" in (getattr(t, "mode", None) or "")]
    after = _traces(figs[1], "after NMS", "lines")
    assert len(after) == 1 and _num_boxes(after) == min(300, len(trace.proposals.boxes))
    np.testing.assert_allclose(after[0].boxes, trace.proposals.boxes[:300].numpy(), atol=0.005)


def test_funnel_shows_the_trace_counts_and_they_never_grow(trace):
    fig = funnel_figure(trace.proposals.counts, trace.settings.rpn)
    values = list(fig.data[0].x)
    assert list(fig.data[0].customdata) == list(FUNNEL_STEPS)
    assert values == [trace.proposals.counts[s] for s in FUNNEL_STEPS]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] == len(trace.proposals.boxes)


def _steps(line) -> np.ndarray:
    """The recall of the first n boxes for every n, read back from a step line's corners (shape "hv")."""
    x, y = np.asarray(line.x), np.asarray(line.y, dtype=float)
    assert line.line.shape == "hv" and x[0] == 1 and np.all(np.diff(x) > 0)
    return y[np.searchsorted(x, np.arange(1, x[-1] + 1), side="right") - 1]


def test_recall_curve_ends_at_the_recall_of_all_proposals(trace):
    fig = recall_figure(trace)
    recall = recall_at(trace.proposals.boxes, trace.gt_boxes, (0.5, 0.7))
    pre = trace.proposals.pre_nms_boxes[torch.argsort(trace.proposals.pre_nms_scores, descending=True, stable=True)]
    for t in (0.5, 0.7):
        after = next(d for d in fig.data if d.name == f"after NMS, IoU ≥ {t:g}")
        assert np.allclose(_steps(after), recall_curve(trace.proposals.boxes, trace.gt_boxes, t).numpy())
        assert after.x[-1] == len(trace.proposals.boxes) and after.y[-1] == pytest.approx(recall[t])
        assert len(after.x) <= len(trace.gt_boxes) + 2  # a corner where the recall rises, the first and the last
        before = next(d for d in fig.data if d.name == f"before NMS, IoU ≥ {t:g}")
        assert np.allclose(_steps(before), recall_curve(pre, trace.gt_boxes, t).numpy())
        assert before.x[-1] == len(trace.proposals.pre_nms_boxes)
        assert before.y[-1] >= after.y[-1] - 1e-9  # NMS only removes boxes
    assert recall_steps(np.array([0.0, 0.0, 0.5, 0.5, 1.0]))[0].tolist() == [1, 3, 5]
    assert [v.tolist() for v in recall_steps(np.zeros(0))] == [[], []]


@pytest.mark.parametrize("thresh", [0.3, 0.5, 0.7])
def test_nms_replay_on_the_trace_agrees_with_torchvision_and_with_the_proposals(tracer, scene, trace, thresh):
    s = trace.settings.replace({"rpn.nms_thresh": thresh})
    image = torch.from_numpy(scene.image).permute(2, 0, 1).contiguous()
    t = tracer.run(image, s, torch.as_tensor(scene.boxes), torch.as_tensor(scene.labels))
    p = t.proposals
    idx = top_candidates(p.pre_nms_scores, 40)
    boxes, scores = p.pre_nms_boxes[idx], p.pre_nms_scores[idx]
    steps = replay(boxes, scores, thresh)
    assert [st.kept for st in steps] == nms(boxes, scores, thresh).tolist()
    # greedy NMS over the best 40 keeps exactly the proposals (of one level) that come from the best 40
    assert sorted(idx[[st.kept for st in steps]].tolist()) == sorted(set(idx.tolist()) & set(p.keep.tolist()))
    iou = box_iou(boxes, boxes)
    for step in (1, len(steps) // 2 + 1, len(steps)):
        state = nms_state(steps, len(boxes), step)
        fig = nms_step_figure(scene.image, boxes, scores, state, step, len(steps), thresh, zoom=step > 1)
        assert _num_boxes(_traces(fig, "kept now", "lines")) == 1
        assert _num_boxes(_traces(fig, "kept earlier", "lines")) == step - 1
        assert _num_boxes(_traces(fig, "suppressed now", "lines")) == len(state.suppressed)
        assert _num_boxes(_traces(fig, "still to visit", "lines")) == len(state.remaining)
        rows = nms_step_rows(scores, state)
        assert len(rows) == len(state.suppressed)
        for row in rows:
            assert row["IoU with kept"] == pytest.approx(float(iou[state.kept, row["candidate"] - 1]), abs=1e-4)
            assert row["IoU with kept"] > thresh
        labels = [a.text for a in fig.layout.annotations if a.name == "IoU label"]
        assert sorted(int(t.split()[0][1:]) for t in labels) == sorted(r["candidate"] for r in rows)
        printed = sorted(float(t.split()[-1]) for t in labels)
        assert printed == pytest.approx(sorted(r["IoU with kept"] for r in rows), abs=0.006)
