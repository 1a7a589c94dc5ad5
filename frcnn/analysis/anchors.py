"""The anchor pages' numbers: the anchors a setting makes (counts, which anchors a size / ratio / lattice choice
selects, the location nearest a point), each ground-truth box's best anchor (coverage), and the RPN's anchor
targets (counts, the minibatch, per-cell counts, why each positive is positive). The figures in
:mod:`frcnn.viz.anchors` draw these.

A anchors in all, G ground-truth boxes, (Hi, Wi, k) a level's grid and anchors per location. Boxes (x1, y1, x2, y2)
in the original image's pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from frcnn.analysis.anchor_stats import Coverage, anchor_coverage, anchor_layout, cell_layout, nearest_location
from frcnn.analysis.naming import class_name
from frcnn.stages.anchor_targets import POSITIVE_AS_BEST, POSITIVE_BY_IOU, positive_rule
from frcnn.stages.anchors import Anchors
from frcnn.trace import Trace


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


# ---------------------------------------------------------------------------------------------- anchors
def anchor_counts(trace: Trace) -> dict[str, int | str]:
    """Total, inside the image, anchors per location k (per level), and the grid of each level."""
    a = trace.anchors
    return {"total": int(len(a.boxes)), "inside": int(a.inside.sum()),
            "per_location": " + ".join(str(k) for k in a.num_per_location),
            "grid": " + ".join(f"{w}×{h}" for h, w in a.grid_sizes),
            "stride": " + ".join(str(s) for s in a.strides)}


def coverage(trace: Trace, inside_only: bool) -> Coverage:
    """Each ground-truth box's best anchor among the settings' anchors (only those inside the image if asked).

    The anchor targets stage has already found them when it masked the same anchors (``inside_only`` equal to
    ``rpn.ignore_cross_boundary``); they are taken from there unless some box overlaps no usable anchor (the
    stage then names an arbitrary anchor)."""
    t = trace.anchor_targets
    same_mask = inside_only == trace.settings.rpn.ignore_cross_boundary
    if t is not None and same_mask and bool((t.best_iou_per_gt > 0).all()):
        ties = t.ties_per_gt.cpu() if t.ties_per_gt is not None else None
        return Coverage(t.best_anchor_per_gt.cpu(), t.best_iou_per_gt.cpu(), ties)
    return anchor_coverage(trace.anchors.boxes, trace.gt_boxes, trace.anchors.inside if inside_only else None)


def coverage_rows(trace: Trace, cov: Coverage) -> list[dict]:
    """One row per ground-truth box: its class and size, and its best anchor's IoU, size, ratio and cell."""
    lay = anchor_layout(trace.anchors, cov.best_anchor.clamp(min=0))  # (G,): each GT's best anchor
    ties = _np(cov.ties) if cov.ties is not None else None  # known when the anchor targets found the best
    rows = []
    for g, (box, lab) in enumerate(zip(_np(trace.gt_boxes), trace.gt_labels.tolist(), strict=True)):
        i = int(cov.best_anchor[g])
        ok = i >= 0
        rows.append({"GT": g, "class": class_name(trace.class_names, lab),
                     "GT w×h": f"{box[2] - box[0]:.0f}×{box[3] - box[1]:.0f}",
                     "best IoU": round(float(cov.best_iou[g]), 3),
                     "anchors tied at it": int(ties[g]) if ties is not None else None,
                     "anchor": i if ok else None,
                     "anchor size": float(lay.size[g]) if ok else None,
                     "anchor ratio": float(lay.ratio[g]) if ok else None,
                     "cell (y, x)": f"({int(lay.iy[g])}, {int(lay.ix[g])})" if ok else ""})
    return rows


def pick_location(trace: Trace, point: tuple[float, float] | None, level: int = 0) -> tuple[int, int]:
    """The grid cell (iy, ix) nearest ``point`` (x, y) in image pixels; the image's centre when None."""
    if point is None:
        h, w = trace.image_size
        point = (w / 2, h / 2)
    return nearest_location(trace.anchors, float(point[0]), float(point[1]), level)


