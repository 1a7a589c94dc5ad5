"""The pipeline diagram tells the truth (frcnn.pipeline_counts, drawn by frcnn.viz.overview.pipeline_dot): on all four
models (random weights, nothing downloaded), with each model's own settings and the paper's ("Paper's defaults":
PAPER with the model's input sizes), cross-boundary anchors kept and ignored, every node's count is checked against
the trace, recomputed independently:

- anchors: rebuilt here in numpy from the paper's formulas (w = S / sqrt(r), h = S * sqrt(r), corners rounded as
  torchvision does, centres (j s, i s)) on the grid each level's stride gives (ceil(Hp / s) x ceil(Wp / s) for a
  single map, the FPN's own maps); inside the image by comparing their corners with the resized image's size;
- labels and minibatches from the label tensors; proposals' NMS again with torchvision's plain ``nms`` per level;
  RoI fg / bg from the IoUs of the candidates with the ground truth (``box_iou``);

and the chain invariants: positive + negative + ignored = the labelled anchors (inside, or all when kept), sampled
<= minibatch size, proposals kept <= after NMS <= before NMS <= top-N <= anchors, fg + bg = RoI minibatch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou, nms

from frcnn.data.dataset import scene_tensors
from frcnn.models import MODEL_NAMES, load_model
from frcnn.pipeline_counts import (
    ANCHORS,
    DETECTIONS,
    FEATURES,
    IGNORED,
    INSIDE,
    LABELLED,
    MINIBATCH,
    NEGATIVE,
    NMS,
    NO_GT,
    OUTSIDE,
    POSITIVE,
    PRE_NMS,
    PROPOSALS,
    ROI_CANDIDATES,
    ROI_MINIBATCH,
    RPN_ANCHORS,
    TOP_N,
    Pipeline,
    pipeline_counts,
)
from frcnn.settings import PAPER, Settings
from frcnn.stages.preprocess import to_network
from frcnn.trace import Trace, Tracer
from frcnn.viz.overview import pipeline_dot

# Input sizes for the traces: the model's own where a CPU traces it in about a second, smaller for the two heavy
# backbones (vgg16 at 600 px: 8 s; resnet50_fpn_v2 at 800 px: 15 s, and the paper's 6,000 per level over five
# levels is over the work budget there).
SMALL = {"input.min_size": 256, "input.max_size": 416}
OWN_SIZE = {"default", "mobilenet_v3_fpn"}


def paper_defaults(defaults: Settings) -> Settings:
    """What app.py's "Paper's defaults" button sets: PAPER with the model's input sizes."""
    return PAPER.replace({"input.min_size": defaults.input.min_size, "input.max_size": defaults.input.max_size})


@pytest.fixture(scope="module")
def scene():
    return scene_tensors(3, 1)  # a 634 x 401 synthetic scene, 4 boxes of classes 1..5 (every model has them)


_TRACERS: dict[str, Tracer] = {}


def _tracer(name: str) -> Tracer:
    if name not in _TRACERS:
        _TRACERS[name] = Tracer(load_model(name, "random", "cpu"))
    return _TRACERS[name]


def _settings(name: str, which: str, ignore_cross_boundary: bool) -> Settings:
    defaults = _tracer(name).detector.defaults
    s = defaults if which == "model" else paper_defaults(defaults)
    if name not in OWN_SIZE:
        s = s.replace(SMALL)
    return s.replace({"rpn.ignore_cross_boundary": ignore_cross_boundary})


# ------------------------------------------------------------------------------------------- references
def _reference_anchors(trace: Trace) -> tuple[np.ndarray, list[tuple[int, int]], list[int]]:
    """(A, 4) float32 anchors in network-input pixels from the paper's formulas, ordered (level, y, x, ratio, size),
    with each level's (H, W) grid and anchors per location."""
    hp, wp = trace.preprocess.padded_size
    single = len(trace.features.maps) == 1
    strides = [int(trace.settings.anchors.stride)] if single else list(trace.features.strides)
    grids = [(math.ceil(hp / strides[0]), math.ceil(wp / strides[0]))] if single else list(trace.features.shapes)
    # an FPN: the settings' sizes spread over the levels, or the model's (frcnn.stages.anchors, tested there)
    sizes = [tuple(trace.settings.anchors.sizes)] if single else [tuple(s) for s in trace.anchors.sizes]
    ratios = np.asarray(trace.settings.anchors.ratios, dtype=np.float32)
    out, per_location = [], []
    for (gh, gw), s, level_sizes in zip(grids, strides, sizes, strict=True):
        scales = np.asarray(level_sizes, dtype=np.float32)
        h = np.sqrt(ratios)
        ws = ((1 / h)[:, None] * scales[None, :]).reshape(-1)
        hs = (h[:, None] * scales[None, :]).reshape(-1)
        cell = np.round(np.stack([-ws, -hs, ws, hs], 1) / 2)  # (k, 4), ratio-major as torchvision
        ys, xs = np.meshgrid(np.arange(gh) * s, np.arange(gw) * s, indexing="ij")
        shifts = np.stack([xs.ravel(), ys.ravel(), xs.ravel(), ys.ravel()], 1).astype(np.float32)  # (H*W, 4)
        out.append((shifts[:, None, :] + cell[None]).reshape(-1, 4))
        per_location.append(len(cell))
    return np.concatenate(out), grids, per_location


