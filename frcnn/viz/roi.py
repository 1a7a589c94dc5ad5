"""RoI sampling and RoI pooling: the foreground / background minibatch against the ground truth, and for one
RoI its pooled S x S grid with RoIPool and RoIAlign side by side, with both ops' bins drawn on the feature map
so RoIPool's rounding to whole cells is visible. Also the detections table of the Fast R-CNN head. The figures
draw what :mod:`frcnn.analysis.roi` computed (the pick, the pooled RoI :class:`PooledRoI`) and the matching they
are given; nothing here runs a stage.

Names: R sampled RoIs (``trace.roi_targets``), C candidates (proposals then GT boxes), P proposals, S the
pooled grid side, K channels. Boxes are (x1, y1, x2, y2) in original-image pixels unless said otherwise;
the bin figures are in feature coordinates (cell (i, j) centred on (y, x) = (i, j); see
``frcnn.analysis.roi_grid``).
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import torch

from frcnn.analysis.features import feature_map_values
from frcnn.analysis.matching import Matching, match_detections
from frcnn.analysis.naming import class_name
from frcnn.analysis.roi import PooledRoI, roi_boxes
from frcnn.trace import Trace
from frcnn.viz.common import (
    HIGHLIGHT,
    IGNORED,
    KEPT,
    NEGATIVE,
    POSITIVE,
    SUPPRESSED,
    add_boxes,
    add_ground_truth,
    add_points,
    as_numpy,
    box_hover,
    compact,
    fit_legend,
    image_figure,
    with_system_font,
)

ALIGN_COLOR = KEPT  # blue: RoIAlign's exact bins (RoIPool's are orange, HIGHLIGHT)
EXACT_COLOR = SUPPRESSED  # pink: the RoI itself, unrounded
SAMPLE_COLOR = NEGATIVE  # vermilion: RoIAlign's bilinear sample points
POOL_OPS = {"roi_pool": "RoIPool", "roi_align": "RoIAlign"}
HEATMAP_SCALE = "Viridis"  # pooled grids
FEATURE_SCALE = "gray"  # the feature map under the bins: grey, so the coloured bins stand out
USED = " · used by the detector"


def _class_name(trace: Trace, label: int) -> str:
    return class_name(trace.class_names, label)


# ------------------------------------------------------------------------------------------ the RoIs
def roi_descriptions(trace: Trace) -> list[str]:
    """One line per pickable RoI (same order as :func:`roi_boxes`): kind, class, IoU or objectness, box."""
    t = trace.roi_targets
    boxes = roi_boxes(trace)
    if t is None:
        return [f"proposal #{i} · objectness {float(s):.3f} · {h}"
                for i, (s, h) in enumerate(zip(trace.proposals.scores, box_hover(boxes), strict=True))]
    is_gt = t.candidate_is_gt[t.sampled].cpu()
    out = []
    for i, (label, iou, gt, h) in enumerate(zip(t.labels.tolist(), t.ious.tolist(), is_gt.tolist(),
                                                box_hover(boxes), strict=True)):
        kind = "fg" if label > 0 else "bg"
        source = " (a GT box)" if gt else ""
        out.append(f"RoI #{i} {kind}{source} · {_class_name(trace, label)} · IoU {iou:.2f} · {h}")
    return out


def sampling_figure(image: np.ndarray, trace: Trace, selected: int | None = None, height: int = 620) -> go.Figure:
    """The RoI minibatch on the image: foreground green, background vermilion, ignored candidates faint, GT
    yellow, the picked RoI orange. Hover points carry the RoI's index in ``customdata`` (for clicks)."""
    fig = image_figure(image, height=height)
    t = trace.roi_targets
    boxes = roi_boxes(trace)
    text = roi_descriptions(trace)
    index = np.arange(len(boxes))[:, None]  # (N, 1); sent as JSON lists (.tolist()) so a click returns [i]
    if t is None:
        add_boxes(fig, boxes, KEPT, "proposals", width=1.2, opacity=0.8, hover=text, customdata=index.tolist())
    else:
        cand = t.candidate_labels.cpu()
        cand_boxes = t.candidate_boxes.detach().cpu()
        sampled = torch.zeros(len(cand), dtype=torch.bool)
        sampled[t.sampled.cpu()] = True
        ignored = cand < 0
        # no hover points for these two faint layers: hundreds of dots would bury the minibatch's
        add_boxes(fig, cand_boxes[ignored], IGNORED, "ignored (IoU below bg_iou_thresh_lo or between thresholds)",
                  width=0.8, opacity=0.35)
        add_boxes(fig, cand_boxes[~ignored & ~sampled], IGNORED, "labelled, not drawn into the minibatch",
                  width=0.8, opacity=0.5, dash="dot", visible="legendonly")
        fg = (t.labels > 0).cpu().numpy()
        add_boxes(fig, boxes[~fg], NEGATIVE, "background RoIs", width=1, opacity=0.45,
                  hover=[h for h, k in zip(text, fg, strict=True) if not k], customdata=index[~fg].tolist())
        add_ground_truth(fig, trace.gt_boxes.cpu(),
                         hover=[f"GT #{i} {_class_name(trace, int(lab))}" for i, lab in enumerate(trace.gt_labels)])
        add_boxes(fig, boxes[fg], POSITIVE, "foreground RoIs", width=2.5,
                  hover=[h for h, k in zip(text, fg, strict=True) if k], customdata=index[fg].tolist())
    if selected is not None and 0 <= selected < len(boxes):
        add_boxes(fig, boxes[selected:selected + 1], HIGHLIGHT, "picked RoI", width=4, hover=[text[selected]],
                  customdata=index[selected:selected + 1].tolist())
    return fig


