"""Losses: the four terms of Faster R-CNN's multi-task loss for one image and its ground truth, and how they
move when one setting is swept over a few values (each value traced through the shared, cached tracer, so
the backbone runs once).

Terms (``frcnn.stages.losses.Losses``): RPN objectness (log loss over the sampled anchors), RPN box
(smooth L1 over the positive anchors), RoI classifier (cross-entropy over the sampled RoIs), RoI box (smooth L1
of the true class's deltas over the foreground RoIs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from frcnn.errors import FrcnnError
from frcnn.settings import Settings
from frcnn.stages.losses import Losses
from frcnn.trace import STAGE_SETTINGS, Trace
from frcnn.viz.common import HIGHLIGHT, PALETTE, with_system_font

TERMS = ("rpn_objectness", "rpn_box", "roi_classifier", "roi_box")
TERM_LABELS = {"rpn_objectness": "RPN objectness", "rpn_box": "RPN box", "roi_classifier": "RoI classifier",
               "roi_box": "RoI box", "total": "Total"}

# settings worth sweeping, with a few values each (at most 6, so a sweep stays quick)
SWEEPS: dict[str, tuple[float, ...]] = {
    "rpn.fg_iou_thresh": (0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "rpn.batch_size_per_image": (32, 64, 128, 256, 512),
    "rpn.positive_fraction": (0.1, 0.25, 0.5, 0.75, 1.0),
    "roi.fg_iou_thresh": (0.5, 0.6, 0.7, 0.8, 0.9),
    "roi.batch_size_per_image": (16, 32, 64, 128, 256, 512),
    "rpn.post_nms_top_n": (50, 100, 300, 1000, 2000),
}
MAX_SWEEP_VALUES = 6


def loss_values(losses: Losses | None) -> dict[str, float | None]:
    """The four terms and their total as floats (None where a term is missing); all None without losses."""
    if losses is None:
        return dict.fromkeys((*TERMS, "total"))
    return losses.as_dict()


def loss_counts(trace: Trace) -> dict[str, int]:
    """What each term averages over: sampled anchors and positives (RPN), sampled RoIs and foreground (RoI)."""
    out: dict[str, int] = {}
    if trace.anchor_targets is not None:
        out["anchors_sampled"] = int(len(trace.anchor_targets.sampled_positive)
                                     + len(trace.anchor_targets.sampled_negative))
        out["anchors_positive"] = int(len(trace.anchor_targets.sampled_positive))
    if trace.roi_targets is not None:
        out["rois_sampled"] = int(len(trace.roi_targets.labels))
        out["rois_foreground"] = int((trace.roi_targets.labels > 0).sum())
    return out


@dataclass(frozen=True)
class SweepPoint:
    value: Any
    losses: dict[str, float | None]  # TERMS + "total"; all None when the value could not be traced
    error: str | None = None  # why the value was skipped (a refused settings combination)


def sweep(run: Callable[[Settings], Trace], base: Settings, key: str, values: Sequence[Any]) -> list[SweepPoint]:
    """Trace ``base`` with ``key`` set to each of ``values`` (at most :data:`MAX_SWEEP_VALUES`) through ``run``
    (the shared tracer, so cached stages are reused) and collect the loss terms. A value the settings refuse
    (e.g. a foreground IoU below the background one) becomes a point with ``error`` set."""
    if len(values) > MAX_SWEEP_VALUES:
        raise FrcnnError(f"a sweep takes at most {MAX_SWEEP_VALUES} values, got {len(values)}")
    points = []
    for value in values:
        try:
            settings = base.replace({key: value})
        except FrcnnError as exc:
            points.append(SweepPoint(value, loss_values(None), str(exc)))
            continue
        points.append(SweepPoint(value, loss_values(run(settings).losses)))
    return points


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


# what each term averages over, and the settings that reach it (the other terms stay as they are)
_RPN_TERMS, _ROI_TERMS = ("rpn_objectness", "rpn_box"), ("roi_classifier", "roi_box")
_ANCHOR_TARGET_KEYS = frozenset(STAGE_SETTINGS["anchor_targets"])
_PROPOSAL_KEYS = frozenset(STAGE_SETTINGS["proposals"])


def flat_terms(points: Sequence[SweepPoint], rel_tol: float = 1e-6) -> list[str]:
    """The terms with the same value at every traced point (at least two points)."""
    out = []
    for term in TERMS:
        v = [p.losses[term] for p in points if p.error is None and p.losses[term] is not None]
        if len(v) > 1 and max(v) - min(v) <= rel_tol * max(1.0, max(abs(x) for x in v)):
            out.append(term)
    return out


def why_flat(key: str, terms: Sequence[str]) -> str | None:
    """A sentence on why ``terms`` do not move with ``key``: the setting does not reach them (the RPN terms come
    from the anchors' minibatch, the RoI terms from the RoI minibatch drawn from the proposals), or it does but
    changed nothing at these values (the sampled minibatch came out the same)."""
    if not terms:
        return None
    names = ", ".join(TERM_LABELS[t] for t in terms)
    # which terms a key can reach, from the stages that read it: the RPN terms read the anchor targets and the RPN
    # head; the RoI terms the proposals, the RoI targets and the pooling
    rpn_only = key in _ANCHOR_TARGET_KEYS  # labels and minibatch of the anchors: not the proposals
    roi_only = key.startswith("roi.") or key in _PROPOSAL_KEYS  # after the RPN's own loss
    unreached = [t for t in terms if (rpn_only and t in _ROI_TERMS) or (roi_only and t in _RPN_TERMS)]
    reached = [t for t in terms if t not in unreached]
    parts = []
    if unreached:
        where = ("the RoI terms come from the RoI minibatch, drawn from the proposals, which this setting does "
                 "not change" if rpn_only else "the RPN terms come from the anchors' minibatch, which this setting "
                 "does not change")
        parts.append(f"{', '.join(TERM_LABELS[t] for t in unreached)}: {key} does not reach them ({where})")
    if reached:
        parts.append(f"{', '.join(TERM_LABELS[t] for t in reached)}: the same at these values of {key} (the "
                     "minibatch they average over came out the same, e.g. fewer positives than the cap at every "
                     "value)")
    return f"Flat lines ({names}). " + "; ".join(parts) + "."


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