def anchors_mask(trace: Trace, level: int, sizes: Sequence[float] | None = None,
                 ratios: Sequence[float] | None = None, inside_only: bool = False, every: int = 1,
                 around: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Anchors of ``level`` with a size in ``sizes`` and a ratio in ``ratios`` (None: all), inside the image if
    asked, at every ``every``-th location in both directions counted from the cell ``around``: Tensor[A] bool.

    Each condition is on one axis of the level's (Hi, Wi, k) grid (rows, columns, the k anchors of a cell),
    so the mask is their broadcast product, and the image test on top."""
    a = trace.anchors
    h, w = a.grid_sizes[level]
    offset = a.level_start(level)
    kind = cell_wanted(a, level, sizes, ratios)  # (k,)
    rows = (torch.arange(h) - around[0]) % every == 0  # (Hi,)
    cols = (torch.arange(w) - around[1]) % every == 0  # (Wi,)
    grid = (rows[:, None, None] & cols[None, :, None] & kind[None, None, :]).reshape(-1)  # (Hi*Wi*k,)
    if inside_only:
        grid &= a.inside[offset:offset + len(grid)].cpu()
    keep = torch.zeros(len(a.boxes), dtype=torch.bool)
    keep[offset:offset + len(grid)] = grid
    return keep


def cell_wanted(anchors: Anchors, level: int, sizes: Sequence[float] | None,
                 ratios: Sequence[float] | None) -> torch.Tensor:
    """(k,) bool: the anchors of a location whose size is in ``sizes`` and ratio in ``ratios`` (None: all)."""
    cell_size, cell_ratio = cell_layout(anchors, level)
    wanted = torch.ones(len(cell_size), dtype=torch.bool)
    if sizes is not None:
        wanted &= torch.isin(cell_size, torch.tensor(list(sizes), dtype=cell_size.dtype))
    if ratios is not None:
        wanted &= torch.isin(cell_ratio, torch.tensor(list(ratios), dtype=cell_ratio.dtype))
    return wanted


# ---------------------------------------------------------------------------------------------- anchor targets
def target_counts(trace: Trace) -> dict[str, int]:
    """positive, negative, ignored, sampled_positive, sampled_negative (the trace's own counts)."""
    c = trace.counts()
    return {k: c[k] for k in ("positive", "negative", "ignored", "sampled_positive", "sampled_negative")}


def anchor_customdata(trace: Trace, index: np.ndarray | None = None) -> np.ndarray:
    """Per anchor (A, 15), or for the anchors ``index`` (N,) only (N, 15): index, IoU, matched GT, its box (4), tx,
    ty, tw, th, the anchor's box (4)."""
    t = trace.anchor_targets
    n = len(trace.anchors.boxes)
    index = np.arange(n) if index is None else np.asarray(index, dtype=np.int64).reshape(-1)
    a = _np(trace.anchors.boxes)[index]
    gt = _np(trace.gt_boxes).reshape(-1, 4)
    m = _np(t.matched_gt)[index]
    gbox = gt[np.clip(m, 0, None)] if len(gt) else np.full((len(index), 4), np.nan)
    return np.column_stack([index, _np(t.max_iou)[index], m, gbox,
                            _np(t.regression_targets)[index], a]).astype(np.float64)


def sampled_mask(trace: Trace) -> np.ndarray:
    """(A,) bool: the anchor is in the RPN minibatch."""
    t = trace.anchor_targets
    s = np.zeros(len(t.labels), dtype=bool)
    s[_np(t.sampled_positive)] = True
    s[_np(t.sampled_negative)] = True
    return s


def per_cell(trace: Trace, mask: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """For each level holding anchors of ``mask``: (level, counts (Hi, Wi), best IoU (Hi, Wi), -1 where none)."""
    a = trace.anchors
    index = np.flatnonzero(mask)  # (M,)
    lay = anchor_layout(a, torch.as_tensor(index))
    iou = _np(trace.anchor_targets.max_iou)[index]
    level, iy, ix = _np(lay.level), _np(lay.iy), _np(lay.ix)
    for lvl in range(len(a.grid_sizes)):
        sel = level == lvl
        if not sel.any():
            continue
        h, w = a.grid_sizes[lvl]
        loc = (iy * w + ix)[sel]
        counts = np.bincount(loc, minlength=h * w)
        best = np.full(h * w, -1.0)
        np.maximum.at(best, loc, iou[sel])
        yield lvl, counts.reshape(h, w), best.reshape(h, w)


def positive_rows(trace: Trace) -> list[dict]:
    """One row per positive anchor: index, minibatch, IoU, matched GT, tx, ty, tw, th, size, ratio."""
    t = trace.anchor_targets
    positives = np.flatnonzero(_np(t.labels) == 1)
    lay = anchor_layout(trace.anchors, torch.as_tensor(positives))
    sampled = sampled_mask(trace)
    data = anchor_customdata(trace, positives)
    why = positive_reasons(trace, positives)
    rows = []
    for n, i in enumerate(positives):
        d = data[n]
        rows.append({"anchor": int(i), "in minibatch": bool(sampled[i]), "IoU": round(float(d[1]), 3),
                     "GT": int(d[2]), "positive by": why[n], "size": float(lay.size[n]), "ratio": float(lay.ratio[n]),
                     **{name: round(float(v), 4) for name, v in zip(("tx", "ty", "tw", "th"), d[7:11], strict=True)}})
    return rows


def positive_reasons(trace: Trace, index: np.ndarray) -> list[str]:
    """For each anchor of ``index`` (positives), the rule that made it positive, in words: its IoU reached the
    positive threshold, or it is (one of the tied) best anchor(s) of GT box k (the low-quality rule)."""
    t, s = trace.anchor_targets, trace.settings.rpn
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    rule = _np(positive_rule(t, s.fg_iou_thresh))[index]
    iou = _np(t.max_iou)[index]
    best_of = _np(t.best_of_gt)[index] if t.best_of_gt is not None else np.full(len(index), -1)
    ties = _np(t.ties_per_gt) if t.ties_per_gt is not None else np.zeros(0, dtype=np.int64)
    best_iou = _np(t.best_iou_per_gt)
    out = []
    for r, v, g in zip(rule, iou, best_of, strict=True):
        tie = (f"one of {int(ties[g])} anchors tied at IoU {float(best_iou[g]):.3f}" if int(ties[g]) > 1
               else f"IoU {float(best_iou[g]):.3f}") if g >= 0 else ""
        if r == POSITIVE_BY_IOU:
            also = f" (also a best anchor of GT #{int(g)}: {tie})" if g >= 0 else ""
            out.append(f"positive by IoU {float(v):.3f} ≥ θfg {s.fg_iou_thresh:g}{also}")
        elif r == POSITIVE_AS_BEST:
            out.append(f"positive as the best anchor of GT #{int(g)} ({tie}; below θfg {s.fg_iou_thresh:g})")
        else:
            out.append("not positive")
    return out


def best_anchor_ties(trace: Trace) -> list[dict]:
    """One row per GT box: its best IoU with any (usable) anchor, how many anchors tie at it, and how many of them
    are positive only by the low-quality rule (their IoU is below the positive threshold)."""
    t, s = trace.anchor_targets, trace.settings.rpn
    if t is None or t.ties_per_gt is None:
        return []
    rule = _np(positive_rule(t, s.fg_iou_thresh))
    best_of = _np(t.best_of_gt)
    rows = []
    for g, (iou, ties, label) in enumerate(zip(_np(t.best_iou_per_gt), _np(t.ties_per_gt),
                                               trace.gt_labels.tolist(), strict=True)):
        rows.append({"GT": g, "class": class_name(trace.class_names, label),
                     "best IoU": round(float(iou), 3), "anchors tied at it": int(ties),
                     "positive only as best": int(((rule == POSITIVE_AS_BEST) & (best_of == g)).sum())})
    return rows
