"""Anchor fit on a dataset: how well a set of anchor sizes and ratios can cover a dataset's ground truth,
and better sizes and ratios suggested by k-means on the boxes' shapes.

- :func:`fit_anchors`: every image is resized as the model would (``input`` settings), the anchors are laid
  on its grid (``anchors`` settings: sizes x ratios at the stride), and each ground-truth box gets its
  best-matching anchor (:func:`frcnn.analysis.anchor_stats.anchor_coverage`). The best-possible recall (the share of
  boxes whose best anchor reaches 0.5 or 0.7 IoU: what the RPN's matcher could label positive at best) and
  the mean best IoU, overall and per size range.
- :func:`kmeans_shapes`: k-means on the boxes' (w, h) with ``1 - IoU`` of centred boxes as the distance
  (YOLOv2's anchor clustering), medoids updated as the median of each cluster.
- :func:`suggest_anchors`: a sizes x ratios grid (what ``AnchorGenerator`` makes) from those clusters: the
  cluster shapes' sizes sqrt(w h) and ratios h / w, each grouped by a 1-D k-means in log space.

Long fits (a thousand scenes, an uploaded dataset) run in the background (:mod:`frcnn.fit_jobs`): the fit and the
k-means take an optional ``progress(done, total)`` callback and a ``should_stop()`` callable, asked before each
image and each chunk of at most ``CHUNK_IOUS`` IoUs (about 0.2 s on 2 cores), so a cancel answers within about a
second by raising :class:`FitCancelled`. Chunking the boxes changes nothing: each box's best IoU is its own.

Sizes are in network-input pixels (after the resize), where anchors live. Shapes: G boxes, (G, 2) (w, h).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass

import torch
from torch import Tensor

from frcnn.analysis.anchor_stats import RECALL_THRESHOLDS, SIZE_RANGES, anchor_coverage, recall_by_size
from frcnn.errors import FrcnnError
from frcnn.settings import Settings
from frcnn.stages.anchors import grid_for_stride, make_anchors
from frcnn.stages.preprocess import network_size

FIT_KEYS = ("input.min_size", "input.max_size", "anchors.sizes", "anchors.ratios", "anchors.stride",
            "rpn.ignore_cross_boundary")  # every setting a fit reads: with the dataset, its cache key
CHUNK_IOUS = 4_000_000  # IoUs between two should_stop checks: about 0.2 s on a 2-core CPU

Progress = Callable[[int, int], None]  # (done, total)
ShouldStop = Callable[[], bool]


class FitCancelled(FrcnnError):
    """The caller's ``should_stop`` said stop (cancelled, replaced, its session gone, out of time)."""


def check_stop(should_stop: ShouldStop | None) -> None:
    """Raise :class:`FitCancelled` when ``should_stop`` says so."""
    if should_stop is not None and should_stop():
        raise FitCancelled("anchor fit cancelled")


@dataclass(frozen=True)
class AnchorFit:
    """The best-matching anchor of every ground-truth box of a dataset."""

    sizes: tuple[float, ...]
    ratios: tuple[float, ...]
    stride: int
    gt_boxes: Tensor  # (G, 4) in network-input px, every image's boxes
    best_iou: Tensor  # (G,)

    @property
    def shapes(self) -> Tensor:
        """(G, 2) widths and heights."""
        return self.gt_boxes[:, 2:] - self.gt_boxes[:, :2]

    def recall(self, iou: float) -> float:
        g = len(self.best_iou)
        return float((self.best_iou >= iou).sum()) / g if g else math.nan

    @property
    def mean_best_iou(self) -> float:
        return float(self.best_iou.mean()) if len(self.best_iou) else math.nan

    def by_size(self) -> list[dict]:
        """Per size range: boxes, recall@0.5, recall@0.7, mean best IoU."""
        rows = recall_by_size(self.gt_boxes, self.best_iou)
        side = self.shapes.clamp(min=0).prod(dim=1).sqrt()
        for row, (_, lo, hi) in zip(rows, SIZE_RANGES, strict=True):
            inside = (side >= lo) & (side < hi)
            row["mean_iou"] = float(self.best_iou[inside].mean()) if inside.any() else math.nan
        return rows

    def summary(self) -> dict:
        return {"sizes": list(self.sizes), "ratios": list(self.ratios), "stride": self.stride,
                "boxes": len(self.best_iou), **{f"recall@{t:g}": self.recall(t) for t in RECALL_THRESHOLDS},
                "mean_iou": self.mean_best_iou, "by_size": self.by_size()}


