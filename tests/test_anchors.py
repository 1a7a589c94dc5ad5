"""Anchors (paper 3.1.1) against the paper's numbers and brute-force loops written here.

The references are independent of torchvision's ``AnchorGenerator`` (which the stage calls): a cell anchor
of size S and ratio r = h / w has half-width S / sqrt(r) / 2 and half-height S * sqrt(r) / 2, each rounded
to an integer (torchvision's convention), and is shifted to (j * stride, i * stride).
"""

from __future__ import annotations

import math

import pytest
import torch

from frcnn.settings import TORCHVISION_COCO, AnchorSettings
from frcnn.stages.anchors import Anchors, grid_for_stride, make_anchors, split_sizes

PAPER_SIZES = (128.0, 256.0, 512.0)
PAPER_RATIOS = (0.5, 1.0, 2.0)


def _paper_anchors(grid: tuple[int, int], image_size: tuple[int, int], stride: int = 16) -> Anchors:
    return make_anchors([PAPER_SIZES], PAPER_RATIOS, [grid], [stride], image_size)


def _brute_cell(sizes: tuple[float, ...], ratios: tuple[float, ...]) -> list[tuple[float, float, float, float]]:
    """The k anchors of a location centred on (0, 0), ratio-major (torchvision's channel order)."""
    cell = []
    for r in ratios:
        for s in sizes:
            half_w = round(s / math.sqrt(r) / 2)
            half_h = round(s * math.sqrt(r) / 2)
            cell.append((-half_w, -half_h, half_w, half_h))
    return cell


def _brute_anchors(sizes, ratios, grid_sizes, strides) -> list[tuple[float, float, float, float]]:
    """Every anchor, in (level, y, x, k) order, by plain loops."""
    out = []
    for level_sizes, (h, w), stride in zip(sizes, grid_sizes, strides, strict=True):
        cell = _brute_cell(level_sizes, ratios)
        for i in range(h):
            for j in range(w):
                cx, cy = j * stride, i * stride
                for x1, y1, x2, y2 in cell:
                    out.append((cx + x1, cy + y1, cx + x2, cy + y2))
    return out


def test_nine_anchors_at_a_location_have_the_paper_areas_ratios_and_centre() -> None:
    anchors = _paper_anchors((5, 7), (80, 112))
    assert anchors.num_per_location == (9,)
    for y, x in [(0, 0), (2, 3), (4, 6)]:
        idx = anchors.location_index(0, y, x)
        assert idx.shape == (9,)
        boxes = anchors.boxes[idx].double()
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        # every anchor centred on the location's point (x = j * stride, y = i * stride)
        assert torch.equal((boxes[:, 0] + boxes[:, 2]) / 2, torch.full((9,), 16.0 * x, dtype=torch.float64))
        assert torch.equal((boxes[:, 1] + boxes[:, 3]) / 2, torch.full((9,), 16.0 * y, dtype=torch.float64))
        # each (size, ratio) pair exactly once: area size^2 (within integer rounding) and h / w = ratio
        found = set()
        for wi, hi in zip(w.tolist(), h.tolist(), strict=True):
            size = min(PAPER_SIZES, key=lambda s, a=wi * hi: abs(a - s * s))
            ratio = min(PAPER_RATIOS, key=lambda r, q=hi / wi: abs(q - r))
            assert wi * hi == pytest.approx(size * size, rel=0.02)
            assert hi / wi == pytest.approx(ratio, rel=0.02)
            found.add((size, ratio))
        assert found == {(s, r) for s in PAPER_SIZES for r in PAPER_RATIOS}


def test_square_anchors_are_exact() -> None:
    anchors = _paper_anchors((1, 1), (16, 16))
    boxes = anchors.boxes.tolist()
    for s in PAPER_SIZES:
        assert [-s / 2, -s / 2, s / 2, s / 2] in boxes


def test_location_index_finds_the_anchors_centred_on_that_cell() -> None:
    anchors = make_anchors([(32.0,), (64.0, 96.0)], (0.5, 1.0, 2.0), [(4, 5), (2, 3)], [8, 16], (32, 40))
    centres = (anchors.boxes[:, :2] + anchors.boxes[:, 2:]) / 2
    for level, (h, w) in enumerate(anchors.grid_sizes):
        stride = anchors.strides[level]
        for y in range(h):
            for x in range(w):
                idx = anchors.location_index(level, y, x)
                assert idx.numel() == anchors.num_per_location[level]
                assert torch.all(anchors.level[idx] == level)
                assert torch.all(centres[idx] == torch.tensor([x * stride, y * stride], dtype=centres.dtype))


def test_total_count_is_h_w_k() -> None:
    anchors = _paper_anchors((50, 50), (800, 800))
    assert anchors.boxes.shape == (22_500, 4) == (50 * 50 * 9, 4)
    assert anchors.num_per_level == (22_500,)
    # the paper's "typical 1000 x 600 image": roughly 20000 (~ 60 x 40 x 9) anchors at stride 16
    grid = grid_for_stride((600, 1000), 16)
    anchors = _paper_anchors(grid, (600, 1000))
    assert len(anchors.boxes) == 38 * 63 * 9 == 21_546
    assert abs(len(anchors.boxes) - 20_000) / 20_000 < 0.1


