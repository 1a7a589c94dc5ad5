"""Two traces of one image side by side: the boxes each has that the other lacks (found by
:func:`frcnn.analysis.compare.only_in`), and the sweep curves of :mod:`frcnn.analysis.sweeps`. Only draws."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from torch import Tensor

from frcnn.analysis.compare import only_in, what_boxes
from frcnn.analysis.naming import class_name
from frcnn.analysis.sweeps import Sweep
from frcnn.trace import Trace
from frcnn.viz.common import add_boxes, add_ground_truth, image_figure

COMMON, ONLY_HERE = "#8c8c8c", "#ff7f0e"


def comparison_figure(image: np.ndarray, trace: Trace, other: Trace, stage: str, title: str,
                      height: int = 520, only_here: Tensor | None = None) -> go.Figure:
    """``trace``'s boxes of ``stage``: those the other trace has too in grey, those only here in orange.
    ``only_here``: (N,) bool, :func:`only_in` of these boxes against the other trace's (computed when not given)."""
    boxes, labels, scores = what_boxes(trace, stage)
    if only_here is None:
        only_here = only_in(boxes, labels, *what_boxes(other, stage)[:2])
    fig = image_figure(image, height=height, title=title)
    hover = [f"{class_name(trace.class_names, int(labels[i])) if labels is not None else 'proposal'} "
             f"{float(scores[i]):.2f}" for i in range(len(boxes))]
    if len(trace.gt_boxes):  # under the boxes compared: a box "in both" on a ground-truth box stays visible
        add_ground_truth(fig, trace.gt_boxes)
    for mask, colour, name in ((~only_here, COMMON, "in both"), (only_here, ONLY_HERE, "only here")):
        idx = torch.where(mask)[0]
        add_boxes(fig, boxes[idx], colour, name, width=2.5 if colour == ONLY_HERE else 1.2,
                  hover=[hover[i] for i in idx.tolist()])
    return fig


def sweep_figure(result: Sweep, metrics: tuple[str, ...], height: int = 360) -> go.Figure:
    """One line a metric of ``result`` against the swept value, on [0, 1]."""
    fig = go.Figure()
    for name in metrics:
        fig.add_trace(go.Scatter(x=result.values, y=result.metrics[name], mode="lines+markers", name=name,
                                 hovertemplate=f"{result.key} %{{x}}<br>{name} %{{y:.3f}}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(range=[0, 1.02]),
                      xaxis_title=result.key, title=f"{result.images} image(s), {result.boxes} ground-truth boxes",
                      legend=dict(orientation="h", yanchor="bottom", y=1.01, x=0))
    return fig
