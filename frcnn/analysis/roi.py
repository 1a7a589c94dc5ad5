"""The RoIs of a trace as numbers: the minibatch's counts, the RoIs one can pick, the default pick, one RoI pooled
both ways (RoIPool and RoIAlign, with their bin grids from :mod:`frcnn.analysis.roi_grid`).

Names: R sampled RoIs (``trace.roi_targets``), K channels, S the pooled grid side. Boxes are (x1, y1, x2, y2) in
original-image pixels unless said otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from frcnn.analysis.roi_grid import RoIAlignGrid, RoIPoolGrid, roi_align_grid, roi_pool_grid
from frcnn.stages.preprocess import to_network
from frcnn.stages.roi_pooling import pool_rois
from frcnn.trace import Trace


def roi_counts(trace: Trace) -> dict[str, int]:
    """Foreground / background RoIs in the minibatch, and the candidates' labels before the draw."""
    t = trace.roi_targets
    if t is None:
        return {"proposals": int(len(trace.proposals.boxes))}
    cand = t.candidate_labels
    return {"foreground": int((t.labels > 0).sum()), "background": int((t.labels == 0).sum()),
            "candidates": int(len(cand)), "candidates_foreground": int((cand > 0).sum()),
            "candidates_background": int((cand == 0).sum()), "ignored": int((cand < 0).sum()),
            "gt_in_minibatch": int(t.candidate_is_gt[t.sampled].sum())}


def roi_boxes(trace: Trace) -> Tensor:
    """(N, 4) the RoIs one can pick: the sampled minibatch with ground truth, else the proposals."""
    t = trace.roi_targets
    return (t.boxes if t is not None else trace.proposals.boxes).detach().cpu()


def default_roi(trace: Trace) -> int:
    """The best foreground proposal (highest IoU; a GT box itself only when no proposal is foreground), else
    the first RoI (without ground truth: the top-scoring proposal)."""
    t = trace.roi_targets
    if t is None or len(t.labels) == 0:
        return 0
    fg = (t.labels > 0).cpu()
    is_gt = t.candidate_is_gt[t.sampled].cpu()
    ious = t.ious.detach().cpu().float()
    for pool in (fg & ~is_gt, fg):
        if bool(pool.any()):
            return int(torch.where(pool, ious, torch.full_like(ious, -1.0)).argmax())
    return 0


@dataclass(frozen=True)
class PooledRoI:
    """One RoI pooled both ways from the feature level it maps to."""

    box: Tensor  # (4,) original-image pixels
    box_input: Tensor  # (4,) network-input pixels
    level: int  # index into trace.features.maps
    spatial_scale: float  # feature cells per input pixel
    roi_pool: Tensor  # (K, S, S)
    roi_align: Tensor  # (K, S, S)
    pool_grid: RoIPoolGrid
    align_grid: RoIAlignGrid

    @property
    def output_size(self) -> int:
        return int(self.roi_pool.shape[-1])

    def most_active_channel(self) -> int:
        """The channel with the highest mean RoIAlign output in this RoI (a useful first look)."""
        return int(self.roi_align.mean(dim=(1, 2)).argmax())

    def pooled(self, op: str, channel: int | None = None) -> np.ndarray:
        """(S, S) the op's output, averaged over channels or one channel."""
        grid = self.roi_pool if op == "roi_pool" else self.roi_align
        return (grid.mean(0) if channel is None else grid[channel]).detach().float().cpu().numpy().astype(np.float64)


def pool_roi(trace: Trace, box: Tensor, output_size: int, sampling_ratio: int,
             pooled_levels: tuple[int, ...] | None = None) -> PooledRoI:
    """Pool ``box`` (4,) (original pixels) from ``trace.features`` with torchvision's roi_pool and roi_align.

    ``pooled_levels``: the feature levels the RoI head pools from (default: the first as many levels as the
    trace pooled from, which is the model's for the single map and for torchvision's FPNs).
    """
    if pooled_levels is None:
        pooled_levels = tuple(range(len(trace.roi_pooling.spatial_scales)))
    box = box.detach().cpu().float().reshape(4)
    feats = trace.features
    box_input = to_network(box[None].to(feats.maps[0].device), trace.preprocess.scale)  # (1, 4)
    size = trace.preprocess.image_size
    with torch.inference_mode():
        pooled = pool_rois(feats, box_input, size, "roi_pool", output_size, sampling_ratio, pooled_levels)
        aligned = pool_rois(feats, box_input, size, "roi_align", output_size, sampling_ratio, pooled_levels)
    which = int(pooled.level[0])
    level, scale = pooled_levels[which], pooled.spatial_scales[which]
    fshape = feats.shapes[level]
    box_input = box_input[0].cpu()
    return PooledRoI(box, box_input, level, scale, pooled.features[0].cpu(), aligned.features[0].cpu(),
                     roi_pool_grid(box_input, scale, output_size, fshape),
                     roi_align_grid(box_input, scale, output_size, sampling_ratio))
