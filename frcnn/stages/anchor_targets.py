"""Anchor targets: which anchors the RPN learns to call object, background or nothing (paper 3.1.2).

An anchor is positive (1) if its IoU with some ground-truth box is >= ``fg_iou_thresh`` or, with the
low-quality rule, if it is (one of) the best anchor(s) of a ground-truth box: every anchor tied at the box's best
IoU, as torchvision's Matcher does (``ties_per_gt`` counts them: on a regular grid whole rows of anchors tie, e.g.
243 anchors at IoU 0.446 for the flag of the astronaut photo with the shipped default model); negative (0) if its IoU
with every ground-truth box is < ``bg_iou_thresh``; otherwise ignored (-1). With ``ignore_cross_boundary``
(the paper, in training) anchors that cross the image border are ignored and never matched. A minibatch
of ``batch_size_per_image`` anchors, at most ``positive_fraction`` positive, is drawn for the loss.

Regression targets, with (x, y, w, h) the centre and size of the matched box and (xa, ya, wa, ha) the
anchor's: tx = (x - xa) / wa, ty = (y - ya) / ha, tw = log(w / wa), th = log(h / ha).

Built on torchvision: ``box_iou`` (in chunks of GT boxes, :mod:`frcnn.stages._iou`), ``Matcher`` (its sentinels
``BELOW_LOW_THRESHOLD = -1`` and ``BETWEEN_THRESHOLDS = -2``), ``BalancedPositiveNegativeSampler`` and ``BoxCoder``.

Shapes: A anchors, G ground-truth boxes. Boxes are (x1, y1, x2, y2) in network-input pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder, Matcher

from frcnn.settings import RPNSettings
from frcnn.stages._iou import iou_chunks
from frcnn.stages._minibatch import sample_minibatch
from frcnn.stages.params import AnchorTargetParams

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
    # the low-quality rule makes every anchor tied at a box's best quality positive, not one "best anchor":
    ties_per_gt: Tensor | None = None  # (G,) int64 anchors tied at the box's best quality (0: no usable anchor)
    best_of_gt: Tensor | None = None  # (A,) int64 the first GT box whose (tied) best anchor this is, -1 if none


POSITIVE_BY_IOU, POSITIVE_AS_BEST = 1, 2  # which rule made a positive (``positive_rule``); 0: not positive


def positive_rule(targets: AnchorTargets, fg_iou_thresh: float) -> Tensor:
    """(A,) int64: :data:`POSITIVE_BY_IOU` for a positive whose IoU reaches ``fg_iou_thresh`` (the Matcher's
    ``>= high_threshold``), :data:`POSITIVE_AS_BEST` for one that is positive only as (one of the tied) best
    anchor(s) of a GT box, 0 for the others. A positive is never cross-boundary-ignored, so its best usable
    quality is its ``max_iou``."""
    positive = targets.labels == POSITIVE
    by_iou = positive & (targets.max_iou >= fg_iou_thresh)
    rule = torch.zeros_like(targets.labels)
    rule[by_iou] = POSITIVE_BY_IOU
    rule[positive & ~by_iou] = POSITIVE_AS_BEST
    return rule


@dataclass(frozen=True)
class _Matches:
    matched: Tensor  # (A,) gt index, or BELOW_LOW_THRESHOLD / BETWEEN_THRESHOLDS
    max_iou: Tensor  # (A,) best IoU with any GT box
    matched_gt: Tensor  # (A,) its index
    best_iou_per_gt: Tensor  # (G,) best quality (IoU, 0 for unusable anchors) of each GT box
    best_anchor_per_gt: Tensor  # (G,)
    ties_per_gt: Tensor  # (G,) anchors at that best quality (0 for a box with no usable anchor)
    best_of_gt: Tensor  # (A,) first GT box whose best-quality tie holds the anchor, -1 if none


def _match(anchors: Tensor, inside: Tensor, gt_boxes: Tensor, settings: AnchorTargetParams) -> _Matches:
    """torchvision's Matcher, over the (G, A) IoUs computed a chunk of GT boxes at a time (memory bounded at
    any G: the matrix itself is never held).

    The matcher's rule needs, per anchor, the best quality over the GT boxes and its index, and per GT box its
    best quality (the low-quality rule makes every anchor that reaches it positive); both reduce chunk by
    chunk. Quality is the IoU, zero for anchors that cross the border when those are ignored. A GT box with
    best quality 0 (it overlaps no usable anchor) is left out: under the low-quality rule every anchor would
    tie as its "best" and turn positive. The thresholds are torchvision's own ``Matcher`` on the reduced
    (1, A) row of best qualities.
    """
    num_anchors, device = anchors.shape[0], anchors.device
    mask = inside.to(anchors.dtype) if settings.ignore_cross_boundary else None
    q_best = anchors.new_full((num_anchors,), -1.0)  # over usable GT boxes only
    q_index = torch.zeros(num_anchors, dtype=torch.int64, device=device)
    iou_best = anchors.new_full((num_anchors,), -1.0)
    iou_index = torch.zeros(num_anchors, dtype=torch.int64, device=device)
    is_best = torch.zeros(num_anchors, dtype=torch.bool, device=device)  # the best anchor of some GT box
    # written in place: small tensors kept between the chunks' large ones would pin the heap (RSS grew by a
    # chunk per chunk when they were appended to a list)
    best_iou_per_gt = anchors.new_zeros(len(gt_boxes))  # (G,)
    best_anchor_per_gt = torch.zeros(len(gt_boxes), dtype=torch.int64, device=device)
    ties_per_gt = torch.zeros(len(gt_boxes), dtype=torch.int64, device=device)
    best_of_gt = torch.full((num_anchors,), -1, dtype=torch.int64, device=device)
    for start, iou in iou_chunks(gt_boxes, anchors):  # (g, A)
        quality = iou * mask if mask is not None else iou
        row_best, row_index = quality.max(dim=1)  # (g,)
        best_iou_per_gt[start:start + len(row_best)] = row_best
        best_anchor_per_gt[start:start + len(row_best)] = row_index
        usable = row_best > 0  # (g,)
        tied = (quality == row_best[:, None]) & usable[:, None]  # (g, A): the Matcher's low-quality rule
        ties_per_gt[start:start + len(row_best)] = tied.sum(dim=1)
        first = tied.to(torch.uint8).argmax(dim=0) + start  # (A,) the first tied box of the chunk
        any_tied = tied.any(dim=0)  # (A,)
        best_of_gt = torch.where((best_of_gt < 0) & any_tied, first, best_of_gt)
        is_best |= any_tied
        value, at = torch.where(usable[:, None], quality, -1.0).max(dim=0)  # (A,)
        better = value > q_best
        q_best, q_index = torch.where(better, value, q_best), torch.where(better, at + start, q_index)
        value, at = iou.max(dim=0)
        better = value > iou_best
        iou_best, iou_index = torch.where(better, value, iou_best), torch.where(better, at + start, iou_index)
    if not bool((best_iou_per_gt > 0).any()):
        matched = torch.full((num_anchors,), Matcher.BELOW_LOW_THRESHOLD, dtype=torch.int64, device=device)
    else:
        thresholds = Matcher(settings.fg_iou_thresh, settings.bg_iou_thresh, allow_low_quality_matches=False)
        matched = thresholds(q_best[None])  # (A,) 0, or a sentinel
        matched = torch.where(matched >= 0, q_index, matched)
        if settings.allow_low_quality_matches:
            matched = torch.where(is_best, q_index, matched)
    return _Matches(matched, iou_best, iou_index, best_iou_per_gt, best_anchor_per_gt, ties_per_gt, best_of_gt)


def anchor_targets(anchors: Tensor, inside: Tensor, gt_boxes: Tensor,
                   params: AnchorTargetParams | RPNSettings) -> AnchorTargets:
    """Label anchors against ground truth and draw the RPN minibatch.

    Args:
        anchors: Tensor[A, 4]; inside: Tensor[A] bool; gt_boxes: Tensor[G, 4]; params: the stage's record
        (or the ``rpn`` section it is picked from).
    """
    settings = AnchorTargetParams.coerce(params)
    num_anchors, device = anchors.shape[0], anchors.device
    if gt_boxes.numel() == 0:
        labels = torch.full((num_anchors,), NEGATIVE, dtype=torch.int64, device=device)
        if settings.ignore_cross_boundary:
            labels[~inside] = IGNORED
        pos, neg = sample_minibatch(labels, settings.batch_size_per_image, settings.positive_fraction,
                                    settings.sample_seed)
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return AnchorTargets(labels, anchors.new_zeros(num_anchors), torch.full_like(labels, -1),
                             anchors.new_zeros(num_anchors, 4), pos, neg, empty, anchors.new_zeros(0), empty,
                             torch.full_like(labels, -1))

    m = _match(anchors, inside, gt_boxes, settings)
    matched, max_iou, matched_gt = m.matched, m.max_iou, m.matched_gt
    labels = torch.full((num_anchors,), IGNORED, dtype=torch.int64, device=device)
    labels[matched >= 0] = POSITIVE
    labels[matched == Matcher.BELOW_LOW_THRESHOLD] = NEGATIVE
    if settings.ignore_cross_boundary:
        labels[~inside] = IGNORED

    coder = BoxCoder(RPN_BOX_WEIGHTS)
    target_index = torch.where(matched >= 0, matched, matched_gt)  # the box each anchor regresses to
    regression_targets = coder.encode_single(gt_boxes[target_index], anchors)  # (A, 4)
    pos, neg = sample_minibatch(labels, settings.batch_size_per_image, settings.positive_fraction,
                                settings.sample_seed)
    return AnchorTargets(labels, max_iou, target_index, regression_targets, pos, neg,
                         m.best_anchor_per_gt, m.best_iou_per_gt, m.ties_per_gt, m.best_of_gt)
