"""Two traces of one image side by side: the boxes each has that the other lacks, the counts that differ,
and sweep curves."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from torch import Tensor

from frcnn.stages._iou import iou_chunks
from frcnn.sweeps import Sweep
from frcnn.trace import Trace
from frcnn.viz.common import add_boxes, image_figure

SAME_IOU = 0.9  # boxes (of one class) overlapping this much count as the same box in both traces
COMMON, ONLY_HERE = "#8c8c8c", "#ff7f0e"


def only_in(boxes: Tensor, labels: Tensor | None, other: Tensor, other_labels: Tensor | None,
            same_iou: float = SAME_IOU) -> Tensor:
    """(N,) bool: the boxes with no box of the same label in ``other`` at IoU >= ``same_iou``."""
    if len(boxes) == 0 or len(other) == 0:
        return torch.ones(len(boxes), dtype=torch.bool)
    best = torch.zeros(len(boxes))
    for start, iou in iou_chunks(boxes.float().cpu(), other.float().cpu()):  # (n, M), memory bounded at any N
        if labels is not None and other_labels is not None:
            same = labels.cpu()[start:start + len(iou), None] == other_labels.cpu()[None, :]
            iou = torch.where(same, iou, 0.0)
        best[start:start + len(iou)] = iou.max(dim=1).values
    return best < same_iou


def what_boxes(trace: Trace, stage: str) -> tuple[Tensor, Tensor | None, Tensor]:
    """(boxes, labels or None, scores) of ``stage``: "proposals" or "detections"."""
    if stage == "proposals":
        return trace.proposals.boxes, None, trace.proposals.scores
    d = trace.detections
    return d.boxes, d.labels, d.scores


def comparison_figure(image: np.ndarray, trace: Trace, other: Trace, stage: str, title: str,
                      height: int = 520) -> go.Figure:
    """``trace``'s boxes of ``stage``: those the other trace has too in grey, those only here in orange."""
    boxes, labels, scores = what_boxes(trace, stage)
    o_boxes, o_labels, _ = what_boxes(other, stage)
    mine = only_in(boxes, labels, o_boxes, o_labels)
    fig = image_figure(image, height=height, title=title)
    names = trace.class_names
    hover = [f"{names[int(labels[i])] if labels is not None else 'proposal'} {float(scores[i]):.2f}"
             for i in range(len(boxes))]
    for mask, colour, name in ((~mine, COMMON, "in both"), (mine, ONLY_HERE, "only here")):
        idx = torch.where(mask)[0]
        add_boxes(fig, boxes[idx], colour, name, width=2.5 if colour == ONLY_HERE else 1.2,
                  hover=[hover[i] for i in idx.tolist()])
    if len(trace.gt_boxes):
        add_boxes(fig, trace.gt_boxes, "#2ca02c", "ground truth", width=1.5, dash="dot")
    return fig


def sweep_figure(result: Sweep, metrics: tuple[str, ...], height: int = 360) -> go.Figure:
    fig = go.Figure()
    for name in metrics:
        fig.add_trace(go.Scatter(x=result.values, y=result.metrics[name], mode="lines+markers", name=name,
                                 hovertemplate=f"{result.key} %{{x}}<br>{name} %{{y:.3f}}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(range=[0, 1.02]),
                      xaxis_title=result.key, title=f"{result.images} image(s), {result.boxes} ground-truth boxes",
                      legend=dict(orientation="h", yanchor="bottom", y=1.01, x=0))
    return fig