def _net(trace: Trace, boxes: torch.Tensor) -> torch.Tensor:
    return to_network(boxes, trace.preprocess.scale)


def check_pipeline(trace: Trace) -> Pipeline:
    """Every node of the diagram against the trace's tensors and the independent references; returns the graph."""
    p = pipeline_counts(trace)
    s = trace.settings
    ids = [n.id for n in p.nodes]
    assert len(ids) == len(set(ids))
    for e in p.edges:  # a connected graph: every edge joins two nodes, every node but the image has a parent
        assert p.has(e.source) and p.has(e.target)
    assert all(p.parents(i) for i in ids if i != "image")

    # features: one line per level with its map size
    feats = p.node(FEATURES)
    assert len(feats.lines) == len(trace.features.maps)
    for line, (h, w) in zip(feats.lines, trace.features.shapes, strict=True):
        assert f"{w}×{h}" in line

    # anchors: the count, each level's grid x anchors per location, against the numpy reference
    ref, grids, k = _reference_anchors(trace)
    total = p.count(ANCHORS)
    assert total == len(ref) == sum(gh * gw * kk for (gh, gw), kk in zip(grids, k, strict=True))
    assert total == len(trace.anchors.boxes)
    np.testing.assert_allclose(_net(trace, trace.anchors.boxes).numpy(), ref, atol=2e-3)
    for (gh, gw), kk, n_level in zip(grids, k, trace.anchors.num_per_level, strict=True):
        assert any(f"{gw}×{gh} × {kk} " in line and line.endswith(f"= {gh * gw * kk:,}")
                   for line in p.node(ANCHORS).lines)
        assert n_level == gh * gw * kk
    for (gh, gw), (fh, fw) in zip(grids, trace.features.shapes, strict=True):
        if (gh, gw) != (fh, fw):  # anchors on another stride's grid: the node names both grids
            stride = trace.anchors.strides[0]
            assert f"on the stride-{stride} grid {gw}×{gh};" in p.node(ANCHORS).lines
            assert f"{fw}×{fh} at stride {trace.features.strides[0]}" in p.node(ANCHORS).lines
    h, w = trace.preprocess.image_size
    inside = (ref[:, 0] >= 0) & (ref[:, 1] >= 0) & (ref[:, 2] <= w) & (ref[:, 3] <= h)  # brute force
    assert np.array_equal(inside, trace.anchors.inside.numpy())
    n_inside = int(inside.sum())

    # labels
    t = trace.anchor_targets
    if t is None:
        assert p.has(NO_GT) and not any(p.has(i) for i in (INSIDE, LABELLED, POSITIVE, MINIBATCH))
    else:
        labels = t.labels.numpy()
        pos, neg = int((labels == 1).sum()), int((labels == 0).sum())
        if s.rpn.ignore_cross_boundary:
            assert not p.has(LABELLED)
            assert p.count(INSIDE) == n_inside and p.count(OUTSIDE) == total - n_inside
            assert (labels[~inside] == -1).all()  # every outside anchor ignored, never matched
            labelled, parent = n_inside, INSIDE
            ignored = int(((labels == -1) & inside).sum())
        else:
            assert not p.has(INSIDE) and not p.has(OUTSIDE)
            assert p.count(LABELLED) == total
            split = (f"{n_inside:,} inside the image,", f"{total - n_inside:,} cross its border")
            assert p.node(LABELLED).lines[1:] == split
            labelled, parent = total, LABELLED
            ignored = int((labels == -1).sum())
        assert (p.count(POSITIVE), p.count(NEGATIVE), p.count(IGNORED)) == (pos, neg, ignored)
        assert pos + neg + ignored == labelled
        for child in (POSITIVE, NEGATIVE, IGNORED):
            assert p.parents(child) == (parent,)
        sp, sn = t.sampled_positive.numpy(), t.sampled_negative.numpy()
        batch = s.rpn.batch_size_per_image
        assert p.count(MINIBATCH) == len(sp) + len(sn) <= batch
        assert (labels[sp] == 1).all() and (labels[sn] == 0).all()
        assert len(sp) <= min(pos, int(batch * s.rpn.positive_fraction)) and len(sn) <= neg
        assert f"{len(sp):,} positive + {len(sn):,} negative" in p.node(MINIBATCH).lines
        assert set(p.parents(MINIBATCH)) == {POSITIVE, NEGATIVE}

    # proposals: from the anchors the RPN decoded
    decoded = trace.rpn_anchors
    if trace.anchors_source == "settings":
        assert not p.has(RPN_ANCHORS) and p.parents(TOP_N) == (ANCHORS,)
        assert torch.equal(decoded.boxes, trace.anchors.boxes)
    else:
        assert p.parents(TOP_N) == (RPN_ANCHORS,) and p.count(RPN_ANCHORS) == len(decoded.boxes)
    per_level = torch.bincount(decoded.level, minlength=len(decoded.grid_sizes)).tolist()
    top_n = sum(min(s.rpn.pre_nms_top_n, n) for n in per_level)
    assert p.count(TOP_N) == top_n <= len(decoded.boxes)
    pr = trace.proposals
    pre = _net(trace, pr.pre_nms_boxes)
    assert p.count(PRE_NMS) == len(pre) <= top_n
    if len(pre):
        sides = torch.minimum(pre[:, 2] - pre[:, 0], pre[:, 3] - pre[:, 1])
        assert float(sides.min()) >= s.rpn.min_size - 1e-3 and float(pr.pre_nms_scores.min()) >= s.rpn.score_thresh
    after = sum(len(nms(pre[pr.pre_nms_level == lvl], pr.pre_nms_scores[pr.pre_nms_level == lvl], s.rpn.nms_thresh))
                for lvl in pr.pre_nms_level.unique().tolist())
    assert p.count(NMS) == after <= len(pre)
    assert p.count(PROPOSALS) == min(after, s.rpn.post_nms_top_n) == len(pr.boxes)

    # the RoI head
    r = trace.roi_targets
    if r is not None:
        gt, props = trace.gt_boxes, pr.boxes
        assert p.count(ROI_CANDIDATES) == len(props) + len(gt)
        candidates = torch.cat([props, gt])
        best = box_iou(gt, candidates).max(0).values if len(gt) else torch.zeros(len(candidates))
        roi = s.roi
        fg = int((best >= roi.fg_iou_thresh).sum())
        bg = int(((best >= roi.bg_iou_thresh_lo) & (best < roi.bg_iou_thresh_hi)).sum())
        if not len(gt):  # no ground truth: every candidate is background, whatever its IoU
            fg, bg = 0, len(candidates)
        lines = p.node(ROI_CANDIDATES).lines
        assert f"{len(props):,} proposals + {len(gt):,} GT boxes" in lines
        assert any(x.startswith(f"fg {fg:,} ") for x in lines) and any(x.startswith(f"bg {bg:,} ") for x in lines)
        assert f"ignored {len(candidates) - fg - bg:,}" in lines
        sf, sb = int((r.labels > 0).sum()), int((r.labels == 0).sum())
        assert p.count(ROI_MINIBATCH) == sf + sb == len(r.labels) <= roi.batch_size_per_image
        assert sf <= min(fg, int(roi.batch_size_per_image * roi.positive_fraction)) and sb <= bg
        assert f"fg {sf:,} + bg {sb:,}" in p.node(ROI_MINIBATCH).lines
    d = trace.detections
    if d is not None:
        assert p.count(DETECTIONS) == len(d.boxes) <= s.roi.detections_per_img
        assert p.parents(DETECTIONS) == (PROPOSALS,)
        classes = len(trace.class_names) - 1
        assert p.node(DETECTIONS).lines[:2] == (f"{len(pr.boxes):,} RoIs × {classes:,} classes",
                                                f"= {len(pr.boxes) * classes:,}")
        assert (d.scores > s.roi.score_thresh).all()
    else:
        assert not p.has(DETECTIONS)

    dot = pipeline_dot(p)  # the drawing: every node with its title and count, every edge
    for n in p.nodes:
        assert f"{n.id} [label=\"{n.title}" in dot
        if n.count is not None:
            assert f"{n.title}\\n{n.count:,}" in dot
    for e in p.edges:
        assert f"{e.source} -> {e.target}" in dot
    assert dot == pipeline_dot(trace)
    return p


