"""Anchor targets (paper 3.1.2) against a brute-force IoU and labelling written here in plain Python.

The reference labelling, for anchor a with quality q(g, a) = IoU(g, a) (0 for an anchor crossing the border
when ``ignore_cross_boundary``):
    crossing the border (with ignore_cross_boundary) -> -1
    max_g q(g, a) >= fg                               -> 1
    low-quality rule on and a is a best anchor of some GT g (q(g, a) = max_a' q(g, a') > 0) -> 1
    max_g q(g, a) < bg                                -> 0
    otherwise                                          -> -1
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from reference import iou as _iou
from torchvision.models.detection._utils import BoxCoder

from frcnn.settings import RPNSettings
from frcnn.stages.anchor_targets import AnchorTargets, anchor_targets
from frcnn.stages.anchors import make_anchors
from frcnn.stages.proposals import decode

IMAGE = (48, 48)  # (h, w) of the random cases


def _inside(box, image_size) -> bool:
    h, w = image_size
    return box[0] >= 0 and box[1] >= 0 and box[2] <= w and box[3] <= h


def _random_box(rng: random.Random, lo: float, hi: float) -> list[float]:
    x1, y1 = rng.uniform(lo, hi - 4), rng.uniform(lo, hi - 4)
    return [x1, y1, rng.uniform(x1 + 2, min(hi, x1 + 30)), rng.uniform(y1 + 2, min(hi, y1 + 30))]


def _random_case(seed: int, num_anchors: int = 60) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random float anchors (some jittered copies of GT boxes, some crossing the border) and 1-4 GT boxes."""
    rng = random.Random(seed)
    gt = [_random_box(rng, 0, IMAGE[1]) for _ in range(rng.randint(1, 4))]
    anchors = []
    for _ in range(num_anchors):
        if rng.random() < 0.4:
            g = rng.choice(gt)
            jitter = rng.uniform(0.5, 6)
            anchors.append([c + rng.uniform(-jitter, jitter) for c in g])
            a = anchors[-1]
            a[2], a[3] = max(a[2], a[0] + 1), max(a[3], a[1] + 1)
        else:
            anchors.append(_random_box(rng, -10, IMAGE[1] + 10))
    anchors_t = torch.tensor(anchors, dtype=torch.float32)
    inside = torch.tensor([_inside(a, IMAGE) for a in anchors_t.tolist()])
    return anchors_t, inside, torch.tensor(gt, dtype=torch.float32)


def _quality(anchors: list, inside: list, gt: list, settings: RPNSettings) -> list[list[float]]:
    return [[_iou(g, a) if (inside[j] or not settings.ignore_cross_boundary) else 0.0
             for j, a in enumerate(anchors)] for g in gt]


def _brute_labels(anchors: torch.Tensor, inside: torch.Tensor, gt: torch.Tensor, settings: RPNSettings) -> list[int]:
    a_list, in_list, g_list = anchors.tolist(), inside.tolist(), gt.tolist()
    q = _quality(a_list, in_list, g_list, settings)
    best_of_gt = set()
    for row in q:
        top = max(row)
        if top > 0:
            best_of_gt |= {j for j, v in enumerate(row) if v == top}
    labels = []
    for j in range(len(a_list)):
        best = max(q[g][j] for g in range(len(g_list)))
        if settings.ignore_cross_boundary and not in_list[j]:
            labels.append(-1)
        elif best >= settings.fg_iou_thresh or (settings.allow_low_quality_matches and j in best_of_gt):
            labels.append(1)
        elif best < settings.bg_iou_thresh:
            labels.append(0)
        else:
            labels.append(-1)
    return labels


SETTINGS_VARIANTS = [
    RPNSettings(),
    RPNSettings(allow_low_quality_matches=False),
    RPNSettings(ignore_cross_boundary=False),
    RPNSettings(ignore_cross_boundary=False, allow_low_quality_matches=False),
    RPNSettings(fg_iou_thresh=0.5, bg_iou_thresh=0.4),
    RPNSettings(fg_iou_thresh=0.6, bg_iou_thresh=0.6),
]


def test_max_iou_equals_brute_force() -> None:
    for seed in range(20):
        anchors, inside, gt = _random_case(seed)
        t = anchor_targets(anchors, inside, gt, RPNSettings())
        for j, a in enumerate(anchors.tolist()):
            ious = [_iou(g, a) for g in gt.tolist()]
            assert t.max_iou[j].item() == pytest.approx(max(ious), abs=1e-6)
            # matched_gt is the box the anchor regresses to: one whose IoU is the best
            assert ious[t.matched_gt[j].item()] == pytest.approx(max(ious), abs=1e-6)