def clicked_roi(selection: dict | None) -> int | None:
    """The RoI index of the last clicked hover point of :func:`sampling_figure`, or None."""
    for point in reversed((selection or {}).get("points", [])):
        data = point.get("customdata")
        if isinstance(data, dict):  # a typed-array row comes back as {"0": i}
            data = list(data.values())
        if isinstance(data, (list, tuple)):
            data = data[0] if data else None
        if data is not None:
            return int(data)
    return None


# ------------------------------------------------------------------------------------------ pooling
def used_text(used: bool, size: int, head_size: int | None) -> str:
    """What a panel of the op ``roi.pool`` names says: used by the detector, or, when the panels' size S is not
    the box head's own (the head takes only the size it was trained on, so detections pool at that size), the
    op only and the size detections really pool at."""
    if not used:
        return ""
    if head_size is None or head_size == size:
        return USED
    return f" · the detector's op; its head pools {head_size}×{head_size}"


def pool_note(trained_op: str, used_op: str) -> str | None:
    """A sentence for the pages when ``roi.pool`` is not the op the box head was trained with (the model's
    defaults), else None. (A pooled size other than the head's is the trace's own note.)"""
    if used_op == trained_op:
        return None
    return (f"The box head was trained on {POOL_OPS[trained_op]} features, but the settings pool with "
            f"{POOL_OPS[used_op]} (roi.pool, e.g. after \"Paper's defaults\"): the head now classifies features "
            f"it never saw in training. \"Model's defaults\" brings back {POOL_OPS[trained_op]}.")


def pooled_range(pooled: PooledRoI, channel: int | None = None) -> tuple[float, float]:
    """(zmin, zmax) over both ops' grids: one colour scale for the RoIPool and RoIAlign panels."""
    values = np.concatenate([pooled.pooled(op, channel).ravel() for op in POOL_OPS])
    lo, hi = float(values.min()), float(values.max())
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def cell_format(zmin: float, zmax: float) -> str:
    """A d3 format with two significant digits at the largest magnitude (0.83, 4.2, 17), so a cell's number is
    at most about four characters; finer values are on hover."""
    top = max(abs(zmin), abs(zmax))
    decimals = 0 if top == 0 else max(0, 1 - math.floor(math.log10(top)))
    return f".{min(decimals, 3)}f"


MAX_TEXT_SIZE = 8  # pooled grids up to S x S = 8 x 8 write their values in the cells


