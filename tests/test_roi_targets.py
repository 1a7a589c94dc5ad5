"""RoI targets (Fast R-CNN 2.3 as used by Faster R-CNN) against a brute-force IoU and labelling written here.

Reference: candidates are the proposals followed by the GT boxes; a candidate whose best IoU is
>= fg_iou_thresh takes that GT box's class, one in [bg_iou_thresh_lo, bg_iou_thresh_hi) is background (0),
anything else is ignored (-1). Regression targets (10 tx, 10 ty, 5 tw, 5 th).
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from frcnn.settings import TORCHVISION_COCO, RoISettings
from frcnn.stages.roi_targets import roi_targets


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _random_case(seed: int, num_proposals: int = 80):
    """1-4 GT boxes with classes 1..5, and proposals: jittered GT boxes (high IoU) and random boxes."""
    rng = random.Random(seed)
    gt = []
    for _ in range(rng.randint(1, 4)):
        x1, y1 = rng.uniform(0, 80), rng.uniform(0, 80)
        gt.append([x1, y1, x1 + rng.uniform(10, 40), y1 + rng.uniform(10, 40)])
    proposals = []
    for _ in range(num_proposals):
        if rng.random() < 0.6:
            g = rng.choice(gt)
            j = rng.uniform(0.5, 12)
            p = [c + rng.uniform(-j, j) for c in g]
            p[2], p[3] = max(p[2], p[0] + 2), max(p[3], p[1] + 2)
        else:
            x1, y1 = rng.uniform(0, 100), rng.uniform(0, 100)
            p = [x1, y1, x1 + rng.uniform(4, 40), y1 + rng.uniform(4, 40)]
        proposals.append(p)
    labels = [rng.randint(1, 5) for _ in gt]
    return (torch.tensor(proposals, dtype=torch.float32), torch.tensor(gt, dtype=torch.float32),
            torch.tensor(labels, dtype=torch.int64))


def _brute(candidates: list, gt: list, gt_labels: list, s: RoISettings) -> tuple[list[int], list[float], list[int]]:
    labels, ious, matched = [], [], []
    for c in candidates:
        row = [_iou(g, c) for g in gt]
        best = max(row)
        g = row.index(best)
        if best >= s.fg_iou_thresh:
            labels.append(gt_labels[g])
        elif s.bg_iou_thresh_lo <= best < s.bg_iou_thresh_hi:
            labels.append(0)
        else:
            labels.append(-1)
        ious.append(best)
        matched.append(g)
    return labels, ious, matched


def _encode(box, roi, weights=(10.0, 10.0, 5.0, 5.0)) -> list[float]:
    xa, ya = (roi[0] + roi[2]) / 2, (roi[1] + roi[3]) / 2
    wa, ha = roi[2] - roi[0], roi[3] - roi[1]
    x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    w, h = box[2] - box[0], box[3] - box[1]
    wx, wy, ww, wh = weights
    return [wx * (x - xa) / wa, wy * (y - ya) / ha, ww * math.log(w / wa), wh * math.log(h / ha)]


SETTINGS = [
    RoISettings(),
    TORCHVISION_COCO.roi,
    RoISettings(fg_iou_thresh=0.6, bg_iou_thresh_hi=0.4, bg_iou_thresh_lo=0.2),
    RoISettings(batch_size_per_image=16, positive_fraction=0.5),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_candidate_labels_equal_brute_force(settings: RoISettings) -> None:
    seen = set()
    for seed in range(15):
        proposals, gt, gt_labels = _random_case(seed)
        t = roi_targets(proposals, gt, gt_labels, settings)
        candidates = proposals.tolist() + gt.tolist()
        labels, ious, matched = _brute(candidates, gt.tolist(), gt_labels.tolist(), settings)
        assert t.candidate_boxes.tolist() == candidates
        assert t.candidate_labels.tolist() == labels, seed
        assert t.candidate_ious.tolist() == pytest.approx(ious, abs=1e-6)
        seen |= {0 if v == 0 else (-1 if v < 0 else 1) for v in labels}
        # the sampled RoIs carry their candidate's label, IoU and matched GT box
        assert torch.equal(t.boxes, t.candidate_boxes[t.sampled])
        assert t.labels.tolist() == [labels[i] for i in t.sampled.tolist()]
        assert t.ious.tolist() == pytest.approx([ious[i] for i in t.sampled.tolist()], abs=1e-6)
        assert t.matched_gt.tolist() == [matched[i] for i in t.sampled.tolist()]
    expected = {-1, 0, 1} if settings.bg_iou_thresh_lo > 0 or settings.fg_iou_thresh > settings.bg_iou_thresh_hi \
        else {0, 1}
    assert seen == expected


def test_hand_made_labels() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    proposals = torch.tensor([
        [0.0, 0.0, 10.0, 10.5],  # IoU 0.952: foreground
        [0.0, 0.0, 10.0, 20.0],  # IoU 0.5 exactly: foreground (>=)
        [0.0, 0.0, 10.0, 25.0],  # IoU 0.4: background
        [5.0, 0.0, 15.0, 10.0],  # IoU 1/3: background
        [0.0, 0.0, 10.0, 200.0],  # IoU 0.05: below bg_iou_thresh_lo, ignored
        [50.0, 50.0, 60.0, 60.0],  # IoU 0: ignored
    ])
    t = roi_targets(proposals, gt, torch.tensor([3]), RoISettings())
    assert t.candidate_ious.tolist() == pytest.approx([10 / 10.5, 0.5, 0.4, 1 / 3, 0.05, 0.0, 1.0])
    assert t.candidate_labels.tolist() == [3, 3, 0, 0, -1, -1, 3]
    assert t.candidate_is_gt.tolist() == [False] * 6 + [True]
    # torchvision's COCO setting (lo = 0) makes the no-overlap proposals background
    t = roi_targets(proposals, gt, torch.tensor([3]), TORCHVISION_COCO.roi)
    assert t.candidate_labels.tolist() == [3, 3, 0, 0, 0, 0, 3]


def test_gt_boxes_are_appended_as_foreground_with_iou_one() -> None:
    for seed in range(10):
        proposals, gt, gt_labels = _random_case(seed)
        t = roi_targets(proposals, gt, gt_labels, RoISettings())
        n, g = len(proposals), len(gt)
        assert t.candidate_is_gt.tolist() == [False] * n + [True] * g
        assert torch.equal(t.candidate_boxes[n:], gt)
        assert t.candidate_ious[n:].tolist() == pytest.approx([1.0] * g)
        assert t.candidate_labels[n:].tolist() == gt_labels.tolist()
    # even with no proposals at all, the GT boxes alone give foreground RoIs
    t = roi_targets(torch.zeros((0, 4)), gt, gt_labels, RoISettings())
    assert t.labels.tolist() == gt_labels.tolist()
    assert torch.allclose(t.regression_targets, torch.zeros(len(gt), 4), atol=1e-5)


@pytest.mark.parametrize(("batch", "fraction"), [(128, 0.25), (16, 0.25), (16, 0.5), (8, 1.0), (10, 0.0), (500, 0.25)])
def test_minibatch_sizes_and_foreground_fraction(batch: int, fraction: float) -> None:
    proposals, gt, gt_labels = _random_case(3, num_proposals=300)
    t = roi_targets(proposals, gt, gt_labels, RoISettings(batch_size_per_image=batch, positive_fraction=fraction))
    num_fg_avail = int((t.candidate_labels >= 1).sum())
    num_bg_avail = int((t.candidate_labels == 0).sum())
    assert num_fg_avail >= 8 and num_bg_avail >= 16
    num_fg = int((t.labels >= 1).sum())
    assert len(t.sampled) <= batch
    assert num_fg <= fraction * batch
    assert num_fg == min(num_fg_avail, int(batch * fraction))
    assert len(t.sampled) - num_fg == min(num_bg_avail, batch - num_fg)
    assert torch.all(t.labels[:num_fg] >= 1) and torch.all(t.labels[num_fg:] == 0)  # foreground first
    assert len(set(t.sampled.tolist())) == len(t.sampled)
    assert torch.all(t.candidate_labels[t.sampled] >= 0)  # ignored candidates are never drawn


def test_minibatch_repeatable_by_seed() -> None:
    proposals, gt, gt_labels = _random_case(4, num_proposals=300)

    def draw(seed: int) -> list[int]:
        settings = RoISettings(batch_size_per_image=16, sample_seed=seed)
        return sorted(roi_targets(proposals, gt, gt_labels, settings).sampled.tolist())

    assert draw(1) == draw(1)
    assert len({str(draw(s)) for s in range(6)}) >= 5


def test_regression_targets_equal_hand_formula() -> None:
    for seed in range(5):
        proposals, gt, gt_labels = _random_case(seed)
        t = roi_targets(proposals, gt, gt_labels, RoISettings())
        g = gt.tolist()
        for roi, m, target in zip(t.boxes.tolist(), t.matched_gt.tolist(), t.regression_targets.tolist(),
                                  strict=True):
            assert target == pytest.approx(_encode(g[m], roi), abs=1e-4)


def test_regression_target_one_pair_by_hand() -> None:
    roi = [0.0, 0.0, 10.0, 20.0]  # centre (5, 10), 10 x 20
    box = [2.0, 4.0, 14.0, 28.0]  # centre (8, 16), 12 x 24
    t = roi_targets(torch.tensor([roi]), torch.tensor([box]), torch.tensor([1]),
                    RoISettings(batch_size_per_image=4, positive_fraction=1.0))
    # IoU 200/288 >= 0.5: the proposal is foreground; the GT box itself is the other sample
    assert t.sampled.tolist() == [0, 1] or t.sampled.tolist() == [1, 0]
    row = t.sampled.tolist().index(0)
    expected = [10 * 0.3, 10 * 0.3, 5 * math.log(1.2), 5 * math.log(1.2)]
    assert t.regression_targets[row].tolist() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("settings", [RoISettings(), RoISettings(batch_size_per_image=16)])
def test_empty_gt_every_candidate_background(settings: RoISettings) -> None:
    proposals, _, _ = _random_case(0)
    t = roi_targets(proposals, torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64), settings)
    assert torch.equal(t.candidate_boxes, proposals)
    assert not t.candidate_is_gt.any()
    assert t.candidate_labels.tolist() == [0] * len(proposals)
    assert torch.all(t.candidate_ious == 0)
    assert len(t.sampled) == min(len(proposals), settings.batch_size_per_image)
    assert torch.all(t.labels == 0)
    assert torch.all(t.matched_gt == -1)
    assert torch.all(t.regression_targets == 0)
    assert t.regression_targets.shape == (len(t.sampled), 4)
