"""Losses: the multi-task loss of the RPN and of the Fast R-CNN head (paper equation 1).

L = 1/N_cls sum_i L_cls(p_i, p_i*) + lambda 1/N_reg sum_i p_i* L_reg(t_i, t_i*), with L_cls the log loss
and L_reg the smooth-L1 loss. With torchvision's normalisation (box loss summed over positives and divided
by the minibatch size, smooth-L1 beta = 1/9) lambda = 1 plays the paper's lambda = 10 with N_reg ~ 2400.
The RoI head's terms are torchvision's ``fastrcnn_loss``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import fastrcnn_loss

from frcnn.stages.anchor_targets import AnchorTargets
from frcnn.stages.box_head import BoxHeadOutput
from frcnn.stages.roi_targets import RoITargets

SMOOTH_L1_BETA = 1.0 / 9.0


@dataclass(frozen=True)
class Losses:
    rpn_objectness: Tensor  # scalar
    rpn_box: Tensor
    roi_classifier: Tensor | None  # None when the GT classes are not the model's
    roi_box: Tensor | None

    @property
    def total(self) -> Tensor:
        return sum(t for t in (getattr(self, k) for k in TERMS) if t is not None)

    def as_dict(self) -> dict[str, float | None]:
        terms = {**{k: getattr(self, k) for k in TERMS}, "total": self.total}
        return {k: None if v is None else float(v) for k, v in terms.items()}


TERMS: tuple[str, ...] = tuple(f.name for f in fields(Losses))  # the one list of the loss terms' names, in order


def rpn_losses(objectness: Tensor, deltas: Tensor, targets: AnchorTargets) -> tuple[Tensor, Tensor]:
    """Args: objectness (A,) logits; deltas (A, 4). Uses the targets' sampled minibatch."""
    pos, neg = targets.sampled_positive, targets.sampled_negative
    sampled = torch.cat([pos, neg])
    if sampled.numel() == 0:
        zero = objectness.sum() * 0
        return zero, zero
    box_loss = F.smooth_l1_loss(deltas[pos], targets.regression_targets[pos], beta=SMOOTH_L1_BETA,
                                reduction="sum") / sampled.numel()
    labels = (targets.labels[sampled] == 1).to(objectness.dtype)
    objectness_loss = F.binary_cross_entropy_with_logits(objectness[sampled], labels)
    return objectness_loss, box_loss


def roi_losses(
    class_logits: Tensor, box_deltas: Tensor, labels: Tensor, regression_targets: Tensor
) -> tuple[Tensor, Tensor]:
    """Args: class_logits (R, K); box_deltas (R, 4K); labels (R,); regression_targets (R, 4)."""
    if labels.numel() == 0:
        zero = class_logits.sum() * 0
        return zero, zero
    return fastrcnn_loss(class_logits, box_deltas, [labels], [regression_targets])


def four_losses(objectness: Tensor, deltas: Tensor, rpn_targets: AnchorTargets, r_targets: RoITargets,
                head: Callable[[Tensor], BoxHeadOutput], num_classes: int) -> Losses:
    """The stage: the RPN's two terms on the anchors it decoded (``rpn_targets``), and the head's two on the
    sampled RoIs, ``head`` mapping RoIs (R, 4) to the box head's output (pooled as training pools them).
    The RoI terms are None when a sampled label is not one of the model's ``num_classes``."""
    rpn_cls, rpn_box = rpn_losses(objectness, deltas, rpn_targets)
    if bool(((r_targets.labels < 0) | (r_targets.labels >= num_classes)).any()):
        return Losses(rpn_cls, rpn_box, None, None)
    out = head(r_targets.boxes)
    roi_cls, roi_box = roi_losses(out.class_logits, out.box_deltas, r_targets.labels, r_targets.regression_targets)
    return Losses(rpn_cls, rpn_box, roi_cls, roi_box)
