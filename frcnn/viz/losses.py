"""Losses figures: the four terms of Faster R-CNN's multi-task loss for one image (:func:`terms_figure`) and how they
move when one setting is swept (:func:`sweep_figure`, drawing :func:`frcnn.analysis.sweeps.loss_sweep`'s points).
The numbers come from :mod:`frcnn.analysis.losses` and :mod:`frcnn.analysis.sweeps`; this module only draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from frcnn.analysis.losses import (
    TERM_LABELS,
    TERMS,
    Losses,
    flat_terms,
    loss_counts,
    loss_values,
    why_flat,
)
from frcnn.analysis.sweeps import MAX_LOSS_SWEEP_VALUES as MAX_SWEEP_VALUES
from frcnn.analysis.sweeps import SweepPoint, sweeps_of
from frcnn.analysis.sweeps import loss_sweep as sweep
from frcnn.viz.common import HIGHLIGHT, PALETTE, with_system_font

SWEEPS: dict[str, tuple[Any, ...]] = {s.key: s.values for s in sweeps_of("losses").values()}  # for the Losses page
__all__ = ["MAX_SWEEP_VALUES", "SWEEPS", "TERMS", "TERM_LABELS", "SweepPoint", "flat_terms", "loss_counts",
           "loss_values", "sweep", "sweep_figure", "terms_figure", "why_flat", "y_range"]


def sweep_figure(points: Sequence[SweepPoint], key: str, current: Any = None, height: int = 480) -> go.Figure:
    """One line chart per term (2 x 2) against the swept value, one point per value (missing terms are gaps);
    the current setting is a dashed vertical line."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=[TERM_LABELS[t] for t in TERMS], horizontal_spacing=0.1,
                        vertical_spacing=0.18)
    xs = [p.value for p in points]
    log_x = all(isinstance(x, (int, float)) and x > 0 for x in xs) and len(xs) > 1 and max(xs) / min(xs) >= 16
    for i, term in enumerate(TERMS):
        row, col = i // 2 + 1, i % 2 + 1
        ys = [p.losses[term] if p.losses[term] is not None and math.isfinite(p.losses[term]) else None
              for p in points]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=TERM_LABELS[term], showlegend=False,
                                 line=dict(color=PALETTE[i], width=2), marker=dict(size=8),
                                 hovertemplate=f"{key} = %{{x}}<br>{TERM_LABELS[term]} = %{{y:.4f}}<extra></extra>"),
                      row=row, col=col)
        if current is not None:
            fig.add_vline(x=math.log10(current) if log_x else current, row=row, col=col,
                          line=dict(color=HIGHLIGHT, dash="dash", width=1.5))
        fig.update_xaxes(title_text=key if row == 2 else None, type="log" if log_x else None, row=row, col=col)
        fig.update_yaxes(range=y_range(ys), row=row, col=col)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10), hovermode="closest")
    return with_system_font(fig)


def y_range(values: Sequence[float | None]) -> list[float]:
    """An axis that fits the values: their span with 10% padding (a flat line: 5% of its value either side),
    never below 0 (losses are not negative); [0, 1] without values."""
    v = [y for y in values if y is not None and math.isfinite(y)]
    if not v:
        return [0.0, 1.0]
    lo, hi = min(v), max(v)
    pad = 0.1 * (hi - lo) if hi > lo else max(0.05 * abs(hi), 1e-3)
    return [max(0.0, lo - pad), hi + pad]


def terms_figure(losses: Losses, height: int = 300) -> go.Figure:
    """The four terms as one bar each (the total is their sum), values on the bars."""
    values = loss_values(losses)
    names = [TERM_LABELS[t] for t in TERMS]
    ys = [values[t] for t in TERMS]
    fig = go.Figure(go.Bar(x=names, y=[0 if v is None else v for v in ys], marker_color=list(PALETTE[:4]),
                           text=["n/a" if v is None else f"{v:.4f}" for v in ys], textposition="outside",
                           hovertemplate="%{x}: %{y:.4f}<extra></extra>", cliponaxis=False))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), yaxis_title="loss",
                      title=f"total {values['total']:.4f}")
    return with_system_font(fig)
