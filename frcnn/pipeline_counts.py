"""What the pipeline diagram says: the steps one trace went through, the count at each, and how they connect.

The diagram is a graph of :class:`Node` (one count each) and :class:`Edge`; :func:`pipeline_counts` builds it
from a :class:`~frcnn.trace.Trace` and :func:`frcnn.viz.overview.pipeline_dot` only draws it. Every count is
read from the trace's own tensors, and each follows from the one before:

- anchors = sum over levels l of H_l * W_l * A_l, on each level's *anchor* grid: for a single-map model whose
  settings ask for another stride (the paper's 16 on the default model's stride-8 map) that grid is
  ceil(Hp / stride) x ceil(Wp / stride) of the padded input, not the feature map, and the node says both;
- cross-boundary anchors ignored (the paper, ``rpn.ignore_cross_boundary``): anchors = inside + outside, the
  outside ones ignored without a match, and positive + negative + ignored = inside; kept (torchvision, the
  default model): every anchor is labelled, positive + negative + ignored = anchors;
- RPN minibatch = sampled positive + sampled negative <= ``rpn.batch_size_per_image``, each at most its label's
  count;
- the proposals are decoded from the anchors the RPN head decodes: the settings' when they fit the trained head,
  else the model's own (a node of their own, with their count); top-N per level = sum_l min(N, anchors of l) >=
  before NMS (clipped, small and low-score boxes dropped) >= after NMS >= proposals kept (post-NMS top-N);
- RoI candidates = proposals + ground-truth boxes = fg + bg + ignored; RoI minibatch = fg + bg sampled <=
  ``roi.batch_size_per_image``;
- detections: proposals x (K - 1) classes candidates, score threshold, per-class NMS, at most
  ``roi.detections_per_img``.

Without ground truth there are no anchor labels, RoI samples or losses: one node says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from frcnn.stages.anchors import Anchors
from frcnn.stages.backbone import Features
from frcnn.trace import Trace

# node ids
IMAGE, INPUT, FEATURES, ANCHORS = "image", "input", "features", "anchors"
INSIDE, OUTSIDE, LABELLED = "inside", "outside", "labelled"  # ignored cross-boundary: inside / outside; kept: all
POSITIVE, NEGATIVE, IGNORED, MINIBATCH = "positive", "negative", "ignored", "minibatch"
RPN_ANCHORS = "rpn_anchors"  # only when the RPN decodes the model's own anchors, not the settings'
TOP_N, PRE_NMS, NMS, PROPOSALS = "top_n", "pre_nms", "nms", "proposals"
ROI_CANDIDATES, ROI_MINIBATCH, DETECTIONS, NO_GT = "roi_candidates", "roi_minibatch", "detections", "no_gt"


@dataclass(frozen=True)
class Node:
    id: str
    title: str  # "anchors", "inside the image" ...
    count: int | None  # None: a node without a count (the image, the features)
    lines: tuple[str, ...] = ()  # what the count is made of, the rule that made it
    group: str = ""  # "input", "anchors", "labels", "proposals", "roi", "detections", "note": the colour


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    dashed: bool = False


@dataclass(frozen=True)
class Pipeline:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def has(self, node_id: str) -> bool:
        return any(n.id == node_id for n in self.nodes)

    def count(self, node_id: str) -> int:
        count = self.node(node_id).count
        if count is None:
            raise KeyError(f"{node_id} has no count")
        return count

    def parents(self, node_id: str) -> tuple[str, ...]:
        return tuple(e.source for e in self.edges if e.target == node_id)


def _size(hw: tuple[int, int]) -> str:
    """(H, W) as "W×H", the way the app writes image sizes."""
    return f"{hw[1]}×{hw[0]}"


def _level(features: Features, i: int) -> str:
    return f"{features.names[i]}: " if len(features.maps) > 1 else ""


def _feature_lines(features: Features) -> tuple[str, ...]:
    return tuple(f"{_level(features, i)}{_size(hw)}, stride {s}"
                 for i, (hw, s) in enumerate(zip(features.shapes, features.strides, strict=True)))


def _anchor_lines(anchors: Anchors, features: Features) -> tuple[str, ...]:
    """Per level: grid × anchors per location = count; what k is made of; where the anchor grid is not the feature
    map, both."""
    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'s' * (n != 1)}"

    lines = []
    for i, (grid, k, n) in enumerate(zip(anchors.grid_sizes, anchors.num_per_location, anchors.num_per_level,
                                         strict=True)):
        lines.append(f"{_level(features, i)}{_size(grid)} × {k} = {n:,}")
        if grid != features.shapes[i] or anchors.strides[i] != features.strides[i]:
            lines += [f"on the stride-{anchors.strides[i]} grid {_size(grid)};", "the feature map is",
                      f"{_size(features.shapes[i])} at stride {features.strides[i]}"]
    makeup = sorted({(len(s), len(anchors.ratios)) for s in anchors.sizes})
    lines += [f"k = {plural(s, 'size')} × {plural(r, 'ratio')}" + (" a level" if len(anchors.sizes) > 1 else "")
              for s, r in makeup]
    return tuple(lines)


def _anchor_nodes(trace: Trace) -> tuple[list[Node], list[Edge]]:
    """Anchors -> (inside / outside, or every anchor labelled) -> positive / negative / ignored -> minibatch."""
    a, t, rpn = trace.anchors, trace.anchor_targets, trace.settings.rpn
    total, inside = int(len(a.boxes)), int(a.inside.sum())
    if t is None:
        return ([Node(NO_GT, "no ground truth", None, ("no anchor labels,", "RoI samples or losses"), "note")],
                [Edge(ANCHORS, NO_GT, dashed=True)])
    labels = t.labels
    if rpn.ignore_cross_boundary:
        labelled = a.inside
        nodes = [Node(INSIDE, "inside the image", inside, ("labelled against", "the ground truth"), "labels"),
                 Node(OUTSIDE, "cross the image border", total - inside,
                      ("ignored, never matched", "(the paper, in training)"), "note")]
        edges = [Edge(ANCHORS, INSIDE), Edge(ANCHORS, OUTSIDE)]
        parent = INSIDE
    else:
        labelled = torch.ones_like(a.inside)
        nodes = [Node(LABELLED, "every anchor labelled", total,
                      ("cross-boundary kept:", f"{inside:,} inside the image,", f"{total - inside:,} cross its border"),
                      "labels")]
        edges = [Edge(ANCHORS, LABELLED)]
        parent = LABELLED
    best = " or a box's best" if rpn.allow_low_quality_matches else ""
    pos, neg = int((labels == 1).sum()), int((labels == 0).sum())
    ign = int(((labels == -1) & labelled).sum())
    nodes += [Node(POSITIVE, "positive", pos, (f"IoU ≥ {rpn.fg_iou_thresh:g}{best}",), "labels"),
              Node(NEGATIVE, "negative", neg, (f"IoU < {rpn.bg_iou_thresh:g} with every box",), "labels"),
              Node(IGNORED, "ignored", ign, (f"IoU in [{rpn.bg_iou_thresh:g}, {rpn.fg_iou_thresh:g})",), "labels")]
    edges += [Edge(parent, POSITIVE), Edge(parent, NEGATIVE), Edge(parent, IGNORED)]
    sp, sn = int(len(t.sampled_positive)), int(len(t.sampled_negative))
    nodes.append(Node(MINIBATCH, "RPN minibatch", sp + sn,
                      (f"{sp:,} positive + {sn:,} negative",
                       f"at most {rpn.batch_size_per_image:,}, ≤ {rpn.positive_fraction:.0%} positive"), "labels"))
    edges += [Edge(POSITIVE, MINIBATCH), Edge(NEGATIVE, MINIBATCH)]
    return nodes, edges


def _proposal_nodes(trace: Trace) -> tuple[list[Node], list[Edge]]:
    """(The RPN's own anchors ->) top-N per level -> before NMS -> after NMS -> proposals kept."""
    rpn, c, feats = trace.settings.rpn, trace.proposals.counts, trace.features
    nodes: list[Node] = []
    edges: list[Edge] = []
    source = ANCHORS
    decoded = trace.rpn_anchors
    if trace.anchors_source != "settings":
        nodes.append(Node(RPN_ANCHORS, "the RPN's own anchors", int(len(decoded.boxes)),
                          (*_anchor_lines(decoded, feats), "proposals decode these:", "the settings' anchors",
                           "do not fit the trained head"), "anchors"))
        edges.append(Edge(FEATURES, RPN_ANCHORS))
        source = RPN_ANCHORS
    n = rpn.pre_nms_top_n
    per_level = [min(n, m) for m in decoded.num_per_level]
    levels = len(per_level)
    top_lines = tuple(f"{_level(feats, i)}min({n:,}, {m:,}) = {k:,}"
                      for i, (m, k) in enumerate(zip(decoded.num_per_level, per_level, strict=True))) \
        if levels > 1 else ()
    nodes.append(Node(TOP_N, f"top {n:,} by objectness", c["pre_nms_top_n"],
                      (("per level:", *top_lines) if levels > 1 else ()), "proposals"))
    dropped = ["clipped to the image;", f"{c['pre_nms_top_n'] - c['min_size']:,} under {rpn.min_size:g} px dropped"]
    if rpn.score_thresh > 0:
        dropped.append(f"{c['min_size'] - c['score_thresh']:,} scoring < {rpn.score_thresh:g} dropped")
    nodes.append(Node(PRE_NMS, "proposals before NMS", c["score_thresh"], tuple(dropped), "proposals"))
    nodes.append(Node(NMS, "proposals after NMS", c["nms"],
                      (f"IoU > {rpn.nms_thresh:g} suppressed", *(("within each level",) if levels > 1 else ())),
                      "proposals"))
    nodes.append(Node(PROPOSALS, "proposals kept", c["post_nms_top_n"],
                      (f"post-NMS top {rpn.post_nms_top_n:,}",), "proposals"))
    edges += [Edge(source, TOP_N), Edge(TOP_N, PRE_NMS), Edge(PRE_NMS, NMS), Edge(NMS, PROPOSALS)]
    return nodes, edges


def _head_nodes(trace: Trace) -> tuple[list[Node], list[Edge]]:
    """Proposals -> RoI candidates -> RoI minibatch; proposals -> detections."""
    roi, nodes, edges = trace.settings.roi, [], []
    r = trace.roi_targets
    if r is not None:
        labels = r.candidate_labels
        fg, bg, ign = int((labels > 0).sum()), int((labels == 0).sum()), int((labels < 0).sum())
        gt = int(r.candidate_is_gt.sum())
        bg_rule = (f"IoU in [{roi.bg_iou_thresh_lo:g}, {roi.bg_iou_thresh_hi:g})" if gt else
                   "no ground truth: every candidate")
        nodes.append(Node(ROI_CANDIDATES, "RoI candidates", int(len(labels)),
                          (f"{len(labels) - gt:,} proposals + {gt:,} GT boxes",
                           f"fg {fg:,} (IoU ≥ {roi.fg_iou_thresh:g})", f"bg {bg:,} ({bg_rule})", f"ignored {ign:,}"),
                          "roi"))
        sf, sb = int((r.labels > 0).sum()), int((r.labels == 0).sum())
        nodes.append(Node(ROI_MINIBATCH, "RoI minibatch", int(len(r.labels)),
                          (f"fg {sf:,} + bg {sb:,}",
                           f"at most {roi.batch_size_per_image:,}, ≤ {roi.positive_fraction:.0%} fg"), "roi"))
        edges += [Edge(PROPOSALS, ROI_CANDIDATES), Edge(ROI_CANDIDATES, ROI_MINIBATCH)]
    d = trace.detections
    if d is not None:
        c, classes = d.counts, len(trace.class_names) - 1
        nodes.append(Node(DETECTIONS, "detections", int(len(d.boxes)),
                          (f"{len(trace.proposals.boxes):,} RoIs × {classes:,} classes", f"= {c['candidates']:,}",
                           f"score > {roi.score_thresh:g}: {c['score_thresh']:,}",
                           f"per-class NMS {roi.nms_thresh:g}: {c['nms']:,}",
                           f"at most {roi.detections_per_img:,}"), "detections"))
        edges.append(Edge(PROPOSALS, DETECTIONS))
    return nodes, edges


def pipeline_counts(trace: Trace) -> Pipeline:
    """The diagram's nodes (each with its count) and edges for ``trace``, in pipeline order."""
    pre, feats = trace.preprocess, trace.features
    nodes = [Node(IMAGE, "image", None, (f"{_size(trace.image_size)} px",), "input"),
             Node(INPUT, "network input", None, (f"{_size(pre.image_size)} px,", f"padded to {_size(pre.padded_size)}"),
                  "input"),
             Node(FEATURES, "features", None, _feature_lines(feats), "input"),
             Node(ANCHORS, "anchors", int(len(trace.anchors.boxes)), _anchor_lines(trace.anchors, feats), "anchors")]
    edges = [Edge(IMAGE, INPUT), Edge(INPUT, FEATURES), Edge(FEATURES, ANCHORS)]
    for part in (_anchor_nodes, _proposal_nodes, _head_nodes):
        more_nodes, more_edges = part(trace)
        nodes += more_nodes
        edges += more_edges
    return Pipeline(tuple(nodes), tuple(edges))
