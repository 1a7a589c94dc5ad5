"""Proposals: the RPN's boxes, decoded from anchors and filtered (paper 3.1, 3.3).

The steps and their order are torchvision's ``RegionProposalNetwork.filter_proposals``: decode every
anchor's deltas; keep the ``pre_nms_top_n`` highest objectness per level; clip to the image; drop boxes
with a side below ``min_size``; drop scores below ``score_thresh``; NMS at ``nms_thresh`` (per level);
keep the ``post_nms_top_n`` best. The count after each step is kept for the funnel.

Decoding, with (xa, ya, wa, ha) an anchor's centre and size and (tx, ty, tw, th) the deltas:
x = xa + tx * wa, y = ya + ty * ha, w = wa * exp(tw), h = ha * exp(th).

Shapes: A anchors; Q candidates entering NMS; P proposals kept. Boxes are (x1, y1, x2, y2) in
network-input pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes

from frcnn.settings import RPNSettings
from frcnn.stages.anchor_targets import RPN_BOX_WEIGHTS
from frcnn.stages.params import ProposalParams


@dataclass(frozen=True)
class Proposals:
    boxes: Tensor  # (P, 4) after NMS and post-NMS top-N, best first
    scores: Tensor  # (P,) objectness probability
    keep: Tensor  # (P,) int64 indices into the pre-NMS candidates
    pre_nms_boxes: Tensor  # (Q, 4) candidates entering NMS
    pre_nms_scores: Tensor  # (Q,)
    pre_nms_anchor: Tensor  # (Q,) int64 index of the anchor each candidate came from
    pre_nms_level: Tensor  # (Q,) int64
    counts: dict[str, int]  # step name -> boxes left after it, in pipeline order

    @property
    def anchor_index(self) -> Tensor:
        return self.pre_nms_anchor[self.keep]


def decode(anchors: Tensor, deltas: Tensor) -> Tensor:
    """Apply deltas (A, 4) to anchors (A, 4): boxes (A, 4)."""
    return BoxCoder(RPN_BOX_WEIGHTS).decode_single(deltas, anchors)


def propose(
    anchors: Tensor,
    objectness: Tensor,
    deltas: Tensor,
    num_per_level: tuple[int, ...],
    image_size: tuple[int, int],
    params: ProposalParams | RPNSettings,
    training: bool = False,
) -> Proposals:
    """Args: anchors (A, 4); objectness (A,) logits; deltas (A, 4); image_size (h, w); params: the stage's
    record (or the ``rpn`` section it is picked from); ``training`` takes the training-time top-N counts."""
    settings = ProposalParams.coerce(params)
    pre_nms_top_n, post_nms_top_n = settings.top_n(training)
    objectness, deltas = objectness.detach(), deltas.detach()  # Faster R-CNN does not backprop here
    counts = {"anchors": int(anchors.shape[0])}
    top_idx = []
    offset = 0
    for n in num_per_level:  # top-N per level, as torchvision (one level for the paper's model)
        k = min(pre_nms_top_n, n)
        top_idx.append(objectness[offset:offset + n].topk(k).indices + offset)
        offset += n
    idx = torch.cat(top_idx)  # (Q0,)
    level = torch.repeat_interleave(torch.arange(len(num_per_level), device=anchors.device),
                                    torch.tensor(num_per_level, device=anchors.device))[idx]
    counts["pre_nms_top_n"] = int(idx.numel())
    boxes = clip_boxes_to_image(decode(anchors[idx], deltas[idx]), image_size)
    scores = torch.sigmoid(objectness[idx])
    keep = remove_small_boxes(boxes, settings.min_size)
    boxes, scores, idx, level = boxes[keep], scores[keep], idx[keep], level[keep]
    counts["min_size"] = int(idx.numel())
    keep = torch.where(scores >= settings.score_thresh)[0]
    boxes, scores, idx, level = boxes[keep], scores[keep], idx[keep], level[keep]
    counts["score_thresh"] = int(idx.numel())
    keep = batched_nms(boxes, scores, level, settings.nms_thresh)  # sorted by score
    counts["nms"] = int(keep.numel())
    keep = keep[:post_nms_top_n]
    counts["post_nms_top_n"] = int(keep.numel())
    return Proposals(boxes[keep], scores[keep], keep, boxes, scores, idx, level, counts)


@dataclass(frozen=True)
class NMSStep:
    kept: int  # index (into the boxes given) of the box kept at this step
    suppressed: Tensor  # (S,) int64 indices it suppresses at this step
    suppressed_iou: Tensor  # (S,) their IoU with the kept box


def nms_steps(boxes: Tensor, scores: Tensor, iou_threshold: float) -> list[NMSStep]:
    """Replay greedy NMS step by step, for teaching: at each step the best remaining box is kept and
    every remaining box whose IoU with it is above ``iou_threshold`` is suppressed.

    The kept set is ``torchvision.ops.nms``'s (the library call decides); the IoU matrix then tells which
    boxes each kept box removed. Args: boxes (N, 4), scores (N,). Returns one step per kept box.
    """
    from torchvision.ops import nms

    kept = nms(boxes, scores, iou_threshold)  # (K,) in score order
    order = torch.argsort(scores, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    iou = box_iou(boxes[kept], boxes)  # (K, N)
    alive = torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
    steps = []
    for row, k in enumerate(kept.tolist()):
        alive[k] = False
        hit = alive & (iou[row] > iou_threshold) & (rank > rank[k])
        idx = torch.where(hit)[0]
        alive[idx] = False
        steps.append(NMSStep(k, idx, iou[row, idx]))
    return steps
