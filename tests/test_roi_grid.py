"""RoI bin grids against torchvision's own ``roi_pool`` and ``roi_align`` on hand-made feature maps.

RoIPool: a one-hot map per cell (channel k is 1 at cell k only) makes ``roi_pool``'s output say exactly which
cells each bin covers: output[k, r, c] = 1 iff cell k is in bin (r, c). RoIAlign: the maps f = x and f = y
are linear, so bilinear interpolation is exact inside the map and each bin's average is the mean of its
sample points' coordinates.
"""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import roi_align, roi_pool

from frcnn.analysis.roi_grid import roi_align_grid, roi_pool_grid

H, W = 6, 9


def _one_hot_map() -> torch.Tensor:
    return torch.eye(H * W).reshape(1, H * W, H, W)  # channel k = (k // W, k % W)


def _cells_from_grid(grid, r: int, c: int) -> set[int]:
    return {i * W + j for i in range(int(grid.y_start[r]), int(grid.y_end[r]))
            for j in range(int(grid.x_start[c]), int(grid.x_end[c]))}


BOXES = [
    (0.0, 0.0, 143.0, 95.0),  # the whole map at stride 16
    (17.0, 9.0, 70.0, 41.0),
    (24.0, 24.0, 40.0, 40.0),  # halves: 1.5 and 2.5 round away from zero
    (30.0, 3.0, 35.0, 90.0),  # narrow: fewer cells than bins
    (-20.0, -8.0, 200.0, 130.0),  # beyond the map: clipped
    (100.0, 60.0, 101.0, 61.0),  # one cell
]


@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize("size", [2, 3, 7])
def test_roi_pool_grid_is_the_cells_roi_pool_max_pools(box, size):
    scale = 1.0 / 16
    fmap = _one_hot_map()
    pooled = roi_pool(fmap, [torch.tensor([box])], size, scale)[0]  # (H*W, S, S)
    grid = roi_pool_grid(torch.tensor(box), scale, size, (H, W))
    for r in range(size):
        for c in range(size):
            expected = set(torch.where(pooled[:, r, c] > 0.5)[0].tolist())
            assert _cells_from_grid(grid, r, c) == expected, (r, c)
            assert bool(grid.empty[r, c]) == (not expected)


def test_roi_pool_grid_rounds_halves_away_from_zero():
    grid = roi_pool_grid(torch.tensor([24.0, 40.0, 40.0, 56.0]), 1.0 / 16, 2, (H, W))  # 1.5, 2.5, 2.5, 3.5
    assert grid.roi_cells == (2, 3, 3, 4)


def test_bin_boxes_cover_whole_cells():
    grid = roi_pool_grid(torch.tensor([17.0, 9.0, 70.0, 41.0]), 1.0 / 16, 2, (H, W))
    boxes = grid.bin_boxes()
    assert boxes.shape == (4, 4)
    assert torch.equal(boxes[0], torch.tensor([grid.x_start[0], grid.y_start[0], grid.x_end[0], grid.y_end[0]]) - 0.5)
    assert torch.equal(boxes.frac().abs(), torch.full_like(boxes, 0.5))


def _linear_maps() -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                            indexing="ij")
    return torch.stack([xs, ys])[None]  # (1, 2, H, W): channel 0 = x, channel 1 = y


@pytest.mark.parametrize("box", [(17.0, 9.0, 70.0, 41.0), (10.0, 20.0, 120.0, 70.0), (33.0, 33.0, 36.0, 35.0)])
@pytest.mark.parametrize("ratio", [1, 2, 0])
def test_roi_align_grid_samples_are_where_roi_align_reads(box, ratio):
    scale, size = 1.0 / 16, 3
    pooled = roi_align(_linear_maps(), [torch.tensor([box])], size, scale, ratio, aligned=False)[0]  # (2, S, S)
    grid = roi_align_grid(torch.tensor(box), scale, size, ratio)
    ny, nx = grid.samples_per_bin
    x_means = grid.x_samples.reshape(size, nx).mean(1)  # (S,)
    y_means = grid.y_samples.reshape(size, ny).mean(1)
    torch.testing.assert_close(pooled[0], x_means[None, :].expand(size, size), atol=1e-4, rtol=0)
    torch.testing.assert_close(pooled[1], y_means[:, None].expand(size, size), atol=1e-4, rtol=0)


def test_roi_align_grid_edges_are_exact_and_adaptive_count():
    grid = roi_align_grid(torch.tensor([16.0, 32.0, 128.0, 80.0]), 1.0 / 16, 2, 0)
    torch.testing.assert_close(grid.x_edges, torch.tensor([1.0, 4.5, 8.0]))
    torch.testing.assert_close(grid.y_edges, torch.tensor([2.0, 3.5, 5.0]))
    assert grid.samples_per_bin == (math.ceil(3 / 2), math.ceil(7 / 2))
    assert grid.bin_boxes().shape == (4, 4)
    torch.testing.assert_close(grid.bin_boxes()[3], torch.tensor([4.5, 3.5, 8.0, 5.0]))
