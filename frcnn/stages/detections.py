"""Detections: decode each RoI's class-specific box, then score threshold, per-class NMS and top-K
(torchvision's ``RoIHeads.postprocess_detections``, step for step).

Shapes: R RoIs, K classes (0 = background); D detections. Boxes (x1, y1, x2, y2) in network-input pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes

from frcnn.settings import RoISettings
from frcnn.stages.params import DetectionParams
from frcnn.stages.roi_targets import ROI_BOX_WEIGHTS

MIN_DETECTION_SIZE = 1e-2  # torchvision drops empty boxes below this side (px)


@dataclass(frozen=True)
class Detections:
    boxes: Tensor  # (D, 4) best first
    scores: Tensor  # (D,)
    labels: Tensor  # (D,) int64 class index >= 1
    roi_index: Tensor  # (D,) int64 the RoI each detection came from
    counts: dict[str, int]  # step -> boxes left, in pipeline order


def detect(
    rois: Tensor, class_logits: Tensor, box_deltas: Tensor, image_size: tuple[int, int],
    params: DetectionParams | RoISettings,
) -> Detections:
    """Args: rois (R, 4); class_logits (R, K); box_deltas (R, 4K); image_size (h, w); params: the stage's
    record (or the ``roi`` section it is picked from)."""
    settings = DetectionParams.coerce(params)
    num_rois, num_classes = class_logits.shape
    coder = BoxCoder(ROI_BOX_WEIGHTS)
    boxes = coder.decode(box_deltas, [rois]).reshape(num_rois, num_classes, 4)  # (R, K, 4)
    boxes = clip_boxes_to_image(boxes, image_size)
    scores = torch.softmax(class_logits, dim=-1)  # (R, K)
    labels = torch.arange(num_classes, device=rois.device).expand(num_rois, num_classes)
    roi_index = torch.arange(num_rois, device=rois.device)[:, None].expand(num_rois, num_classes)
    # drop the background column, then treat every (RoI, class) pair as one candidate
    boxes, scores = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1)
    labels, roi_index = labels[:, 1:].reshape(-1), roi_index[:, 1:].reshape(-1)
    counts = {"candidates": int(scores.numel())}
    keep = torch.where(scores > settings.score_thresh)[0]
    boxes, scores, labels, roi_index = boxes[keep], scores[keep], labels[keep], roi_index[keep]
    counts["score_thresh"] = int(keep.numel())
    keep = remove_small_boxes(boxes, MIN_DETECTION_SIZE)
    boxes, scores, labels, roi_index = boxes[keep], scores[keep], labels[keep], roi_index[keep]
    counts["min_size"] = int(keep.numel())
    keep = batched_nms(boxes, scores, labels, settings.nms_thresh)
    counts["nms"] = int(keep.numel())
    keep = keep[:settings.detections_per_img]
    counts["top_k"] = int(keep.numel())
    return Detections(boxes[keep], scores[keep], labels[keep], roi_index[keep], counts)