def test_best_anchor_per_gt_equals_brute_force() -> None:
    for settings in (RPNSettings(), RPNSettings(ignore_cross_boundary=False)):
        for seed in range(10):
            anchors, inside, gt = _random_case(seed)
            t = anchor_targets(anchors, inside, gt, settings)
            q = _quality(anchors.tolist(), inside.tolist(), gt.tolist(), settings)
            for g, row in enumerate(q):
                assert t.best_iou_per_gt[g].item() == pytest.approx(max(row), abs=1e-6)
                assert row[t.best_anchor_per_gt[g].item()] == pytest.approx(max(row), abs=1e-6)


@pytest.mark.parametrize("settings", SETTINGS_VARIANTS)
def test_labels_equal_brute_force(settings: RPNSettings) -> None:
    checked = 0
    seen = set()
    for seed in range(30):
        anchors, inside, gt = _random_case(seed)
        q = _quality(anchors.tolist(), inside.tolist(), gt.tolist(), settings)
        if min(max(row) for row in q) <= 0:
            continue  # a GT box no usable anchor overlaps: covered by test_gt_with_no_overlap_*
        labels = anchor_targets(anchors, inside, gt, settings).labels.tolist()
        assert labels == _brute_labels(anchors, inside, gt, settings), seed
        seen |= set(labels)
        checked += 1
    assert checked >= 25
    assert seen == {-1, 0, 1}


@pytest.mark.parametrize("settings", SETTINGS_VARIANTS)
def test_labels_obey_thresholds(settings: RPNSettings) -> None:
    for seed in range(30):
        anchors, inside, gt = _random_case(seed)
        q = _quality(anchors.tolist(), inside.tolist(), gt.tolist(), settings)
        if min(max(row) for row in q) <= 0:
            continue
        t = anchor_targets(anchors, inside, gt, settings)
        best_of_gt = {j for row in q for j, v in enumerate(row) if v == max(row)}
        for j, label in enumerate(t.labels.tolist()):
            best = max(q[g][j] for g in range(len(q)))
            if label == 1:
                assert best >= settings.fg_iou_thresh - 1e-6 or (
                    settings.allow_low_quality_matches and j in best_of_gt), (seed, j)
                assert best > 0
            elif label == 0:
                assert best < settings.bg_iou_thresh + 1e-6, (seed, j)
                assert inside[j] or not settings.ignore_cross_boundary
            else:
                assert label == -1
                assert (settings.ignore_cross_boundary and not inside[j]) or (
                    settings.bg_iou_thresh - 1e-6 <= best < settings.fg_iou_thresh + 1e-6), (seed, j)


def test_low_quality_rule_on_and_off_hand_made() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [100.0, 100.0, 110.0, 110.0]])
    anchors = torch.tensor([
        [0.0, 0.0, 10.0, 20.0],  # IoU 0.5 with GT 0, its best: between the thresholds
        [0.0, 0.0, 10.0, 40.0],  # IoU 0.25 with GT 0: negative
        [5.0, 0.0, 15.0, 10.0],  # IoU 1/3 with GT 0: ignored
        [100.0, 100.0, 110.0, 140.0],  # IoU 0.25 with GT 1, its best: below bg
        [50.0, 50.0, 60.0, 60.0],  # overlaps nothing: negative
    ])
    inside = torch.ones(5, dtype=torch.bool)
    on = anchor_targets(anchors, inside, gt, RPNSettings(allow_low_quality_matches=True))
    off = anchor_targets(anchors, inside, gt, RPNSettings(allow_low_quality_matches=False))
    assert on.max_iou.tolist() == pytest.approx([0.5, 0.25, 1 / 3, 0.25, 0.0])
    assert on.labels.tolist() == [1, 0, -1, 1, 0]
    assert off.labels.tolist() == [-1, 0, -1, 0, 0]
    assert on.best_anchor_per_gt.tolist() == [0, 3]
    assert on.best_iou_per_gt.tolist() == pytest.approx([0.5, 0.25])
    # the low-quality positive regresses to the GT box it is best for
    assert on.matched_gt[0].item() == 0 and on.matched_gt[3].item() == 1


