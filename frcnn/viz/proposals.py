"""Figures of the proposal layer (paper 3.1, 3.3): objectness over the image, proposals before and after NMS,
the funnel of counts through the layer, recall of the ground truth, and greedy NMS one step at a time.

Names: Q candidates entering NMS (``trace.proposals.pre_nms_*``), P proposals kept (best first), G ground-truth
boxes, M candidates of the NMS replay. Boxes are (x1, y1, x2, y2) in the original image's pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from torch import Tensor

from frcnn.analysis.proposals import NMSState, objectness_per_location, recall_curve
from frcnn.settings import RPNSettings
from frcnn.trace import Trace
from frcnn.viz.common import (
    HIGHLIGHT,
    IGNORED,
    KEPT,
    NEGATIVE,
    PALETTE,
    SUPPRESSED,
    add_box_labels,
    add_boxes,
    add_ground_truth,
    add_heatmap,
    as_numpy,
    image_figure,
)

SCORE_BINS = (0.0, 0.25, 0.5, 0.75, 1.0)  # objectness bins drawn with rising opacity when shading by score
BIN_OPACITY = (0.3, 0.5, 0.75, 1.0)
FUNNEL_STEPS = ("anchors", "pre_nms_top_n", "min_size", "score_thresh", "nms", "post_nms_top_n")


def _box_text(b: np.ndarray) -> str:
    return f"({b[0]:.0f}, {b[1]:.0f})-({b[2]:.0f}, {b[3]:.0f}) {b[2] - b[0]:.0f}×{b[3] - b[1]:.0f}"


def _add_gt(fig: go.Figure, trace: Trace) -> None:
    if len(trace.gt_boxes):
        add_ground_truth(fig, trace.gt_boxes,
                         hover=[f"ground truth {i}: {_box_text(b)}" for i, b in enumerate(as_numpy(trace.gt_boxes))])


def level_label(trace: Trace, level: int) -> str:
    """'level 0 · stride 16 · 32×32 · k=15'."""
    k, h, w = trace.rpn.objectness_maps[level].shape
    return f"level {trace.features.names[level]} · stride {trace.features.strides[level]} · {w}×{h} · k={k}"


def objectness_figure(image: np.ndarray, trace: Trace, level: int = 0, reduce: str = "max", stretch: bool = False,
                      height: int = 520) -> go.Figure:
    """P(object) per feature-map location of ``level`` over the image (the ``reduce`` of the k anchors' sigmoid),
    each cell stride / scale original pixels wide, cells over the padding left out; the ground truth on top.
    Colours span [0, 1], or the map's own range with ``stretch``."""
    fig = image_figure(image, height=height)
    stride = trace.features.strides[level]
    h, w = trace.preprocess.image_size
    prob = objectness_per_location(trace.rpn.objectness_maps[level], reduce).cpu().numpy()  # (Hi, Wi)
    prob = prob[:math.ceil(h / stride), :math.ceil(w / stride)]  # the cells over the image, not the padding
    sy, sx = trace.preprocess.scale
    k = trace.rpn.objectness_maps[level].shape[0]
    lo, hi = (float(prob.min()), float(prob.max())) if stretch else (0.0, 1.0)
    hover = f"cell centred at (%{{x:.0f}}, %{{y:.0f}}) px<br>{reduce} over {k} anchors: P(object) = %{{z:.3f}}"
    add_heatmap(fig, prob, (stride / sy, stride / sx), f"{reduce} P(object)", colorscale="Inferno", zmin=lo,
                zmax=max(hi, lo + 1e-6), hovertemplate=hover + "<extra></extra>")
    fig.data[-1].colorbar.title = "P(object)"
    _add_gt(fig, trace)
    fig.update_layout(title=f"{reduce} objectness per location · {level_label(trace, level)}",
                      margin=dict(t=60))
    return fig


def _add_scored_boxes(fig: go.Figure, boxes: np.ndarray, scores: np.ndarray, hover: list[str], color: str,
                      name: str, width: float, shade: bool, dash: str | None = None) -> None:
    """One legend entry for all ``boxes``; with ``shade`` one path per score bin, opacity rising with it."""
    start = len(fig.layout.shapes)
    if not shade:
        add_boxes(fig, boxes, color, name, width=width, hover=hover, legendgroup=name, dash=dash)
    else:
        bins = np.clip(np.digitize(scores, SCORE_BINS[1:-1]), 0, len(BIN_OPACITY) - 1)
        first = True
        for b, opacity in enumerate(BIN_OPACITY):
            sel = bins == b
            if not sel.any():
                continue
            add_boxes(fig, boxes[sel], color, name, width=width, opacity=opacity, legendgroup=name,
                      hover=[h for h, s in zip(hover, sel, strict=True) if s], showlegend=first, dash=dash)
            first = False
    layers = fig.layout.shapes[start:]
    if layers:
        layers[0].name = f"{name} ({len(boxes):,})"
        layers[0].showlegend = True


def proposal_label_texts(scores: np.ndarray) -> list[str]:
    """A proposal's box label: "class score", its class the RPN's only one ("object 0.97", P(object))."""
    return [f"object {float(s):.2f}" for s in scores]


def proposals_figure(image: np.ndarray, trace: Trace, top_n: int = 50, shade_by_score: bool = True,
                     height: int = 620, label_boxes: bool = False) -> go.Figure:
    """The ``top_n`` best candidates before NMS and the ``top_n`` best proposals after it (two legend layers,
    objectness and rank in the hover), and the ground truth. ``label_boxes``: each drawn proposal after NMS
    carries an "object score" label (:func:`proposal_label_texts`)."""
    fig = image_figure(image, height=height)
    p = trace.proposals
    q_scores = as_numpy(p.pre_nms_scores)
    order = np.argsort(-q_scores, kind="stable")[:top_n]
    pre_boxes, pre_scores = as_numpy(p.pre_nms_boxes)[order], q_scores[order]
    kept_rank = {int(k): r for r, k in enumerate(as_numpy(p.keep))}
    level = as_numpy(p.pre_nms_level)[order]
    pre_hover = [f"before NMS #{r + 1} · P(object) {s:.3f} · level {lv}<br>"
                 + (f"kept: proposal #{kept_rank[int(i)] + 1}" if int(i) in kept_rank else "not kept")
                 + f"<br>{_box_text(b)}"
                 for r, (i, s, lv, b) in enumerate(zip(order, pre_scores, level, pre_boxes, strict=True))]
    _add_scored_boxes(fig, pre_boxes, pre_scores, pre_hover, SUPPRESSED, "before NMS", 1.2, shade_by_score,
                      dash="dot")
    post_boxes, post_scores = as_numpy(p.boxes)[:top_n], as_numpy(p.scores)[:top_n]
    post_hover = [f"proposal #{r + 1} · P(object) {s:.3f}<br>{_box_text(b)}"
                  for r, (s, b) in enumerate(zip(post_scores, post_boxes, strict=True))]
    _add_scored_boxes(fig, post_boxes, post_scores, post_hover, KEPT, "after NMS", 2.2, shade_by_score)
    _add_gt(fig, trace)
    if label_boxes:
        add_box_labels(fig, post_boxes, proposal_label_texts(post_scores), KEPT, name="proposal label")
    fig.update_layout(title=f"best {min(top_n, len(q_scores))} of {len(q_scores):,} candidates before NMS · "
                            f"best {len(post_boxes)} of {len(p.boxes):,} proposals after"
                            + (" · opacity = P(object)" if shade_by_score else ""), margin=dict(t=70))
    return fig


def funnel_labels(rpn: RPNSettings, num_levels: int = 1) -> dict[str, str]:
    per_level = " per level" if num_levels > 1 else ""
    return {"anchors": "anchors", "pre_nms_top_n": f"pre-NMS top {rpn.pre_nms_top_n:,}{per_level}",
            "min_size": f"sides ≥ {rpn.min_size:g} px", "score_thresh": f"P(object) ≥ {rpn.score_thresh:g}",
            "nms": f"NMS at IoU {rpn.nms_thresh:g}", "post_nms_top_n": f"post-NMS top {rpn.post_nms_top_n:,}"}


def funnel_figure(counts: dict[str, int], rpn: RPNSettings, num_levels: int = 1, height: int = 360) -> go.Figure:
    """Boxes left after each step of the proposal layer, anchors to the final proposals."""
    labels = funnel_labels(rpn, num_levels)
    steps = [s for s in FUNNEL_STEPS if s in counts]
    colors = [IGNORED, PALETTE[4], PALETTE[4], PALETTE[4], SUPPRESSED, KEPT][:len(steps)]
    fig = go.Figure(go.Funnel(y=[labels[s] for s in steps], x=[counts[s] for s in steps], customdata=steps,
                              textinfo="value+percent previous", marker=dict(color=colors),
                              hovertemplate="%{y}: %{x:,} boxes (%{percentPrevious:.1%} of the step before)"
                                            "<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), title="Boxes through the proposal layer")
    return fig


def recall_steps(curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The corners of a recall curve (``curve[n - 1]``: the recall of the first n boxes), drawn as steps (``hv``):
    n = 1, every n where the recall rises, and the last n; (n, recall) each. A curve over thousands of boxes rises
    at most once per ground-truth box, so this is a handful of points where the curve itself was one per box."""
    if not len(curve):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    keep = np.flatnonzero(np.diff(curve, prepend=np.nan) != 0)  # n - 1 of every change (and the first)
    keep = np.union1d(keep, [len(curve) - 1])
    return keep + 1, curve[keep].astype(np.float32)


def recall_figure(trace: Trace, thresholds: Sequence[float] = (0.5, 0.7), height: int = 360) -> go.Figure:
    """Recall of the ground truth by the first n boxes, after NMS (solid) and before it (dotted), per IoU: step
    lines through the curve's corners (:func:`recall_steps`), each corner's numbers on hover."""
    p = trace.proposals
    pre_order = torch.argsort(p.pre_nms_scores.cpu(), descending=True, stable=True)
    fig = go.Figure()
    for i, t in enumerate(thresholds):
        color = (KEPT, NEGATIVE, PALETTE[2], PALETTE[3])[i % 4]
        layers = (("after NMS", p.boxes, None), ("before NMS", p.pre_nms_boxes.cpu()[pre_order], "dot"))
        for name, boxes, dash in layers:
            n, curve = recall_steps(recall_curve(boxes, trace.gt_boxes, t).numpy())
            fig.add_trace(go.Scatter(x=n, y=curve, mode="lines", name=f"{name}, IoU ≥ {t:g}",
                                     line=dict(color=color, dash=dash, width=2.5 if dash is None else 1.5,
                                               shape="hv"),
                                     hovertemplate=f"{name}: best %{{x:,}} boxes find %{{y:.0%}} of the GT "
                                                   f"at IoU ≥ {t:g}<extra></extra>"))
    fig.update_xaxes(type="log", title="number of boxes kept (best first)")
    fig.update_yaxes(range=[-0.02, 1.02], title="recall of ground truth", tickformat=".0%")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), title="Recall vs number of proposals",
                      legend=dict(orientation="h", y=-0.3), hovermode="closest")
    return fig


def nms_step_figure(image: np.ndarray, boxes: Tensor, scores: Tensor, state: NMSState, step: int, num_steps: int,
                    iou_thresh: float, zoom: bool = False, height: int = 560) -> go.Figure:
    """Greedy NMS at one step of its replay over M candidates (``boxes`` (M, 4), ``scores`` (M,), best first):
    kept so far (blue), kept now (orange, thick), suppressed now (pink, dashed, IoU printed), earlier suppressed
    (hidden in the legend) and the candidates still to visit (grey, faded)."""
    fig = image_figure(image, height=height)
    b, s = as_numpy(boxes).reshape(-1, 4), as_numpy(scores)

    def hover(idx: np.ndarray, what: str, extra: Sequence[str] | None = None) -> list[str]:
        extra = extra or [""] * len(idx)
        return [f"candidate #{i + 1} · P(object) {s[i]:.3f} · {what}{e}<br>{_box_text(b[i])}"
                for i, e in zip(idx, extra, strict=True)]

    remaining = as_numpy(state.remaining)
    add_boxes(fig, b[remaining], IGNORED, "still to visit", width=1, opacity=0.45, hover=hover(remaining, "to visit"))
    gone = as_numpy(state.suppressed_before)
    add_boxes(fig, b[gone], SUPPRESSED, "suppressed earlier", width=1, opacity=0.5, dash="dot",
              hover=hover(gone, "suppressed earlier"), visible="legendonly")
    kept_before = as_numpy(state.kept_before)
    add_boxes(fig, b[kept_before], KEPT, "kept earlier", width=2, hover=hover(kept_before, "kept earlier"))
    sup, ious = as_numpy(state.suppressed), as_numpy(state.suppressed_iou)
    add_boxes(fig, b[sup], NEGATIVE, "suppressed now", width=2.5, dash="dash",
              hover=hover(sup, "suppressed now", [f" · IoU {v:.2f} > {iou_thresh:g}" for v in ious]))
    k = state.kept
    add_boxes(fig, b[[k]], HIGHLIGHT, "kept now", width=4, hover=hover(np.array([k]), f"kept at step {step}"))
    _label_step(fig, b, k, sup, ious, step, image.shape[1])
    title = (f"step {step} of {num_steps}: keep candidate #{k + 1} (P {s[k]:.3f}), suppress {len(sup)} with IoU > "
             f"{iou_thresh:g} · {len(remaining)} still to visit")
    fig.update_layout(title=title, margin=dict(t=70))
    if zoom:
        focus = b[np.concatenate([[k], sup]).astype(int)]
        x1, y1, x2, y2 = focus[:, 0].min(), focus[:, 1].min(), focus[:, 2].max(), focus[:, 3].max()
        pad = 0.5 * max(x2 - x1, y2 - y1, 48)  # room for the IoU labels beside the boxes
        fig.update_xaxes(range=[x1 - pad, x2 + pad])
        fig.update_yaxes(range=[y2 + pad, y1 - pad])
        fig.update_layout(uirevision=f"nms-step-{step}")
    return fig


def _label_step(fig: go.Figure, b: np.ndarray, k: int, sup: np.ndarray, ious: np.ndarray, step: int,
                width: int) -> None:
    """'kept #s' over the kept box; one 'IoU' label per suppressed box, stacked in a column beside the kept box
    with an arrow to the box's side, so labels never pile up on the boxes' shared corner."""
    fig.add_annotation(x=b[k, 0], y=b[k, 1], text=f"<b>kept #{step}</b>", showarrow=False, xanchor="left",
                       yanchor="top", font=dict(color="white", size=13), bgcolor=HIGHLIGHT, name="kept label")
    right = (b[k, 0] + b[k, 2]) / 2 < width / 2  # labels on the side with more room
    order = np.argsort(-ious, kind="stable")
    for row, j in enumerate(order):
        i = sup[j]
        fig.add_annotation(x=b[i, 2] if right else b[i, 0], y=(b[i, 1] + b[i, 3]) / 2,
                           text=f"#{i + 1} IoU {ious[j]:.2f}", showarrow=True, arrowhead=2, arrowcolor=NEGATIVE,
                           ax=70 if right else -70, ay=(row - (len(order) - 1) / 2) * 20,
                           font=dict(color=NEGATIVE, size=12), bgcolor="rgba(255,255,255,0.85)",
                           name="IoU label")


def nms_step_rows(scores: Tensor, state: NMSState) -> list[dict]:
    """The boxes suppressed at this step: candidate number, objectness, IoU with the kept box (highest first)."""
    s = as_numpy(scores)
    rows = [{"candidate": int(i) + 1, "P(object)": round(float(s[i]), 4), "IoU with kept": round(float(v), 4)}
            for i, v in zip(as_numpy(state.suppressed), as_numpy(state.suppressed_iou), strict=True)]
    return sorted(rows, key=lambda r: -r["IoU with kept"])