def fit_anchors(items: Iterable[tuple[tuple[int, int], Tensor]], settings: Settings,
                progress: Progress | None = None, should_stop: ShouldStop | None = None) -> AnchorFit:
    """Best-possible recall of ``settings.anchors`` on a dataset.

    Args:
        items: per image, ((H, W), boxes (G, 4) in its pixels).
        settings: ``input`` (the resize) and ``anchors`` (sizes, ratios, stride); the keys in ``FIT_KEYS``.
        progress: called as ``progress(done, total)`` after each image (``total`` is ``len(items)``, 0 when
            ``items`` has no length).
        should_stop: asked before each image and each chunk of boxes; True raises :class:`FitCancelled`.
    """
    a = settings.anchors
    total = len(items) if isinstance(items, Sized) else 0
    all_boxes, all_best = [], []
    for done, ((h, w), boxes) in enumerate(items, 1):
        check_stop(should_stop)
        if len(boxes):
            size, padded = network_size((h, w), settings.input)  # the resize preprocess does
            grid = grid_for_stride(padded, a.stride)
            anchors = make_anchors([a.sizes], a.ratios, [grid], [a.stride], size)
            net = boxes.float().reshape(-1, 4) * torch.tensor([size[1] / w, size[0] / h] * 2)  # (G, 4)
            usable = anchors.inside if settings.rpn.ignore_cross_boundary else None
            step = max(1, CHUNK_IOUS // max(1, len(anchors.boxes)))  # boxes a chunk
            best = []
            for start in range(0, len(net), step):
                if start:
                    check_stop(should_stop)
                best.append(anchor_coverage(anchors.boxes, net[start:start + step], usable).best_iou)
            all_boxes.append(net)
            all_best.append(torch.cat(best))
        if progress is not None:
            progress(done, total)
    if not all_boxes:
        raise FrcnnError("anchor fit: the dataset has no ground-truth boxes")
    return AnchorFit(tuple(a.sizes), tuple(a.ratios), a.stride, torch.cat(all_boxes), torch.cat(all_best))


def shape_iou(a: Tensor, b: Tensor) -> Tensor:
    """(N, M) IoU of centred boxes given as (w, h): (N, 2) against (M, 2)."""
    inter = torch.minimum(a[:, None, 0], b[None, :, 0]) * torch.minimum(a[:, None, 1], b[None, :, 1])
    union = (a[:, 0] * a[:, 1])[:, None] + (b[:, 0] * b[:, 1])[None, :] - inter
    return inter / union.clamp(min=1e-12)


def kmeans_shapes(wh: Tensor, k: int, seed: int = 0, iters: int = 100,
                  should_stop: ShouldStop | None = None) -> Tensor:
    """k cluster shapes (k, 2) of ``wh`` (G, 2) under the distance 1 - IoU, sorted by area.

    k-means++ seeding (a seeded generator, so the result is repeatable), then Lloyd steps with the median
    of each cluster as its new shape, until the assignment stops changing. ``should_stop`` is asked before
    each step (:class:`FitCancelled`).
    """
    wh = wh.float().reshape(-1, 2)
    wh = wh[(wh > 0).all(dim=1)]
    if len(wh) < k:
        raise FrcnnError(f"anchor fit: {len(wh)} boxes cannot make {k} clusters")
    g = torch.Generator().manual_seed(seed)
    centres = wh[torch.randint(len(wh), (1,), generator=g)]
    while len(centres) < k:
        check_stop(should_stop)
        d = (1 - shape_iou(wh, centres)).min(dim=1).values  # (G,)
        weights = d.square()
        pick = torch.multinomial(weights, 1, generator=g) if float(weights.sum()) > 0 else \
            torch.randint(len(wh), (1,), generator=g)
        centres = torch.cat([centres, wh[pick]])
    assign = None
    for _ in range(iters):
        check_stop(should_stop)
        new = (1 - shape_iou(wh, centres)).argmin(dim=1)  # (G,)
        if assign is not None and torch.equal(new, assign):
            break
        assign = new
        centres = torch.stack([wh[assign == j].median(dim=0).values if (assign == j).any() else centres[j]
                               for j in range(k)])
    return centres[(centres[:, 0] * centres[:, 1]).argsort()]


def _kmeans_1d(values: Tensor, k: int) -> list[float]:
    """k centres of 1-D ``values`` (Lloyd from evenly spaced quantiles), ascending."""
    values = values.float().sort().values
    k = min(k, len(values.unique()))
    centres = torch.quantile(values, torch.linspace(0, 1, k + 2)[1:-1])
    for _ in range(100):
        assign = (values[:, None] - centres[None]).abs().argmin(dim=1)
        new = torch.stack([values[assign == j].mean() if (assign == j).any() else centres[j] for j in range(k)])
        if torch.allclose(new, centres):
            break
        centres = new
    return sorted(float(c) for c in centres)


def suggest_anchors(wh: Tensor, num_sizes: int, num_ratios: int, seed: int = 0,
                    should_stop: ShouldStop | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Sizes (px, sqrt(w h)) and ratios (h / w) for a sizes x ratios grid, from k-means on the shapes."""
    centres = kmeans_shapes(wh, max(num_sizes * num_ratios, num_sizes, num_ratios), seed, should_stop=should_stop)
    sizes = [math.exp(v) for v in _kmeans_1d(centres.prod(dim=1).sqrt().log(), num_sizes)]
    ratios = [math.exp(v) for v in _kmeans_1d((centres[:, 1] / centres[:, 0]).log(), num_ratios)]
    return tuple(round(s, 1) for s in sizes), tuple(round(r, 3) for r in ratios)


def dataset_items(dataset: Sequence, progress: Progress | None = None,
                  should_stop: ShouldStop | None = None) -> Iterable[tuple[tuple[int, int], Tensor]]:
    """((H, W), boxes) of every item of a dataset of (image (3, H, W), boxes, labels); ``progress(done, total)``
    after each item is made, ``should_stop`` asked before each (:class:`FitCancelled`)."""
    for i in range(len(dataset)):
        check_stop(should_stop)
        image, boxes, _ = dataset[i]
        if progress is not None:
            progress(i + 1, len(dataset))
        yield (int(image.shape[-2]), int(image.shape[-1])), boxes
