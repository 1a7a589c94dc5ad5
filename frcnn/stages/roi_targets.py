"""RoI targets: the foreground and background RoIs the Fast R-CNN head learns from (paper 3.1.3 via
Fast R-CNN 2.3).

Ground-truth boxes are appended to the proposals (torchvision's ``add_gt_proposals``). A candidate with
IoU >= ``fg_iou_thresh`` with some GT box is foreground and takes that box's class; IoU in
[``bg_iou_thresh_lo``, ``bg_iou_thresh_hi``) is background (class 0); anything else is ignored (-1).
With no ground truth every candidate is background. A minibatch of ``batch_size_per_image`` RoIs, at most
``positive_fraction`` foreground, is drawn. Regression targets use torchvision's weights (10, 10, 5, 5):
(10 tx, 10 ty, 5 tw, 5 th).

Shapes: P proposals, G GT boxes, C = P + G candidates, R sampled RoIs. Boxes (x1, y1, x2, y2) in
network-input pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder, Matcher

from frcnn.settings import RoISettings
from frcnn.stages._iou import best_row_per_column
from frcnn.stages._minibatch import sample_minibatch
from frcnn.stages.params import RoITargetParams

ROI_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # torchvision's Fast R-CNN target scaling
IGNORED = -1


@dataclass(frozen=True)
class RoITargets:
    boxes: Tensor  # (R, 4) sampled RoIs, foreground first
    labels: Tensor  # (R,) int64 class, 0 = background
    ious: Tensor  # (R,) IoU with the matched GT box
    matched_gt: Tensor  # (R,) int64 GT index (-1 when G = 0)
    regression_targets: Tensor  # (R, 4)
    sampled: Tensor  # (R,) int64 indices into the candidates
    candidate_boxes: Tensor  # (C, 4) proposals then GT boxes
    candidate_labels: Tensor  # (C,) int64 class, 0 background, -1 ignored
    candidate_ious: Tensor  # (C,)
    candidate_is_gt: Tensor  # (C,) bool


def roi_targets(proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
                params: RoITargetParams | RoISettings) -> RoITargets:
    """Args: proposals (P, 4); gt_boxes (G, 4); gt_labels (G,) int64 classes >= 1; params: the stage's record
    (or the ``roi`` section it is picked from)."""
    settings = RoITargetParams.coerce(params)
    device = proposals.device
    candidates = torch.cat([proposals.detach(), gt_boxes.to(proposals.dtype)])  # (C, 4)
    is_gt = torch.zeros(len(candidates), dtype=torch.bool, device=device)
    is_gt[len(proposals):] = True
    if gt_boxes.numel() == 0:
        labels = torch.zeros(len(candidates), dtype=torch.int64, device=device)
        ious = candidates.new_zeros(len(candidates))
        matched = torch.full_like(labels, -1)
    else:
        ious, best = best_row_per_column(gt_boxes.to(candidates.dtype), candidates)  # (C,), (C,) in chunks
        matcher = Matcher(settings.fg_iou_thresh, settings.bg_iou_thresh_hi, allow_low_quality_matches=False)
        matched_raw = matcher(ious[None])  # (C,): without low-quality matches it reads only each column's best
        labels = gt_labels.to(device)[best].clone()
        labels[matched_raw == Matcher.BELOW_LOW_THRESHOLD] = 0
        labels[matched_raw == Matcher.BETWEEN_THRESHOLDS] = IGNORED
        labels[ious < settings.bg_iou_thresh_lo] = IGNORED
        matched = best
    pos, neg = sample_minibatch(labels, settings.batch_size_per_image, settings.positive_fraction,
                                settings.sample_seed)
    sampled = torch.cat([pos, neg])  # (R,)
    rois = candidates[sampled]
    if gt_boxes.numel() == 0:
        targets = rois.new_zeros(len(rois), 4)
    else:
        targets = BoxCoder(ROI_BOX_WEIGHTS).encode_single(gt_boxes.to(rois.dtype)[matched[sampled]], rois)
    return RoITargets(rois, labels[sampled], ious[sampled], matched[sampled], targets, sampled,
                      candidates, labels, ious, is_gt)