def test_low_quality_rule_keeps_ties() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0], [0.0, -10.0, 10.0, 10.0], [0.0, 0.0, 20.0, 10.0]])
    t = anchor_targets(anchors, torch.ones(3, dtype=torch.bool), gt, RPNSettings(ignore_cross_boundary=False))
    assert t.labels.tolist() == [1, 1, 1]  # all three tie at IoU 0.5


def test_ignore_cross_boundary_makes_outside_anchors_ignored() -> None:
    gt = torch.tensor([[0.0, 0.0, 20.0, 20.0], [20.0, 20.0, 40.0, 40.0]])
    anchors = torch.tensor([
        [-1.0, 0.0, 19.0, 20.0],  # crosses the left border; IoU 19/21 with GT 0
        [0.0, 0.0, 20.0, 20.0],  # inside, IoU 1
        [30.0, 30.0, 50.0, 50.0],  # crosses the right/bottom border (image 40 x 40)
        [20.0, 20.0, 40.0, 40.0],  # inside, IoU 1 with GT 1, touching the border
        [5.0, 25.0, 15.0, 35.0],  # inside, no overlap
    ])
    inside = torch.tensor([_inside(a, (40, 40)) for a in anchors.tolist()])
    assert inside.tolist() == [False, True, False, True, True]
    on = anchor_targets(anchors, inside, gt, RPNSettings(ignore_cross_boundary=True))
    off = anchor_targets(anchors, inside, gt, RPNSettings(ignore_cross_boundary=False))
    assert on.labels.tolist() == [-1, 1, -1, 1, 0]
    assert off.labels.tolist() == [1, 1, 0, 1, 0]
    # max_iou reports the real IoU, whether or not the anchor was usable
    assert on.max_iou[0].item() == pytest.approx(19 / 21)
    # an outside anchor is never drawn
    assert not set(on.sampled_positive.tolist() + on.sampled_negative.tolist()) & {0, 2}


def _gt_with_no_usable_overlap() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 300 x 300 image, 256-px square anchors every 16 px: the inside anchors (centres 128, 144, 160) reach
    x, y <= 288, so a GT box in the right-hand strip [292, 300] overlaps only border-crossing anchors."""
    anchors = make_anchors([(256.0,)], (1.0,), [(19, 19)], [16], (300, 300))
    gt = torch.tensor([[0.0, 0.0, 100.0, 100.0], [292.0, 100.0, 300.0, 120.0]])
    return anchors.boxes, anchors.inside, gt, gt[:1]


def test_gt_with_no_usable_overlap_alone_leaves_labels_as_reference() -> None:
    anchors, inside, _, gt_one = _gt_with_no_usable_overlap()
    t = anchor_targets(anchors, inside, gt_one, RPNSettings())
    assert t.labels.tolist() == _brute_labels(anchors, inside, gt_one, RPNSettings())


@pytest.mark.parametrize("bg", [0.3, 0.0])
def test_gt_with_no_usable_overlap_does_not_change_other_labels(bg: float) -> None:
    anchors, inside, gt, gt_one = _gt_with_no_usable_overlap()
    settings = RPNSettings(bg_iou_thresh=bg)
    q = _quality(anchors.tolist(), inside.tolist(), gt.tolist(), settings)
    assert max(q[1]) == 0 and max(q[0]) > 0  # the case is what it says
    both = anchor_targets(anchors, inside, gt, settings).labels
    alone = anchor_targets(anchors, inside, gt_one, settings).labels
    # a GT box that no usable anchor touches cannot change any anchor's label
    assert both.tolist() == alone.tolist() == _brute_labels(anchors, inside, gt, settings)


def _count_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A dense grid with many positives (small anchors on several GT boxes) and many negatives."""
    anchors = make_anchors([(16.0, 24.0)], (0.5, 1.0, 2.0), [(16, 16)], [4], (64, 64))
    gt = torch.tensor([[4.0, 4.0, 24.0, 20.0], [30.0, 30.0, 50.0, 54.0], [40.0, 2.0, 60.0, 18.0]])
    return anchors.boxes, anchors.inside, gt


