"""Anchor targets: which anchors the RPN learns to call object, background or nothing (paper 3.1.2).

An anchor is positive (1) if its IoU with some ground-truth box is >= ``fg_iou_thresh`` or, with the
low-quality rule, if it is (one of) the best anchor(s) of a ground-truth box; negative (0) if its IoU
with every ground-truth box is < ``bg_iou_thresh``; otherwise ignored (-1). With ``ignore_cross_boundary``
(the paper, in training) anchors that cross the image border are ignored and never matched. A minibatch
of ``batch_size_per_image`` anchors, at most ``positive_fraction`` positive, is drawn for the loss.

Regression targets, with (x, y, w, h) the centre and size of the matched box and (xa, ya, wa, ha) the
anchor's: tx = (x - xa) / wa, ty = (y - ya) / ha, tw = log(w / wa), th = log(h / ha).

Built on torchvision: ``box_iou``, ``Matcher`` (its sentinels ``BELOW_LOW_THRESHOLD = -1`` and
``BETWEEN_THRESHOLDS = -2``), ``BalancedPositiveNegativeSampler`` and ``BoxCoder``.

Shapes: A anchors, G ground-truth boxes. Boxes are (x1, y1, x2, y2) in network-input pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.ops import box_iou

from frcnn.settings import RPNSettings
from frcnn.stages._minibatch import sample_minibatch

POSITIVE, NEGATIVE, IGNORED = 1, 0, -1
RPN_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)  # the paper's (tx, ty, tw, th) unscaled


@dataclass(frozen=True)
class AnchorTargets:
    labels: Tensor  # (A,) int64: 1 positive, 0 negative, -1 ignored
    max_iou: Tensor  # (A,) best IoU with any GT box (0 when G = 0)
    matched_gt: Tensor  # (A,) int64 index of that GT box, -1 when G = 0
    regression_targets: Tensor  # (A, 4) tx, ty, tw, th against matched_gt (0 when G = 0)
    sampled_positive: Tensor  # (P,) int64 anchor indices in the minibatch
    sampled_negative: Tensor  # (Q,) int64
    best_anchor_per_gt: Tensor  # (G,) int64 anchor index with the highest IoU
    best_iou_per_gt: Tensor  # (G,)


def _match(quality: Tensor, settings: RPNSettings) -> Tensor:
    """torchvision's Matcher over the GT boxes that overlap some usable anchor.

    A GT box with best quality 0 (it overlaps no usable anchor) is left out: under the low-quality rule
    every anchor would tie as its "best" and turn positive.
    """
    matcher = Matcher(settings.fg_iou_thresh, settings.bg_iou_thresh,
                      allow_low_quality_matches=settings.allow_low_quality_matches)
    usable = torch.where(quality.max(dim=1).values > 0)[0]  # (G',)
    if usable.numel() == 0:
        return torch.full((quality.shape[1],), Matcher.BELOW_LOW_THRESHOLD, dtype=torch.int64,
                          device=quality.device)
    matched = matcher(quality[usable])  # (A,) indices into usable, or a sentinel
    return torch.where(matched >= 0, usable[matched.clamp(min=0)], matched)


def anchor_targets(anchors: Tensor, inside: Tensor, gt_boxes: Tensor, settings: RPNSettings) -> AnchorTargets:
    """Label anchors against ground truth and draw the RPN minibatch.

    Args:
        anchors: Tensor[A, 4]; inside: Tensor[A] bool; gt_boxes: Tensor[G, 4].
    """
    num_anchors, device = anchors.shape[0], anchors.device
    if gt_boxes.numel() == 0:
        labels = torch.full((num_anchors,), NEGATIVE, dtype=torch.int64, device=device)
        if settings.ignore_cross_boundary:
            labels[~inside] = IGNORED
        pos, neg = sample_minibatch(labels, settings.batch_size_per_image, settings.positive_fraction,
                                    settings.sample_seed)
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return AnchorTargets(labels, anchors.new_zeros(num_anchors), torch.full_like(labels, -1),
                             anchors.new_zeros(num_anchors, 4), pos, neg, empty, anchors.new_zeros(0))

    iou = box_iou(gt_boxes, anchors)  # (G, A)
    quality = iou * inside.to(iou.dtype) if settings.ignore_cross_boundary else iou
    matched = _match(quality, settings)  # (A,) gt index, or BELOW_LOW_THRESHOLD / BETWEEN_THRESHOLDS
    labels = torch.full((num_anchors,), IGNORED, dtype=torch.int64, device=device)
    labels[matched >= 0] = POSITIVE
    labels[matched == Matcher.BELOW_LOW_THRESHOLD] = NEGATIVE
    if settings.ignore_cross_boundary:
        labels[~inside] = IGNORED

    max_iou, matched_gt = iou.max(dim=0)  # (A,), (A,)
    best_iou_per_gt, best_anchor_per_gt = quality.max(dim=1)  # (G,), (G,)
    coder = BoxCoder(RPN_BOX_WEIGHTS)
    target_index = torch.where(matched >= 0, matched, matched_gt)  # the box each anchor regresses to
    regression_targets = coder.encode_single(gt_boxes[target_index], anchors)  # (A, 4)
    pos, neg = sample_minibatch(labels, settings.batch_size_per_image, settings.positive_fraction,
                                settings.sample_seed)
    return AnchorTargets(labels, max_iou, target_index, regression_targets, pos, neg,
                         best_anchor_per_gt, best_iou_per_gt)
