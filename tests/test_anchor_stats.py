"""Anchor statistics against brute force: layout from the boxes' own shapes and centres, nearest location by
scanning, coverage by a per-pair IoU loop, recall by size range by hand."""

from __future__ import annotations

import math

import pytest
import torch

from frcnn.analysis.anchor_stats import (
    anchor_coverage,
    anchor_layout,
    location_centres,
    nearest_location,
    recall_by_size,
)
from frcnn.stages.anchors import make_anchors


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.fixture(scope="module")
def anchors():
    return make_anchors([(32.0, 64.0, 128.0)], (0.5, 1.0, 2.0), [(5, 7)], [16], (80, 112))


@pytest.fixture(scope="module")
def two_levels():
    return make_anchors([(16.0,), (40.0, 80.0)], (0.5, 2.0), [(4, 4), (2, 3)], [8, 16], (32, 48))


@pytest.mark.parametrize("fixture", ["anchors", "two_levels"])
def test_layout_matches_each_anchors_own_centre_and_shape(fixture, request):
    a = request.getfixturevalue(fixture)
    lay = anchor_layout(a)
    assert len(lay.size) == len(a.boxes)
    for i in range(len(a.boxes)):
        x1, y1, x2, y2 = a.boxes[i].tolist()
        lvl = int(lay.level[i])
        assert lvl == int(a.level[i])
        s = a.strides[lvl]
        assert (x1 + x2) / 2 == pytest.approx(int(lay.ix[i]) * s)
        assert (y1 + y2) / 2 == pytest.approx(int(lay.iy[i]) * s)
        w, h = x2 - x1, y2 - y1
        size, ratio = float(lay.size[i]), float(lay.ratio[i])
        assert size == a.sizes[lvl][int(lay.size_index[i])]
        assert ratio == a.ratios[int(lay.ratio_index[i])]
        assert math.sqrt(w * h) == pytest.approx(size, rel=0.05)  # torchvision rounds the cell anchors
        assert h / w == pytest.approx(ratio, rel=0.1)


@pytest.mark.parametrize("fixture", ["anchors", "two_levels"])
def test_layout_of_some_anchors_is_the_full_layouts_rows(fixture, request):
    a = request.getfixturevalue(fixture)
    full = anchor_layout(a)
    index = torch.randperm(len(a.boxes), generator=torch.Generator().manual_seed(0))[:17]
    some = anchor_layout(a, index)
    for name in ("level", "iy", "ix", "size_index", "ratio_index", "size", "ratio"):
        assert torch.equal(getattr(some, name), getattr(full, name)[index]), name
    assert len(anchor_layout(a, torch.zeros(0, dtype=torch.int64)).size) == 0


def test_location_centres_and_nearest_location(two_levels):
    for lvl, ((h, w), s) in enumerate(zip(two_levels.grid_sizes, two_levels.strides, strict=True)):
        c = location_centres(two_levels, lvl)
        expected = torch.tensor([[j * s, i * s] for i in range(h) for j in range(w)], dtype=torch.float32)
        assert torch.allclose(c, expected)
        for x, y in [(0.0, 0.0), (17.0, 3.0), (1000.0, -50.0), (s * 1.4, s * 2.6)]:
            d = [((j * s - x) ** 2 + (i * s - y) ** 2, (i, j)) for i in range(h) for j in range(w)]
            assert nearest_location(two_levels, x, y, lvl) == min(d)[1]


def test_coverage_equals_a_brute_force_loop(anchors):
    gt = torch.tensor([[10.0, 10.0, 60.0, 40.0], [0.0, 0.0, 110.0, 79.0], [50.0, 20.0, 58.0, 28.0]])
    usable = anchors.inside
    for mask in (None, usable):
        cov = anchor_coverage(anchors.boxes, gt, mask)
        for g, box in enumerate(gt.tolist()):
            ious = [(_iou(box, a), i) for i, a in enumerate(anchors.boxes.tolist()) if mask is None or bool(mask[i])]
            best = max(v for v, _ in ious)
            assert float(cov.best_iou[g]) == pytest.approx(best, abs=1e-5)
            assert _iou(box, anchors.boxes[int(cov.best_anchor[g])].tolist()) == pytest.approx(best, abs=1e-5)
        expected = sum(float(v) >= 0.5 for v in cov.best_iou) / 3
        assert cov.recall(0.5) == pytest.approx(expected)
        assert cov.recall(0.7) <= cov.recall(0.5)


def test_coverage_without_ground_truth_or_usable_anchors(anchors):
    empty = anchor_coverage(anchors.boxes, torch.zeros(0, 4))
    assert len(empty.best_iou) == 0 and math.isnan(empty.recall(0.5))
    none = anchor_coverage(anchors.boxes, torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
                           torch.zeros(len(anchors.boxes), dtype=torch.bool))
    assert none.best_anchor.tolist() == [-1] and none.best_iou.tolist() == [0.0] and none.recall(0.5) == 0.0


def test_recall_by_size_counts_by_hand():
    gt = torch.tensor([[0, 0, 10, 10], [0, 0, 20, 20], [0, 0, 50, 50], [0, 0, 200, 100]], dtype=torch.float32)
    best = torch.tensor([0.4, 0.8, 0.6, 0.75])
    rows = {r["size"]: r for r in recall_by_size(gt, best)}
    small, medium, large = rows.values()
    assert (small["boxes"], small["recall@0.5"], small["recall@0.7"]) == (2, 0.5, 0.5)
    assert (medium["boxes"], medium["recall@0.5"], medium["recall@0.7"]) == (1, 1.0, 0.0)
    assert (large["boxes"], large["recall@0.5"], large["recall@0.7"]) == (1, 1.0, 1.0)
    assert math.isnan(recall_by_size(gt[:1], best[:1])[2]["recall@0.5"])