def test_order_is_level_y_x_k_as_a_brute_force_loop() -> None:
    sizes = [(32.0, 48.0), (64.0, 100.0), (128.0, 200.0)]
    ratios = (0.5, 1.0, 2.0)
    grids = [(6, 5), (3, 3), (2, 1)]
    strides = [4, 8, 16]
    anchors = make_anchors(sizes, ratios, grids, strides, (24, 20))
    expected = torch.tensor(_brute_anchors(sizes, ratios, grids, strides), dtype=torch.float32)
    assert anchors.boxes.shape == expected.shape
    assert torch.equal(anchors.boxes, expected)
    want_level = [lvl for lvl, (h, w) in enumerate(grids) for _ in range(h * w * len(sizes[lvl]) * len(ratios))]
    assert anchors.level.tolist() == want_level
    # the cell anchors are the (0, 0) location's anchors, ratio-major
    for lvl, cell in enumerate(anchors.cell):
        assert cell.tolist() == [list(map(float, b)) for b in _brute_cell(sizes[lvl], ratios)]


def test_paper_cell_matches_hand_values() -> None:
    """128 at ratio 0.5: w = 128 * sqrt(2) = 181.02 -> half 91; h = 128 / sqrt(2) = 90.51 -> half 45."""
    anchors = _paper_anchors((1, 1), (1, 1))
    assert anchors.cell[0][0].tolist() == [-91.0, -45.0, 91.0, 45.0]
    assert anchors.cell[0][4].tolist() == [-128.0, -128.0, 128.0, 128.0]
    assert anchors.cell[0][8].tolist() == [-181.0, -362.0, 181.0, 362.0]


@pytest.mark.parametrize("image_size", [(300, 500), (100, 100), (1, 1), (640, 480)])
def test_inside_equals_brute_force(image_size: tuple[int, int]) -> None:
    h, w = image_size
    anchors = make_anchors([(32.0, 64.0)], (0.5, 1.0, 2.0), [grid_for_stride((h, w), 16)], [16], image_size)
    expected = [x1 >= 0 and y1 >= 0 and x2 <= w and y2 <= h for x1, y1, x2, y2 in anchors.boxes.tolist()]
    assert anchors.inside.tolist() == expected
    if image_size == (300, 500):  # some of each, so the check is not vacuous
        assert 0 < sum(expected) < len(expected)


def test_inside_boundary_is_inclusive() -> None:
    # one 32 x 32 anchor at (16, 16): [0, 0, 32, 32] touches the border of a 32 x 32 image and is inside
    anchors = make_anchors([(32.0,)], (1.0,), [(2, 2)], [16], (32, 32))
    assert anchors.boxes[3].tolist() == [0.0, 0.0, 32.0, 32.0]
    assert anchors.inside.tolist() == [False, False, False, True]


@pytest.mark.parametrize(
    ("sizes", "levels", "expected"),
    [
        ((128.0, 256.0, 512.0), 1, ((128.0, 256.0, 512.0),)),
        ((32, 64, 128, 256, 512), 5, ((32.0,), (64.0,), (128.0,), (256.0,), (512.0,))),
        ((1, 2, 3, 4, 5, 6), 3, ((1.0, 2.0), (3.0, 4.0), (5.0, 6.0))),
        ((1, 2, 3, 4, 5, 6), 2, ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0))),
        ((1, 2, 3, 4, 5), 2, None),
        ((128.0, 256.0, 512.0), 5, None),
        ((128.0,), 0, None),
        ((128.0,), -1, None),
    ],
)
def test_split_sizes(sizes, levels, expected) -> None:
    assert split_sizes(sizes, levels) == expected


def test_multi_level_counts_torchvision_coco() -> None:
    settings = TORCHVISION_COCO.anchors
    strides = [4, 8, 16, 32, 64]
    padded = (256, 320)
    per_level = split_sizes(settings.sizes, len(strides))
    assert per_level is not None
    grids = [grid_for_stride(padded, s) for s in strides]
    assert grids == [(64, 80), (32, 40), (16, 20), (8, 10), (4, 5)]
    anchors = make_anchors(per_level, settings.ratios, grids, strides, padded)
    expected = tuple(h * w * 3 for h, w in grids)
    assert anchors.num_per_level == expected
    assert anchors.num_per_location == (3,) * 5
    assert len(anchors.boxes) == sum(expected) == 3 * (5120 + 1280 + 320 + 80 + 20)
    assert torch.bincount(anchors.level).tolist() == list(expected)
    # location_index on the last level lands at the end of the array
    assert anchors.location_index(4, 3, 4).tolist() == list(range(len(anchors.boxes) - 3, len(anchors.boxes)))


@pytest.mark.parametrize(
    ("padded", "stride", "expected"),
    [
        ((800, 800), 16, (50, 50)),
        ((600, 1000), 16, (38, 63)),
        ((608, 1024), 32, (19, 32)),
        ((1, 1), 16, (1, 1)),
        ((17, 16), 16, (2, 1)),
        ((64, 96), 4, (16, 24)),
    ],
)
def test_grid_for_stride(padded, stride, expected) -> None:
    assert grid_for_stride(padded, stride) == expected
    h, w = expected
    # the grid is the fewest centres j * stride that reach every row/column of the padded input
    assert (h - 1) * stride < padded[0] <= h * stride
    assert (w - 1) * stride < padded[1] <= w * stride


def test_settings_num_per_location_matches_anchors() -> None:
    settings = AnchorSettings()
    anchors = make_anchors([settings.sizes], settings.ratios, [(2, 2)], [settings.stride], (32, 32))
    assert anchors.num_per_location == (settings.num_per_location,) == (9,)
