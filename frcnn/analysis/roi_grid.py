"""The bin grids of RoI pooling on the feature map: which cells RoIPool max-pools for each bin (after its two
roundings) and where RoIAlign's exact bins and bilinear sample points fall. The maths of torchvision's
``roi_pool`` / ``roi_align(aligned=False)`` kernels, written out so the quantisation can be drawn.

Coordinates are **feature coordinates**: feature cell (row i, column j) holds the value at (y, x) = (i, j);
an RoI (x1, y1, x2, y2) in network-input pixels maps to (x1 s, y1 s, x2 s, y2 s) with s = ``spatial_scale``
(1/16 for a stride-16 map). S is ``output_size`` (the pooled grid is S x S).

RoIPool (Fast R-CNN): the RoI's corners are rounded to whole cells (half away from zero, C's ``round``);
the RoI spans ``end - start + 1`` cells (at least 1); bin p covers cells
``[floor(p * size / S), ceil((p + 1) * size / S))`` offset by the start and clipped to the map, so bins
are whole cells, unequal, and may overlap or be empty (an empty bin pools to 0).

RoIAlign (Mask R-CNN): no rounding; bin p spans ``[x1 s + p w / S, x1 s + (p + 1) w / S)`` with
w = max(x2 s - x1 s, 1); each bin averages n x n bilinear samples at ``(k + 0.5) / n`` of the bin,
n = ``sampling_ratio`` or, when it is <= 0, ``ceil(w / S)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class RoIPoolGrid:
    """RoIPool's quantised bins: bin (r, c) max-pools cells rows ``y_start[r]:y_end[r]`` x cols
    ``x_start[c]:x_end[c]`` (end exclusive, clipped to the map)."""

    roi_cells: tuple[int, int, int, int]  # (x1, y1, x2, y2) rounded to cells, inclusive, before clipping
    x_start: Tensor  # (S,) int64
    x_end: Tensor  # (S,) int64
    y_start: Tensor  # (S,) int64
    y_end: Tensor  # (S,) int64

    @property
    def empty(self) -> Tensor:
        """(S, S) bool: bins with no cell (they pool to 0)."""
        return (self.y_end <= self.y_start)[:, None] | (self.x_end <= self.x_start)[None, :]

    def bin_boxes(self) -> Tensor:
        """(S * S, 4) bins row by row as boxes over whole cells in feature coordinates: a bin of cells
        j0..j1-1 spans x in [j0 - 0.5, j1 - 0.5] (cell j is centred on x = j)."""
        ys, xs = torch.meshgrid(torch.arange(len(self.y_start)), torch.arange(len(self.x_start)), indexing="ij")
        ys, xs = ys.reshape(-1), xs.reshape(-1)  # (S*S,)
        return torch.stack([self.x_start[xs], self.y_start[ys], self.x_end[xs], self.y_end[ys]], 1).float() - 0.5


@dataclass(frozen=True)
class RoIAlignGrid:
    """RoIAlign's exact bins and sample points in feature coordinates."""

    x_edges: Tensor  # (S + 1,) float
    y_edges: Tensor  # (S + 1,) float
    x_samples: Tensor  # (S * n_x,) float, bin by bin
    y_samples: Tensor  # (S * n_y,) float
    samples_per_bin: tuple[int, int]  # (n_y, n_x)

    def bin_boxes(self) -> Tensor:
        """(S * S, 4) bins row by row as (x1, y1, x2, y2) boxes in feature coordinates."""
        s = len(self.x_edges) - 1
        ys, xs = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        ys, xs = ys.reshape(-1), xs.reshape(-1)  # (S*S,)
        return torch.stack([self.x_edges[xs], self.y_edges[ys], self.x_edges[xs + 1], self.y_edges[ys + 1]], 1)


def _round_half_away(x: Tensor) -> Tensor:
    """C's ``round``: halves away from zero (``torch.round`` rounds them to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def roi_pool_grid(box: Tensor, spatial_scale: float, output_size: int, feature_size: tuple[int, int]) -> RoIPoolGrid:
    """RoIPool's bins for one RoI.

    Args:
        box: (4,) (x1, y1, x2, y2) in network-input pixels.
        spatial_scale: feature cells per input pixel (1/16 ...).
        output_size: S.
        feature_size: (H, W) of the feature map, for clipping.
    """
    scaled = box.detach().cpu().float() * torch.tensor(spatial_scale, dtype=torch.float32)  # as the kernel: float
    x1, y1, x2, y2 = (int(v) for v in _round_half_away(scaled).tolist())
    height, width = feature_size

    def axis(start: int, end: int, limit: int) -> tuple[Tensor, Tensor]:
        size = max(end - start + 1, 1)
        bin_size = torch.tensor(size, dtype=torch.float32) / output_size
        p = torch.arange(output_size, dtype=torch.float32)
        lo = torch.floor(p * bin_size).long() + start  # (S,)
        hi = torch.ceil((p + 1) * bin_size).long() + start
        return lo.clamp(0, limit), hi.clamp(0, limit)

    xs, xe = axis(x1, x2, width)
    ys, ye = axis(y1, y2, height)
    return RoIPoolGrid((x1, y1, x2, y2), xs, xe, ys, ye)


def roi_align_grid(box: Tensor, spatial_scale: float, output_size: int, sampling_ratio: int) -> RoIAlignGrid:
    """RoIAlign's (``aligned=False``, torchvision's and Mask R-CNN's original) bins and sample points.

    Args:
        box: (4,) (x1, y1, x2, y2) in network-input pixels.
        spatial_scale: feature cells per input pixel.
        output_size: S.
        sampling_ratio: samples per bin side; <= 0: ``ceil(roi side / S)`` (adaptive).
    """
    x1, y1, x2, y2 = (box.detach().cpu().float() * spatial_scale).tolist()

    def axis(start: float, end: float) -> tuple[Tensor, Tensor, int]:
        size = max(end - start, 1.0)
        bin_size = size / output_size
        n = sampling_ratio if sampling_ratio > 0 else math.ceil(size / output_size)
        edges = start + torch.arange(output_size + 1, dtype=torch.float32) * bin_size  # (S+1,)
        offsets = (torch.arange(n, dtype=torch.float32) + 0.5) * bin_size / n  # (n,)
        samples = (edges[:-1, None] + offsets[None, :]).reshape(-1)  # (S*n,)
        return edges, samples, n

    xe, xs, nx = axis(x1, x2)
    ye, ys, ny = axis(y1, y2)
    return RoIAlignGrid(xe, ye, xs, ys, (ny, nx))
