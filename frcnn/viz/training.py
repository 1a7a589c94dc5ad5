"""The training figure: the loss terms of a run against the step, and the held-out mAP@0.5 on a second axis.

A record is what a training job logs (:func:`frcnn.train.train`'s ``records``): a loss record holds ``step``,
``total`` and every term of :data:`frcnn.train.LOSS_TERMS`; an evaluation record holds ``step`` and ``map_50``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import plotly.graph_objects as go

from frcnn.train import LOSS_TERMS


def training_figure(records: Iterable[Mapping[str, float]], height: int = 380) -> go.Figure:
    """Loss curves (the total thicker) and, where there are evaluations, held-out mAP@0.5 on the right axis."""
    records = list(records)
    losses = [r for r in records if "total" in r]
    evals = [r for r in records if "map_50" in r]
    fig = go.Figure()
    for term in ("total", *LOSS_TERMS):
        fig.add_trace(go.Scatter(x=[r["step"] for r in losses], y=[r[term] for r in losses], name=term,
                                 mode="lines", line={"width": 3 if term == "total" else 1.5}))
    if evals:
        fig.add_trace(go.Scatter(x=[r["step"] for r in evals], y=[r["map_50"] for r in evals], name="held-out mAP@0.5",
                                 mode="lines+markers", yaxis="y2", line={"color": "black", "dash": "dot"}))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_title="step",
                      yaxis={"title": "loss", "rangemode": "tozero"},
                      yaxis2={"title": "mAP@0.5", "overlaying": "y", "side": "right", "range": [0, 1],
                              "showgrid": False},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "x": 0})
    return fig