# ------------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("ignore", [False, True], ids=["kept", "ignored"])
@pytest.mark.parametrize("which", ["model", "paper"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_count_follows_from_the_trace(name, which, ignore, scene):
    image, boxes, labels = scene
    trace = _tracer(name).run(image, _settings(name, which, ignore), boxes, labels)
    p = check_pipeline(trace)
    assert p.has(OUTSIDE) is ignore and p.has(LABELLED) is not ignore


def test_the_default_model_keeps_cross_boundary_anchors_so_nothing_flows_from_inside(scene):
    """The issue's contradiction: an arrow from "inside the image" into "negative" while every anchor is labelled."""
    image, boxes, labels = scene
    tracer = _tracer("default")
    assert tracer.detector.defaults.rpn.ignore_cross_boundary is False
    trace = tracer.run(image, None, boxes, labels)
    dot = pipeline_dot(trace)
    assert "inside ->" not in dot and "anchors -> labelled" in dot and "labelled -> negative" in dot
    assert "every anchor labelled" in dot and "inside the image" in dot  # said, as part of the labelled anchors


def test_papers_defaults_on_the_default_model_name_both_grids(scene):
    """Stride 16 on the stride-8 map: the anchors lie on the ceil(Hp / 16) x ceil(Wp / 16) grid, the map is Hp / 8 x
    Wp / 8; the RPN decodes the model's own 30 anchors a location, a node of their own."""
    image, boxes, labels = scene
    tracer = _tracer("default")
    trace = tracer.run(image, paper_defaults(tracer.detector.defaults), boxes, labels)
    p = check_pipeline(trace)
    hp, wp = trace.preprocess.padded_size
    assert trace.features.shapes == ((hp // 8, wp // 8),)
    grid = f"{math.ceil(wp / 16)}×{math.ceil(hp / 16)}"
    assert p.node(ANCHORS).lines[0].startswith(f"{grid} × 9 ")
    both = (f"on the stride-16 grid {grid};", "the feature map is", f"{wp // 8}×{hp // 8} at stride 8")
    assert p.node(ANCHORS).lines[1:4] == both
    assert p.count(ANCHORS) == math.ceil(wp / 16) * math.ceil(hp / 16) * 9
    assert p.count(RPN_ANCHORS) == (hp // 8) * (wp // 8) * 30
    assert p.has(INSIDE) and p.has(OUTSIDE)  # the paper ignores cross-boundary anchors


def test_fpn_lists_each_level(scene):
    image, boxes, labels = scene
    tracer = _tracer("mobilenet_v3_fpn")
    trace = tracer.run(image, _settings("mobilenet_v3_fpn", "model", False), boxes, labels)
    p = check_pipeline(trace)
    levels = len(trace.features.maps)
    assert levels > 1 and len(p.node(FEATURES).lines) == levels
    assert p.node(TOP_N).lines[0] == "per level:" and len(p.node(TOP_N).lines) == levels + 1
    for line, name in zip(p.node(FEATURES).lines, trace.features.names, strict=True):
        assert line.startswith(f"{name}: ")


def test_no_ground_truth_and_empty_ground_truth(scene):
    image, boxes, _ = scene
    tracer = _tracer("default")
    s = _settings("default", "paper", True)
    none = check_pipeline(tracer.run(image, s))
    assert none.has(NO_GT) and not none.has(ROI_CANDIDATES)
    empty = check_pipeline(tracer.run(image, s, boxes[:0], torch.zeros(0, dtype=torch.int64)))
    assert empty.count(POSITIVE) == 0 and empty.count(NEGATIVE) == empty.count(INSIDE)  # all inside negative


def test_dot_labels_are_escaped_and_rows_ordered():
    from frcnn.pipeline_counts import IMAGE, Edge, Node

    p = Pipeline((Node(IMAGE, 'a "quoted" \\ name', None), Node(ANCHORS, "anchors", 1_234, ("x",))),
                 (Edge(IMAGE, ANCHORS),))
    dot = pipeline_dot(p)
    assert 'image [label="a \\"quoted\\" \\\\ name"' in dot and 'anchors [label="anchors\\n1,234\\nx"' in dot
    assert "{rank=same; image anchors;}" in dot and "image -> anchors;" in dot
    assert "[style=invis]" not in dot  # the row's two nodes are joined already


def test_a_trace_without_the_head(scene):
    image, boxes, labels = scene
    trace = _tracer("default").run(image, None, boxes, labels, head=False)
    p = check_pipeline(trace)
    assert not p.has(DETECTIONS) and not p.has(ROI_MINIBATCH) and p.has(PROPOSALS)