def pooled_figure(pooled: PooledRoI, op: str, channel: int | None = None, used: bool = False,
                  height: int = 340, head_size: int | None = None,
                  zrange: tuple[float, float] | None = None) -> go.Figure:
    """The op's S x S pooled grid as a heatmap on the colour scale both ops share (``zrange``, default
    :func:`pooled_range`): the same colour is the same value in the RoIPool and RoIAlign panels, so RoIPool's
    maxima running above RoIAlign's averages shows. The values are written in the cells (two significant digits,
    :func:`cell_format`) when S <= ``MAX_TEXT_SIZE``, with four on hover.
    ``used``: the op the detector pools with (``roi.pool``), said in the title with the size detections pool at
    (``head_size``, the box head's own, when it differs from S)."""
    values = pooled.pooled(op, channel)
    s = pooled.output_size
    zmin, zmax = zrange or pooled_range(pooled, channel)
    what = "mean over channels" if channel is None else f"channel {channel}"
    fig = go.Figure(go.Heatmap(z=compact(values), colorscale=HEATMAP_SCALE, xgap=1, ygap=1, zmin=zmin, zmax=zmax,
                               texttemplate=f"%{{z:{cell_format(zmin, zmax)}}}" if s <= MAX_TEXT_SIZE else None,
                               textfont=dict(size=11), name=POOL_OPS[op],
                               colorbar=dict(thickness=12, len=0.9),
                               hovertemplate="bin (row %{y}, col %{x}): %{z:.4g}<extra>" + what + "</extra>"))
    fig.update_xaxes(title="bin column", dtick=1 if s <= 16 else None, constrain="domain")
    fig.update_yaxes(title="bin row", autorange="reversed", scaleanchor="x", dtick=1 if s <= 16 else None,
                     constrain="domain")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10),
                      title=f"{POOL_OPS[op]} output {s}×{s} ({what}){used_text(used, s, head_size)}")
    return with_system_font(fig)


def _window(pooled: PooledRoI, shape: tuple[int, int], margin: int = 2) -> tuple[int, int, int, int]:
    """Cells (x0, y0, x1, y1), inclusive, around the RoI's bins of both ops, clipped to the map."""
    g, a = pooled.pool_grid, pooled.align_grid
    x0 = min(int(g.x_start.min()), int(np.floor(float(a.x_edges[0])))) - margin
    y0 = min(int(g.y_start.min()), int(np.floor(float(a.y_edges[0])))) - margin
    x1 = max(int(g.x_end.max()) - 1, int(np.ceil(float(a.x_edges[-1])))) + margin
    y1 = max(int(g.y_end.max()) - 1, int(np.ceil(float(a.y_edges[-1])))) + margin
    h, w = shape
    return max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)


def _bin_centre_markers(fig: go.Figure) -> None:
    """The last trace is add_boxes' hover points at the bins' centres: open squares, so they don't read as
    RoIAlign's sample points."""
    fig.data[-1].update(marker=dict(symbol="square-open", size=6, opacity=0.6))


