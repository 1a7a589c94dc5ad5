"""Losses (paper equation 1, torchvision's normalisation) against hand computations in plain Python,
torchvision's ``RegionProposalNetwork.compute_loss`` and ``fastrcnn_loss``.

Hand formulas: log loss mean over the sampled items; smooth-L1 with beta = 1/9
(0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta) summed over the positives' four coordinates and divided by
the number of sampled items.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork

from frcnn.settings import RPNSettings
from frcnn.stages.anchor_targets import AnchorTargets, anchor_targets
from frcnn.stages.anchors import make_anchors
from frcnn.stages.losses import SMOOTH_L1_BETA, Losses, roi_losses, rpn_losses

BETA = 1 / 9


def _smooth_l1(d: float) -> float:
    return 0.5 * d * d / BETA if abs(d) < BETA else abs(d) - 0.5 * BETA


def _log_loss(logit: float, label: int) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -math.log(p) if label == 1 else -math.log(1 - p)


def _targets(labels, pos, neg, regression) -> AnchorTargets:
    n = len(labels)
    return AnchorTargets(
        labels=torch.tensor(labels), max_iou=torch.zeros(n), matched_gt=torch.zeros(n, dtype=torch.int64),
        regression_targets=torch.tensor(regression), sampled_positive=torch.tensor(pos, dtype=torch.int64),
        sampled_negative=torch.tensor(neg, dtype=torch.int64), best_anchor_per_gt=torch.zeros(0, dtype=torch.int64),
        best_iou_per_gt=torch.zeros(0))


def test_beta_is_one_ninth() -> None:
    assert abs(SMOOTH_L1_BETA - 1 / 9) < 1e-12


def test_rpn_losses_by_hand() -> None:
    labels = [1, 0, -1, 1, 0, 0]
    pos, neg = [0, 3], [1, 4]  # anchor 5 is negative but not in the minibatch: it must not count
    regression = [[0.1, -0.2, 0.3, 0.0], [0.0] * 4, [0.0] * 4, [-0.5, 0.05, 0.2, 1.0], [0.0] * 4, [9.0] * 4]
    logits = [2.0, -1.0, 5.0, 0.5, 1.5, 3.0]
    deltas = [[0.15, -0.2, 0.0, 0.02], [1.0] * 4, [1.0] * 4, [-0.45, 0.0, 0.9, -1.0], [2.0] * 4, [0.0] * 4]
    objectness = torch.tensor(logits, requires_grad=True)
    deltas_t = torch.tensor(deltas, requires_grad=True)
    obj_loss, box_loss = rpn_losses(objectness, deltas_t, _targets(labels, pos, neg, regression))

    sampled = pos + neg
    want_obj = sum(_log_loss(logits[i], labels[i]) for i in sampled) / len(sampled)
    want_box = sum(_smooth_l1(deltas[i][c] - regression[i][c]) for i in pos for c in range(4)) / len(sampled)
    assert obj_loss.item() == pytest.approx(want_obj, rel=1e-6)
    assert box_loss.item() == pytest.approx(want_box, rel=1e-6)
    # both smooth-L1 branches are exercised: |0.05| < 1/9 and |0.7| > 1/9
    assert any(abs(deltas[i][c] - regression[i][c]) < BETA for i in pos for c in range(4))
    assert any(abs(deltas[i][c] - regression[i][c]) > BETA for i in pos for c in range(4))

    (obj_loss + box_loss).backward()
    # only sampled anchors get a classification gradient, only positives a box gradient
    assert [g != 0 for g in objectness.grad.tolist()] == [True, True, False, True, True, False]
    assert [bool(row.abs().sum() > 0) for row in deltas_t.grad] == [True, False, False, True, False, False]


def test_rpn_losses_equal_torchvision_compute_loss() -> None:
    anchors = make_anchors([(16.0, 24.0)], (0.5, 1.0, 2.0), [(16, 16)], [4], (64, 64))
    gt = torch.tensor([[4.0, 4.0, 24.0, 20.0], [30.0, 30.0, 50.0, 54.0]])
    settings = RPNSettings(batch_size_per_image=64, sample_seed=3)
    t = anchor_targets(anchors.boxes, anchors.inside, gt, settings)
    assert t.sampled_positive.numel() > 0
    g = torch.Generator().manual_seed(0)
    objectness = torch.randn(len(anchors.boxes), generator=g)
    deltas = torch.randn(len(anchors.boxes), 4, generator=g) * 0.3
    ours = rpn_losses(objectness, deltas, t)
    # torchvision draws its own minibatch from the global RNG: seed it as the stage does
    rpn = SimpleNamespace(fg_bg_sampler=BalancedPositiveNegativeSampler(64, 0.5))
    torch.manual_seed(settings.sample_seed)
    theirs = RegionProposalNetwork.compute_loss(rpn, objectness, deltas, [t.labels.float()],
                                                [t.regression_targets])
    assert ours[0].item() == pytest.approx(theirs[0].item(), rel=1e-6)
    assert ours[1].item() == pytest.approx(theirs[1].item(), rel=1e-6)


def test_rpn_losses_no_positives() -> None:
    objectness = torch.tensor([0.3, -2.0, 1.0], requires_grad=True)
    deltas = torch.ones(3, 4, requires_grad=True)
    obj_loss, box_loss = rpn_losses(objectness, deltas, _targets([0, 0, -1], [], [0, 1], [[0.0] * 4] * 3))
    assert box_loss.item() == 0.0
    assert obj_loss.item() == pytest.approx((_log_loss(0.3, 0) + _log_loss(-2.0, 0)) / 2, rel=1e-6)


def test_rpn_losses_nothing_sampled_is_zero_without_nan() -> None:
    objectness = torch.tensor([0.3, -2.0, 1.0], requires_grad=True)
    deltas = torch.ones(3, 4, requires_grad=True)
    obj_loss, box_loss = rpn_losses(objectness, deltas, _targets([-1, -1, -1], [], [], [[0.0] * 4] * 3))
    assert obj_loss.item() == 0.0 and box_loss.item() == 0.0
    (obj_loss + box_loss).backward()
    assert torch.all(objectness.grad == 0)
    assert deltas.grad is None or torch.all(deltas.grad == 0)
    # and from real anchor targets with an empty ground truth and every anchor crossing the border
    anchors = make_anchors([(128.0,)], (1.0,), [(2, 2)], [16], (32, 32))
    assert not anchors.inside.any()
    t = anchor_targets(anchors.boxes, anchors.inside, torch.zeros((0, 4)), RPNSettings())
    losses = rpn_losses(torch.zeros(4), torch.zeros(4, 4), t)
    assert [v.item() for v in losses] == [0.0, 0.0]


def _roi_case():
    labels = [2, 0, 1, 0, 3]
    logits = [[0.5, 1.0, 2.0, -1.0], [2.0, 0.0, -1.0, 0.5], [0.0, 3.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0],
              [-0.5, 0.0, 0.2, 1.5]]
    g = torch.Generator().manual_seed(4)
    deltas = (torch.randn(5, 16, generator=g) * 0.4).tolist()
    targets = (torch.randn(5, 4, generator=g) * 0.4).tolist()
    return labels, logits, deltas, targets


def test_roi_losses_by_hand_and_equal_fastrcnn_loss() -> None:
    labels, logits, deltas, targets = _roi_case()
    lt, dt, tt = torch.tensor(logits), torch.tensor(deltas), torch.tensor(targets)
    cls_loss, box_loss = roi_losses(lt, dt, torch.tensor(labels), tt)

    def ce(row, k):
        return -(row[k] - math.log(sum(math.exp(v) for v in row)))

    want_cls = sum(ce(row, k) for row, k in zip(logits, labels, strict=True)) / len(labels)
    want_box = sum(_smooth_l1(deltas[r][4 * k + c] - targets[r][c])
                   for r, k in enumerate(labels) if k > 0 for c in range(4)) / len(labels)
    assert cls_loss.item() == pytest.approx(want_cls, rel=1e-6)
    assert box_loss.item() == pytest.approx(want_box, rel=1e-5)
    ref = fastrcnn_loss(lt, dt, [torch.tensor(labels)], [tt])
    assert cls_loss.item() == pytest.approx(ref[0].item(), rel=1e-6)
    assert box_loss.item() == pytest.approx(ref[1].item(), rel=1e-6)


def test_roi_losses_use_only_the_labelled_class_deltas() -> None:
    labels, logits, deltas, targets = _roi_case()
    dt = torch.tensor(deltas, requires_grad=True)
    _, box_loss = roi_losses(torch.tensor(logits), dt, torch.tensor(labels), torch.tensor(targets))
    box_loss.backward()
    touched = (dt.grad.reshape(5, 4, 4).abs().sum(-1) > 0).tolist()
    assert touched == [[k == lbl and lbl > 0 for k in range(4)] for lbl in labels]


def test_roi_losses_all_background() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    cls_loss, box_loss = roi_losses(logits, torch.ones(2, 8), torch.tensor([0, 0]), torch.ones(2, 4))
    assert box_loss.item() == 0.0
    want = (-(2 - math.log(math.exp(2) + 1)) - (0 - math.log(1 + math.e))) / 2
    assert cls_loss.item() == pytest.approx(want, rel=1e-6)


def test_roi_losses_nothing_sampled_is_zero_without_nan() -> None:
    logits = torch.zeros((0, 4), requires_grad=True)
    deltas = torch.zeros((0, 16), requires_grad=True)
    cls_loss, box_loss = roi_losses(logits, deltas, torch.zeros(0, dtype=torch.int64), torch.zeros((0, 4)))
    assert cls_loss.item() == 0.0 and box_loss.item() == 0.0
    assert not torch.isnan(cls_loss) and not torch.isnan(box_loss)
    (cls_loss + box_loss).backward()
    assert logits.grad is not None and logits.grad.numel() == 0


def test_losses_total_and_dict() -> None:
    full = Losses(torch.tensor(1.0), torch.tensor(0.5), torch.tensor(0.25), torch.tensor(0.125))
    assert full.total.item() == 1.875
    assert full.as_dict() == {"rpn_objectness": 1.0, "rpn_box": 0.5, "roi_classifier": 0.25, "roi_box": 0.125,
                              "total": 1.875}
    rpn_only = Losses(torch.tensor(1.0), torch.tensor(0.5), None, None)
    assert rpn_only.total.item() == 1.5
    assert rpn_only.as_dict()["roi_box"] is None
