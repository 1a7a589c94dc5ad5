"""The detections figure: true positives, false positives and misses against the ground truth
(the matching is :func:`frcnn.analysis.matching.match_detections`, passed in). Boxes (x1, y1, x2, y2) in the
image's pixels."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from torch import Tensor

from frcnn.analysis.matching import Matching, match_detections
from frcnn.analysis.naming import class_name as _gt_name
from frcnn.trace import Trace
from frcnn.viz.common import (
    IGNORED,
    MISSED,
    NEGATIVE,
    PALETTE,
    POSITIVE,
    add_box_labels,
    add_boxes,
    add_ground_truth,
    fit_legend,
    image_figure,
)


def label_texts(names: tuple[str, ...], labels: Tensor, scores: Tensor) -> list[str]:
    """A detection's box label: "class score" ("ring 0.97")."""
    return [f"{_gt_name(names, int(lab))} {float(s):.2f}" for lab, s in zip(labels, scores, strict=True)]


def scored_title(n_drawn: int, n_all: int, min_score: float, score_thresh: float, precision: float,
                 recall: float, iou_thresh: float) -> str:
    """The figure's title: precision and recall of the drawn detections, named by their count and score, so it
    never reads as the page's numbers of all detections (score >= the detector's threshold)."""
    if n_drawn == n_all:
        what = f"all {n_all} detections (score ≥ {score_thresh:g})"
    else:
        what = f"drawn: {n_drawn} of {n_all} detections (score ≥ {min_score:g})"
    return f"{what}: precision {precision:.2f} · recall {recall:.2f} at IoU {iou_thresh:g}"


def detections_figure(image: np.ndarray, trace: Trace, iou_thresh: float = 0.5, title: str | None = None,
                      height: int = 620, min_score: float = 0.0, label_boxes: bool = False,
                      matching: Matching | None = None) -> go.Figure:
    """Detections against the trace's ground truth, or coloured by class without it.

    Four styles that never share a colour: true positives green (thick), false positives vermilion, ground-truth
    boxes some drawn detection found yellow (thin), and the missed ones pink and dashed, each GT box drawn once
    (a missed box is not also drawn as ground truth).

    ``min_score``: detections scoring less are not drawn but kept in one legend-only trace (a click on its legend
    entry shows them), and the matching (TP / FP / missed) is of the drawn ones: precision and recall at that
    score, said in the title. The detector's own score threshold (the paper's 0.05, for mAP) keeps many low
    scores.

    ``label_boxes``: every drawn detection carries a "class score" label (:func:`label_texts`) on its layer's
    colour (:func:`frcnn.viz.common.add_box_labels`).

    ``matching``: :func:`match_detections` of all the trace's detections at ``iou_thresh`` (the page's; computed
    when not given); the drawn ones' is its :meth:`~frcnn.analysis.matching.Matching.of_top`."""
    fig = image_figure(image, height=height, title=title)
    d = trace.detections
    names = trace.class_names
    drawn = (d.scores >= min_score).cpu().numpy()  # (D,)
    hover = [f"{_gt_name(names, int(lab))} {float(s):.3f}" for lab, s in zip(d.labels, d.scores, strict=True)]
    low = [h for h, k in zip(hover, drawn, strict=True) if not k]
    boxes, scores, labels = d.boxes[drawn], d.scores[drawn], d.labels[drawn]
    hover = [h for h, k in zip(hover, drawn, strict=True) if k]
    texts = label_texts(names, labels, scores)
    if len(trace.gt_boxes):
        if matching is None:
            matching = match_detections(d.boxes, d.scores, d.labels, trace.gt_boxes, trace.gt_labels, iou_thresh)
        m = matching.of_top(drawn)
        gt_labels = trace.gt_labels.tolist()
        _add_found_and_missed(fig, trace, m)
        tp = m.true_positive.numpy()
        add_boxes(fig, boxes[tp], POSITIVE, "true positive", width=3,
                  hover=[f"{h} · IoU {float(i):.2f}" for h, i, t in zip(hover, m.iou, tp, strict=True) if t])
        if label_boxes:
            add_box_labels(fig, boxes[tp], [t for t, k in zip(texts, tp, strict=True) if k], POSITIVE)
            add_box_labels(fig, boxes[~tp], [t for t, k in zip(texts, tp, strict=True) if not k], NEGATIVE)
        fp_hover = []
        for h, j, i, t in zip(hover, m.overlap_gt.tolist(), m.overlap_iou.tolist(), tp, strict=True):
            if not t:
                fp_hover.append(f"{h} · IoU {i:.2f} with GT #{j} {_gt_name(names, gt_labels[j])}" if j >= 0
                                else f"{h} · overlaps no GT box")
        add_boxes(fig, boxes[~tp], NEGATIVE, "false positive", width=2, hover=fp_hover)
        fig.update_layout(title=dict(text=title or scored_title(
            len(boxes), len(d.boxes), min_score, trace.settings.roi.score_thresh, m.precision, m.recall,
            iou_thresh)))
    else:
        _add_by_class(fig, names, boxes, labels, hover, texts if label_boxes else None)
    if low:
        add_boxes(fig, d.boxes[~drawn], IGNORED, f"scoring under {min_score:g}", width=1, dash="dot", hover=low,
                  visible="legendonly")
    return fit_legend(fig)


def _add_found_and_missed(fig: go.Figure, trace: Trace, m: Matching) -> None:
    """The ground truth the drawn detections found (the ground-truth style) and the missed boxes (dashed)."""
    miss = m.missed.numpy()
    gt_hover = [f"GT #{g} {_gt_name(trace.class_names, lab)}" for g, lab in enumerate(trace.gt_labels.tolist())]
    add_ground_truth(fig, trace.gt_boxes[~miss], "ground truth, found",
                     hover=[h for h, k in zip(gt_hover, miss, strict=True) if not k])
    add_boxes(fig, trace.gt_boxes[miss], MISSED, "missed GT", width=2.5, dash="dash",
              hover=[f"missed {h}" for h, k in zip(gt_hover, miss, strict=True) if k])


def _add_by_class(fig: go.Figure, names: tuple[str, ...], boxes: Tensor, labels: Tensor, hover: list[str],
                  texts: list[str] | None) -> None:
    """Without ground truth: one layer of boxes a class, labelled with ``texts`` when given."""
    for k, label in enumerate(sorted(set(labels.tolist()))):
        keep = (labels == label).cpu().numpy()
        add_boxes(fig, boxes[keep], PALETTE[k % len(PALETTE)], _gt_name(names, label), width=2.5,
                  hover=[h for h, kk in zip(hover, keep, strict=True) if kk])
        if texts is not None:
            add_box_labels(fig, boxes[keep], [t for t, kk in zip(texts, keep, strict=True) if kk],
                           PALETTE[k % len(PALETTE)])
