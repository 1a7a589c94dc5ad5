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

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import box_iou

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


def anchor_layout(anchors: Anchors) -> AnchorLayout:
    """The grid cell, size and ratio of every anchor, from the (level, y, x, k) order alone."""
    parts: dict[str, list[Tensor]] = {n: [] for n in ("level", "iy", "ix", "si", "ri", "size", "ratio")}
    ratios = torch.tensor(anchors.ratios, dtype=torch.float32)
    for lvl, ((h, w), k, sizes) in enumerate(zip(anchors.grid_sizes, anchors.num_per_location, anchors.sizes,
                                                 strict=True)):
        n = h * w * k
        j = torch.arange(n)  # (Hi*Wi*k,)
        loc, kk = j // k, j % k
        si, ri = kk % len(sizes), kk // len(sizes)
        parts["level"].append(torch.full((n,), lvl, dtype=torch.int64))
        parts["iy"].append(loc // w)
        parts["ix"].append(loc % w)
        parts["si"].append(si)
        parts["ri"].append(ri)
        parts["size"].append(torch.tensor(sizes, dtype=torch.float32)[si])
        parts["ratio"].append(ratios[ri])
    c = {name: torch.cat(v) if v else torch.zeros(0) for name, v in parts.items()}
    return AnchorLayout(c["level"], c["iy"], c["ix"], c["si"], c["ri"], c["size"], c["ratio"])


def location_centres(anchors: Anchors, level: int = 0) -> Tensor:
    """The centre of every location of ``level``, row-major: Tensor[Hi * Wi, 2] (x, y), in the boxes' pixels."""
    offset = sum(anchors.num_per_level[:level])
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
    iou = box_iou(gt_boxes.float().cpu(), anchors.float().cpu())  # (G, A)
    if usable is not None:
        iou = torch.where(usable.cpu()[None, :], iou, torch.full_like(iou, -1.0))
    best_iou, best_anchor = iou.max(dim=1)  # (G,), (G,)
    none = best_iou < 0
    return Coverage(torch.where(none, -1, best_anchor), best_iou.clamp(min=0))


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