@pytest.mark.parametrize(("batch", "fraction"), [(256, 0.5), (32, 0.5), (16, 0.25), (8, 1.0), (10, 0.0)])
def test_minibatch_sizes_and_labels(batch: int, fraction: float) -> None:
    anchors, inside, gt = _count_case()
    t = anchor_targets(anchors, inside, gt, RPNSettings(batch_size_per_image=batch, positive_fraction=fraction))
    num_pos_avail = int((t.labels == 1).sum())
    num_neg_avail = int((t.labels == 0).sum())
    assert num_pos_avail >= 5 and num_neg_avail > 300
    pos, neg = t.sampled_positive.tolist(), t.sampled_negative.tolist()
    assert len(pos) + len(neg) <= batch
    assert len(pos) <= fraction * batch
    # torchvision's rule: positives up to the fraction, negatives fill the rest
    assert len(pos) == min(num_pos_avail, int(batch * fraction))
    assert len(neg) == min(num_neg_avail, batch - len(pos))
    assert all(t.labels[i] == 1 for i in pos)
    assert all(t.labels[i] == 0 for i in neg)
    assert len(set(pos)) == len(pos) and len(set(neg)) == len(neg)


def test_minibatch_is_repeatable_by_seed_and_leaves_global_rng_alone() -> None:
    anchors, inside, gt = _count_case()

    def draw(seed: int) -> tuple[list[int], list[int]]:
        t = anchor_targets(anchors, inside, gt, RPNSettings(batch_size_per_image=16, sample_seed=seed))
        return sorted(t.sampled_positive.tolist()), sorted(t.sampled_negative.tolist())

    assert draw(3) == draw(3)
    draws = {str(draw(seed)) for seed in range(6)}
    assert len(draws) >= 5  # different seeds generally draw different minibatches
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    draw(7)
    assert torch.equal(torch.rand(3), expected)


def test_regression_targets_by_hand() -> None:
    anchor = [0.0, 0.0, 10.0, 20.0]  # centre (5, 10), w 10, h 20
    box = [2.0, 4.0, 14.0, 28.0]  # centre (8, 16), w 12, h 24
    t = anchor_targets(torch.tensor([anchor]), torch.tensor([True]), torch.tensor([box]),
                       RPNSettings(ignore_cross_boundary=False))
    xa, ya, wa, ha = 5.0, 10.0, 10.0, 20.0
    x, y, w, h = 8.0, 16.0, 12.0, 24.0
    expected = [(x - xa) / wa, (y - ya) / ha, math.log(w / wa), math.log(h / ha)]
    assert expected == pytest.approx([0.3, 0.3, math.log(1.2), math.log(1.2)])
    assert t.regression_targets[0].tolist() == pytest.approx(expected, abs=1e-6)
    assert t.labels.tolist() == [1]  # IoU 200/288 < 0.7 but it is the GT box's best anchor


def test_regression_targets_round_trip() -> None:
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    for seed in range(5):
        anchors, inside, gt = _random_case(seed)
        t: AnchorTargets = anchor_targets(anchors, inside, gt, RPNSettings())
        matched = gt[t.matched_gt]
        assert torch.allclose(coder.decode_single(t.regression_targets, anchors), matched, atol=1e-4)
        assert torch.allclose(decode(anchors, t.regression_targets), matched, atol=1e-4)
        # positives regress to a GT box with which their quality is their best
        for j in torch.where(t.labels == 1)[0].tolist():
            ious = [_iou(g, anchors[j].tolist()) for g in gt.tolist()]
            assert ious[t.matched_gt[j].item()] == pytest.approx(max(ious), abs=1e-6)


@pytest.mark.parametrize("ignore_cross_boundary", [True, False])
def test_empty_gt_all_inside_anchors_negative(ignore_cross_boundary: bool) -> None:
    anchors, inside, _ = _count_case()
    assert 0 < int(inside.sum()) < len(inside)
    settings = RPNSettings(ignore_cross_boundary=ignore_cross_boundary, batch_size_per_image=64)
    t = anchor_targets(anchors, inside, torch.zeros((0, 4)), settings)
    expected = [0 if (ok or not ignore_cross_boundary) else -1 for ok in inside.tolist()]
    assert t.labels.tolist() == expected
    assert torch.all(t.labels[inside] == 0)
    assert t.sampled_positive.numel() == 0
    assert t.sampled_negative.numel() == 64
    assert torch.all(t.labels[t.sampled_negative] == 0)
    assert torch.all(t.max_iou == 0)
    assert torch.all(t.matched_gt == -1)
    assert torch.all(t.regression_targets == 0)
    assert t.best_anchor_per_gt.numel() == 0 and t.best_iou_per_gt.numel() == 0