def feature_bins_figure(trace: Trace, pooled: PooledRoI, op: str, channel: int | None = None, used: bool = False,
                        height: int = 460, head_size: int | None = None) -> go.Figure:
    """The feature map around the RoI (cell (i, j) centred on (x, y) = (j, i)) with the RoI's exact outline
    (white, dashed) and the op's bins: RoIPool's whole-cell bins after rounding (orange), or RoIAlign's exact
    bins (blue) and its bilinear sample points (white dots). Hover on a bin centre gives its pooled value.
    ``used`` and ``head_size`` as in :func:`pooled_figure`."""
    values = feature_map_values(trace, pooled.level, channel)
    x0, y0, x1, y1 = _window(pooled, values.shape)
    crop = values[y0:y1 + 1, x0:x1 + 1]
    what = "mean over channels" if channel is None else f"channel {channel}"
    gap = 1 if crop.shape[1] <= 60 else 0
    fig = go.Figure(go.Heatmap(z=compact(crop), x0=x0, dx=1, y0=y0, dy=1, colorscale=FEATURE_SCALE, xgap=gap, ygap=gap,
                               name="feature map", colorbar=dict(thickness=12, len=0.9),
                               hovertemplate="cell (row %{y}, col %{x}): %{z:.4f}<extra>" + what + "</extra>"))
    s = pooled.output_size
    out = pooled.pooled(op, channel).ravel()
    rc = [(r, c) for r in range(s) for c in range(s)]
    if op == "roi_pool":
        g = pooled.pool_grid
        bins = g.bin_boxes()
        empty = g.empty.reshape(-1).numpy()
        hover = [f"bin ({r}, {c}) · cells x {int(g.x_start[c])}..{int(g.x_end[c]) - 1}, "
                 f"y {int(g.y_start[r])}..{int(g.y_end[r]) - 1} · max = {v:.4f}" if not e
                 else f"bin ({r}, {c}) · empty: pools to 0" for (r, c), v, e in zip(rc, out, empty, strict=True)]
        add_boxes(fig, bins, HIGHLIGHT, "RoIPool bins (whole cells after rounding)", width=2.5, hover=hover)
        _bin_centre_markers(fig)
    else:
        a = pooled.align_grid
        ny, nx = a.samples_per_bin
        hover = [f"bin ({r}, {c}) · x [{float(a.x_edges[c]):.2f}, {float(a.x_edges[c + 1]):.2f}), "
                 f"y [{float(a.y_edges[r]):.2f}, {float(a.y_edges[r + 1]):.2f}) · mean of {ny}×{nx} samples = {v:.4f}"
                 for (r, c), v in zip(rc, out, strict=True)]
        add_boxes(fig, a.bin_boxes(), ALIGN_COLOR, "RoIAlign bins (exact)", width=2.5, hover=hover)
        _bin_centre_markers(fig)
        sx, sy = np.meshgrid(as_numpy(a.x_samples), as_numpy(a.y_samples))
        add_points(fig, sx.ravel(), sy.ravel(), SAMPLE_COLOR, f"bilinear samples ({ny}×{nx} a bin)", size=4,
                   opacity=0.9)
    exact = pooled.box_input * pooled.spatial_scale
    add_boxes(fig, exact[None], EXACT_COLOR, "RoI (exact, × spatial scale)", width=2, dash="dash",
              hover=[f"RoI in feature cells: ({float(exact[0]):.2f}, {float(exact[1]):.2f})-"
                     f"({float(exact[2]):.2f}, {float(exact[3]):.2f})"], hover_at="corner")
    fig.update_xaxes(title="feature column", range=[x0 - 0.5, x1 + 0.5], showgrid=False, zeroline=False,
                     constrain="domain")
    fig.update_yaxes(title="feature row", range=[y1 + 0.5, y0 - 0.5], showgrid=False, zeroline=False,
                     scaleanchor="x", constrain="domain")
    stride = 1 / pooled.spatial_scale
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), dragmode="pan",
                      uirevision=f"{pooled.box.tolist()}",  # a new RoI resets the view, a new setting keeps it
                      title=f"{POOL_OPS[op]} on feature level {trace.features.names[pooled.level]} "
                            f"(1 cell = {stride:g} input px){used_text(used, s, head_size)}",
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
    return fit_legend(fig)


# ------------------------------------------------------------------------------------------ detections
def detections_rows(trace: Trace, iou_thresh: float = 0.5, matching: Matching | None = None) -> list[dict]:
    """One row per detection, best first: class, score, box, and with ground truth whether it is a true
    positive at ``iou_thresh``, and the GT box it is about: the one it matched (a TP), else the one of any class
    it overlaps most, with that IoU (so ground truth in classes the model does not know still shows the
    overlap: such a detection is a false positive with a high IoU and the GT's class beside it).
    ``matching``: :func:`match_detections` of all the trace's detections at ``iou_thresh`` (computed when not
    given)."""
    d = trace.detections
    boxes = d.boxes.detach().cpu()
    rows = [{"class": _class_name(trace, int(lab)), "score": round(float(s), 4),
             "x1": round(float(b[0]), 1), "y1": round(float(b[1]), 1), "x2": round(float(b[2]), 1),
             "y2": round(float(b[3]), 1)} for lab, s, b in zip(d.labels.tolist(), d.scores.cpu(), boxes, strict=True)]
    if len(trace.gt_boxes):
        m = matching or match_detections(d.boxes, d.scores, d.labels, trace.gt_boxes, trace.gt_labels, iou_thresh)
        gt_labels = trace.gt_labels.tolist()
        for row, tp, iou, gt, o_gt, o_iou in zip(rows, m.true_positive.tolist(), m.iou.tolist(),
                                                 m.matched_gt.tolist(), m.overlap_gt.tolist(),
                                                 m.overlap_iou.tolist(), strict=True):
            g, value = (gt, iou) if tp else (o_gt, o_iou)
            row.update({"TP": bool(tp), "IoU": round(float(value), 3), "GT #": g if g >= 0 else None,
                        "GT class": _class_name(trace, gt_labels[g]) if g >= 0 else None})
    return rows
