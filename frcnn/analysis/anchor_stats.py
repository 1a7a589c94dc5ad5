"""Anchor statistics the anchor pages need and the trace does not hold: where each anchor sits in the grid
and which size and ratio made it, the grid location nearest a point, and how well the anchors can cover the
ground truth at best (the best-matching anchor of each ground-truth box and the best-possible recall).

Shapes: A anchors ordered (level, y, x, k) as in :mod:`frcnn.stages.anchors`; G ground-truth boxes.
Within a location the k = len(ratios) * len(sizes) anchors are ordered ratio-major, size-minor
(torchvision's ``generate_anchors``: ``ws = (w_ratios[:, None] * scales[None, :]).view(-1)``), so anchor
k of a location has ratio index k // len(sizes) and size index k % len(sizes).
Boxes are (x1, y1, x2, y2) floats; IoU does not depend on the common scale of both inputs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from frcnn.stages._iou import best_column_per_row
from frcnn.stages.anchors import Anchors

# COCO's object size ranges on sqrt(area) of the ground-truth box, px: small < 32, medium < 96, large
SIZE_RANGES: tuple[tuple[str, float, float], ...] = (("small (< 32 px)", 0.0, 32.0),
                                                     ("medium (32-96 px)", 32.0, 96.0),
                                                     ("large (>= 96 px)", 96.0, math.inf))
RECALL_THRESHOLDS = (0.5, 0.7)


@dataclass(frozen=True)
class AnchorLayout:
    """Per anchor (A,): its level, grid cell, and the size and ratio that made it."""

    level: Tensor  # (A,) int64
    iy: Tensor  # (A,) int64 grid row
    ix: Tensor  # (A,) int64 grid column
    size_index: Tensor  # (A,) int64 into anchors.sizes[level]
    ratio_index: Tensor  # (A,) int64 into anchors.ratios
    size: Tensor  # (A,) float: sqrt(w * h) in network-input px
    ratio: Tensor  # (A,) float: h / w


def anchor_layout(anchors: Anchors, index: Tensor | None = None) -> AnchorLayout:
    """The grid cell, size and ratio of every anchor, or of the anchors ``index`` (N,) only (cheap for a few
    of many), from the (level, y, x, k) order alone."""
    counts = anchors.num_per_level
    j = torch.arange(sum(counts)) if index is None else torch.as_tensor(index, dtype=torch.int64).cpu().reshape(-1)
    starts = list(itertools.accumulate(counts, initial=0))  # (L + 1,) first anchor of each level
    level = torch.bucketize(j, torch.tensor(starts[1:]), right=True) if len(counts) > 1 else torch.zeros_like(j)
    c = {name: torch.zeros(len(j), dtype=torch.int64) for name in ("iy", "ix", "si", "ri")}
    size, ratio = torch.zeros(len(j)), torch.zeros(len(j))
    for lvl, ((_, w), k) in enumerate(zip(anchors.grid_sizes, anchors.num_per_location, strict=True)):
        at = (level == lvl).nonzero().squeeze(1) if len(counts) > 1 else slice(None)
        local = j[at] - starts[lvl]
        loc, kk = local // k, local % k
        si, ri = cell_indices(anchors, lvl)
        cell_size, cell_ratio = cell_layout(anchors, lvl)
        c["iy"][at], c["ix"][at] = loc // w, loc % w
        c["si"][at], c["ri"][at] = si[kk], ri[kk]
        size[at], ratio[at] = cell_size[kk], cell_ratio[kk]
    return AnchorLayout(level, c["iy"], c["ix"], c["si"], c["ri"], size, ratio)


def cell_indices(anchors: Anchors, level: int = 0) -> tuple[Tensor, Tensor]:
    """Which size and which ratio each of the k anchors of a location of ``level`` has, as indices into
    ``anchors.sizes[level]`` and ``anchors.ratios``: Tensor[k] each. AnchorGenerator lays them ratio-major (the
    sizes of the first ratio, then of the next); this is the one place that says so."""
    kk = torch.arange(anchors.num_per_location[level])
    n = len(anchors.sizes[level])
    return kk % n, kk // n


def cell_layout(anchors: Anchors, level: int = 0) -> tuple[Tensor, Tensor]:
    """The size and the ratio of each of the k anchors of a location of ``level``: Tensor[k] each."""
    si, ri = cell_indices(anchors, level)
    return (torch.tensor(anchors.sizes[level], dtype=torch.float32)[si],
            torch.tensor(anchors.ratios, dtype=torch.float32)[ri])


def location_centres(anchors: Anchors, level: int = 0) -> Tensor:
    """The centre of every location of ``level``, row-major: Tensor[Hi * Wi, 2] (x, y), in the boxes' pixels."""
    offset = anchors.level_start(level)
    k = anchors.num_per_location[level]
    first = anchors.boxes[offset:offset + anchors.num_per_level[level]:k]  # (Hi*Wi, 4): anchor 0 of each
    return torch.stack([(first[:, 0] + first[:, 2]) / 2, (first[:, 1] + first[:, 3]) / 2], dim=1)


