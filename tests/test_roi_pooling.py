"""RoI pooling against brute-force RoIPool / RoIAlign loops written here, torchvision's ``roi_align`` and
``MultiScaleRoIAlign``, and the FPN paper's level rule k = floor(4 + log2(sqrt(wh) / 224)).

The brute-force loops follow Fast R-CNN's quantisation as torchvision implements it: the RoI's corners are
rounded to feature cells (half away from zero), its size is end - start + 1 cells (at least 1), bin (p) covers
cells [floor(p * size / S), ceil((p + 1) * size / S)) offset by the start and clipped; an empty bin is 0.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align, roi_pool

from frcnn.stages.backbone import Features
from frcnn.stages.roi_pooling import pool_rois, spatial_scale


def _round_half_away(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def _brute_roi_pool(fmap: list, box: list[float], scale: float, out: int) -> list:
    """fmap: [C][H][W] nested lists; returns [C][out][out]."""
    height, width = len(fmap[0]), len(fmap[0][0])
    x1, y1, x2, y2 = (_round_half_away(v * scale) for v in box)
    roi_w, roi_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
    bin_w, bin_h = roi_w / out, roi_h / out
    result = []
    for channel in fmap:
        grid = []
        for ph in range(out):
            hs = min(max(math.floor(ph * bin_h) + y1, 0), height)
            he = min(max(math.ceil((ph + 1) * bin_h) + y1, 0), height)
            row = []
            for pw in range(out):
                ws = min(max(math.floor(pw * bin_w) + x1, 0), width)
                we = min(max(math.ceil((pw + 1) * bin_w) + x1, 0), width)
                cells = [channel[h][w] for h in range(hs, he) for w in range(ws, we)]
                row.append(max(cells) if cells else 0.0)
            grid.append(row)
        result.append(grid)
    return result


def _bilinear(channel: list, y: float, x: float) -> float:
    height, width = len(channel), len(channel[0])
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y_lo, x_lo = int(y), int(x)
    if y_lo >= height - 1:
        y_lo = y_hi = height - 1
        y = float(y_lo)
    else:
        y_hi = y_lo + 1
    if x_lo >= width - 1:
        x_lo = x_hi = width - 1
        x = float(x_lo)
    else:
        x_hi = x_lo + 1
    ly, lx = y - y_lo, x - x_lo
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * channel[y_lo][x_lo] + hy * lx * channel[y_lo][x_hi]
            + ly * hx * channel[y_hi][x_lo] + ly * lx * channel[y_hi][x_hi])


def _brute_roi_align(fmap: list, box: list[float], scale: float, out: int, sampling_ratio: int) -> list:
    """RoIAlign (aligned=False): sampling_ratio^2 bilinear samples per bin, averaged."""
    x1, y1, x2, y2 = (v * scale for v in box)
    roi_w, roi_h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    bin_w, bin_h = roi_w / out, roi_h / out
    gh = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / out)
    gw = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / out)
    result = []
    for channel in fmap:
        grid = []
        for ph in range(out):
            row = []
            for pw in range(out):
                total = 0.0
                for iy in range(gh):
                    y = y1 + ph * bin_h + (iy + 0.5) * bin_h / gh
                    for ix in range(gw):
                        x = x1 + pw * bin_w + (ix + 0.5) * bin_w / gw
                        total += _bilinear(channel, y, x)
                row.append(total / (gh * gw))
            grid.append(row)
        result.append(grid)
    return result


def _fpn_level(box: list[float], k_min: int = 2, k_max: int = 5) -> int:
    k = math.floor(4 + math.log2(math.sqrt((box[2] - box[0]) * (box[3] - box[1])) / 224))
    return min(max(k, k_min), k_max) - k_min


def _single(fmap: torch.Tensor, stride: int) -> Features:
    return Features((fmap,), ("0",), (stride,))


def _hand_map() -> torch.Tensor:
    """1 x 2 x 8 x 8: channel 0 is 8 * y + x, channel 1 a seeded permutation of 0..63 (distinct values)."""
    c0 = torch.arange(64, dtype=torch.float32).reshape(8, 8)
    c1 = torch.randperm(64, generator=torch.Generator().manual_seed(0)).float().reshape(8, 8)
    return torch.stack([c0, c1])[None]


def test_roi_pool_hand_case() -> None:
    fmap = _hand_map()
    # RoI [0, 0, 3, 3] at scale 1 covers cells 0..3 (4 x 4); 2 x 2 bins of 2 x 2 cells: max at the bin's corner
    out = pool_rois(_single(fmap, 1), torch.tensor([[0.0, 0.0, 3.0, 3.0]]), (8, 8), "roi_pool", 2)
    assert out.features[0, 0].tolist() == [[9.0, 11.0], [25.0, 27.0]]
    assert out.spatial_scales == (1.0,)
    assert out.level.tolist() == [0]


BOXES = [
    [0.0, 0.0, 7.0, 7.0],
    [0.0, 0.0, 3.0, 3.0],
    [1.2, 2.7, 5.9, 6.2],
    [2.0, 1.0, 2.0, 6.0],  # zero width: forced to one cell
    [5.0, 5.0, 12.0, 12.0],  # beyond the map: clipped, some bins empty
    [6.6, 0.4, 7.4, 1.4],
    [0.4, 3.0, 7.0, 4.0],
]


@pytest.mark.parametrize("out", [1, 2, 3, 5])
def test_roi_pool_equals_brute_force(out: int) -> None:
    fmap = _hand_map()
    boxes = torch.tensor(BOXES)
    pooled = pool_rois(_single(fmap, 1), boxes, (8, 8), "roi_pool", out)
    assert pooled.features.shape == (len(BOXES), 2, out, out)
    for r, box in enumerate(BOXES):
        assert pooled.features[r].tolist() == _brute_roi_pool(fmap[0].tolist(), box, 1.0, out), (r, box)


def test_roi_pool_with_stride_two() -> None:
    fmap = _hand_map()
    boxes = torch.tensor([[2.0, 2.0, 14.0, 10.0], [0.0, 0.0, 16.0, 16.0], [3.0, 5.0, 9.0, 13.0]])
    pooled = pool_rois(_single(fmap, 2), boxes, (16, 16), "roi_pool", 3)
    assert pooled.spatial_scales == (0.5,)
    for r, box in enumerate(boxes.tolist()):
        assert pooled.features[r].tolist() == _brute_roi_pool(fmap[0].tolist(), box, 0.5, 3)


@pytest.mark.parametrize("op", ["roi_pool", "roi_align"])
@pytest.mark.parametrize("threads", [2, 3])
def test_pooling_sharded_over_threads_equals_one_call(threads: int, op: str) -> None:
    """Many RoIs without autograd are pooled in shards, one per torch thread: the same as torchvision's one call;
    with autograd they are not sharded, and the gradient reaches the map."""
    g = torch.Generator().manual_seed(1)
    fmap = torch.randn(1, 8, 20, 24, generator=g)
    xy = torch.rand(100, 2, generator=g) * 300
    boxes = torch.cat([xy, xy + torch.rand(100, 2, generator=g) * 100 + 1], dim=1)  # (100, 4)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            pooled = pool_rois(_single(fmap, 16), boxes, (320, 384), op, 7).features
        leaf = fmap.clone().requires_grad_()
        trained = pool_rois(_single(leaf, 16), boxes, (320, 384), op, 7).features
    finally:
        torch.set_num_threads(before)
    one_call = (roi_pool(fmap, [boxes], 7, 1 / 16) if op == "roi_pool"
                else roi_align(fmap, [boxes], 7, 1 / 16, 2, aligned=False))
    assert torch.equal(pooled, one_call)
    assert torch.equal(trained.detach(), pooled)
    trained.sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0


@pytest.mark.parametrize("sampling_ratio", [2, 1, 0])
def test_roi_align_single_level_equals_torchvision_and_brute_force(sampling_ratio: int) -> None:
    fmap = torch.randn(1, 3, 16, 20, generator=torch.Generator().manual_seed(1))
    boxes = torch.tensor([[0.0, 0.0, 63.0, 47.0], [10.5, 7.25, 40.0, 33.0], [50.0, 40.0, 90.0, 70.0],
                          [20.0, 20.0, 21.0, 22.0], [-8.0, -4.0, 12.0, 30.0]])
    pooled = pool_rois(_single(fmap, 4), boxes, (64, 80), "roi_align", 4, sampling_ratio=sampling_ratio)
    assert pooled.spatial_scales == (0.25,)
    direct = roi_align(fmap, [boxes], 4, 0.25, sampling_ratio, aligned=False)
    assert torch.allclose(pooled.features, direct, atol=1e-6)
    for r, box in enumerate(boxes.tolist()):
        brute = torch.tensor(_brute_roi_align(fmap[0].tolist(), box, 0.25, 4, sampling_ratio))
        assert torch.allclose(pooled.features[r], brute, atol=1e-5), r


def _fpn_case():
    g = torch.Generator().manual_seed(2)
    maps = OrderedDict((name, torch.randn(1, 4, 256 // s, 256 // s, generator=g))
                       for name, s in zip(("0", "1", "2", "3"), (4, 8, 16, 32), strict=True))
    boxes = torch.tensor([
        [10.0, 10.0, 26.0, 26.0],  # sqrt(area) 16: level 0 (k 2, clamped)
        [0.0, 0.0, 56.0, 56.0],  # 56: exactly k = 2
        [5.0, 7.0, 75.0, 90.0],  # ~77: k 2
        [0.0, 0.0, 112.0, 112.0],  # 112: exactly k = 3
        [30.0, 20.0, 180.0, 150.0],  # ~140: k 3
        [0.0, 0.0, 224.0, 224.0],  # 224: exactly k = 4
        [0.0, 0.0, 256.0, 250.0],  # ~253: k 4
        [-100.0, -100.0, 356.0, 356.0],  # 456: k 5
        [-300.0, -200.0, 500.0, 600.0],  # 800: k 5 (clamped)
        [100.0, 100.0, 101.0, 140.0],  # thin: sqrt(40): level 0
        [0.0, 0.0, 110.0, 110.0],  # 110: just below k = 3, so k 2
        [10.0, 10.0, 230.0, 230.0],  # 220: just below k = 4, so k 3
        [-100.0, -100.0, 340.0, 340.0],  # 440: just below k = 5, so k 4
    ])
    return maps, boxes


def test_fpn_level_assignment_follows_the_rule() -> None:
    maps, boxes = _fpn_case()
    features = Features(tuple(maps.values()), tuple(maps), (4, 8, 16, 32))
    pooled = pool_rois(features, boxes, (256, 256), "roi_align", 7)
    expected = [_fpn_level(b) for b in boxes.tolist()]
    assert expected == [0, 0, 0, 1, 1, 2, 2, 3, 3, 0, 0, 1, 2]
    assert pooled.level.tolist() == expected
    assert pooled.spatial_scales == (1 / 4, 1 / 8, 1 / 16, 1 / 32)


@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_multi_level_equals_torchvision_multiscale_roi_align(sampling_ratio: int) -> None:
    maps, boxes = _fpn_case()
    features = Features(tuple(maps.values()), tuple(maps), (4, 8, 16, 32))
    pooled = pool_rois(features, boxes, (256, 256), "roi_align", 7, sampling_ratio=sampling_ratio)
    reference = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, sampling_ratio)(maps, [boxes], [(256, 256)])
    assert pooled.features.shape == (len(boxes), 4, 7, 7)
    assert torch.allclose(pooled.features, reference, atol=1e-6)
    # and each RoI's grid is RoIAlign on its own level's map
    for r, (box, lvl) in enumerate(zip(boxes.tolist(), pooled.level.tolist(), strict=True)):
        fmap = list(maps.values())[lvl]
        direct = roi_align(fmap, [torch.tensor([box])], 7, 1 / (4 * 2 ** lvl), sampling_ratio)
        assert torch.allclose(pooled.features[r], direct[0], atol=1e-6)


def test_multi_level_roi_pool_equals_brute_force_on_each_level() -> None:
    maps, boxes = _fpn_case()
    features = Features(tuple(maps.values()), tuple(maps), (4, 8, 16, 32))
    pooled = pool_rois(features, boxes, (256, 256), "roi_pool", 3)
    values = [m[0].tolist() for m in maps.values()]
    for r, box in enumerate(boxes.tolist()):
        lvl = _fpn_level(box)
        want = torch.tensor(_brute_roi_pool(values[lvl], box, 1 / (4 * 2 ** lvl), 3))
        assert torch.equal(pooled.features[r], want), r


def test_pooled_levels_selects_maps() -> None:
    maps, boxes = _fpn_case()
    features = Features(tuple(maps.values()), tuple(maps), (4, 8, 16, 32))
    pooled = pool_rois(features, boxes, (256, 256), "roi_align", 5, pooled_levels=(2,))
    assert pooled.spatial_scales == (1 / 16,)
    assert pooled.level.tolist() == [0] * len(boxes)
    assert torch.allclose(pooled.features, roi_align(maps["2"], [boxes], 5, 1 / 16, 2), atol=1e-6)


def test_no_rois() -> None:
    fmap = _hand_map()
    pooled = pool_rois(_single(fmap, 1), torch.zeros((0, 4)), (8, 8), "roi_pool", 2)
    assert pooled.features.shape == (0, 2, 2, 2)


@pytest.mark.parametrize(
    ("feature", "image", "expected"),
    [((50, 50), (800, 800), 1 / 16), ((38, 63), (600, 1000), 1 / 16), ((64, 64), (256, 256), 1 / 4),
     ((8, 8), (256, 200), 1 / 32), ((8, 8), (8, 8), 1.0)],
)
def test_spatial_scale(feature, image, expected) -> None:
    assert spatial_scale(feature, image) == expected