def nearest_location(anchors: Anchors, x: float, y: float, level: int = 0) -> tuple[int, int]:
    """The grid cell (iy, ix) of ``level`` whose anchor centre is nearest the point (x, y)."""
    centres = location_centres(anchors, level)  # (Hi*Wi, 2)
    d = (centres[:, 0] - x) ** 2 + (centres[:, 1] - y) ** 2
    loc = int(torch.argmin(d))
    w = anchors.grid_sizes[level][1]
    return loc // w, loc % w


@dataclass(frozen=True)
class Coverage:
    """How well a set of anchors can match the ground truth, at best."""

    best_anchor: Tensor  # (G,) int64 anchor index with the highest IoU, -1 if no anchor was usable
    best_iou: Tensor  # (G,) float, 0 if no anchor was usable
    ties: Tensor | None = None  # (G,) int64 anchors tied at best_iou, when known (the anchor targets count them)

    def recall(self, iou_thresh: float) -> float:
        """The share of ground-truth boxes whose best anchor reaches ``iou_thresh`` (nan without boxes)."""
        g = len(self.best_iou)
        return float((self.best_iou >= iou_thresh).sum()) / g if g else math.nan


def anchor_coverage(anchors: Tensor, gt_boxes: Tensor, usable: Tensor | None = None) -> Coverage:
    """Each ground-truth box's best-matching anchor.

    Args:
        anchors: Tensor[A, 4]; gt_boxes: Tensor[G, 4]; usable: Tensor[A] bool, the anchors that may match
            (e.g. only those inside the image), or None for all.
    """
    g = len(gt_boxes)
    if g == 0 or len(anchors) == 0:
        return Coverage(torch.full((g,), -1, dtype=torch.int64), torch.zeros(g))
    index = torch.arange(len(anchors)) if usable is None else usable.cpu().nonzero().squeeze(1)  # (U,)
    if len(index) == 0:
        return Coverage(torch.full((g,), -1, dtype=torch.int64), torch.zeros(g))
    best_iou, best = best_column_per_row(gt_boxes.float().cpu(), anchors.cpu()[index].float())  # (G,), (G,)
    return Coverage(index[best], best_iou)


def recall_by_size(gt_boxes: Tensor, best_iou: Tensor, thresholds: tuple[float, ...] = RECALL_THRESHOLDS,
                   ranges: tuple[tuple[str, float, float], ...] = SIZE_RANGES) -> list[dict]:
    """Best-possible recall per ground-truth size range (sqrt of the box's area, in the boxes' pixels).

    Returns one row per range: ``{"size": name, "boxes": n, "recall@0.5": r, ...}`` (recall nan if n = 0).
    """
    b = gt_boxes.float().cpu().reshape(-1, 4)
    side = ((b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)).sqrt()  # (G,)
    rows = []
    for name, lo, hi in ranges:
        inside = (side >= lo) & (side < hi)
        n = int(inside.sum())
        row: dict = {"size": name, "boxes": n}
        for t in thresholds:
            row[f"recall@{t:g}"] = float((best_iou.cpu()[inside] >= t).sum()) / n if n else math.nan
        rows.append(row)
    return rows
