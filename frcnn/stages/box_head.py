"""Box head: fully connected layers on each pooled RoI, then two siblings: K class scores (background
included, softmax) and per-class box deltas (Fast R-CNN 2, figure 1).

Shapes: (R, C, S, S) pooled features -> class_logits (R, K), box_deltas (R, 4K).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from frcnn.stages.backbone import Features
from frcnn.stages.roi_pooling import pool_rois


@dataclass(frozen=True)
class BoxHeadOutput:
    class_logits: Tensor  # (R, K)
    box_deltas: Tensor  # (R, 4K)

    @property
    def scores(self) -> Tensor:  # (R, K) softmax
        return torch.softmax(self.class_logits, dim=-1)


def run_box_head(box_head: nn.Module, box_predictor: nn.Module, pooled: Tensor) -> BoxHeadOutput:
    class_logits, box_deltas = box_predictor(box_head(pooled))
    return BoxHeadOutput(class_logits, box_deltas)


@dataclass(frozen=True)
class HeadPooling:
    """How the box head's RoIs are pooled: the op and sampling ratio asked for, at the size the head was
    trained on (its first FC layer takes only that). Training and tracing both pool the head's RoIs so."""

    op: str  # "roi_pool" | "roi_align"
    output_size: int
    sampling_ratio: int
    levels: tuple[int, ...]  # feature levels pooled from (the head's featmap_names)


def head_pooling(op: str, sampling_ratio: int, trained_size: int, levels: tuple[int, ...]) -> HeadPooling:
    return HeadPooling(op, int(trained_size), int(sampling_ratio), tuple(levels))


def pooled_box_head(box_head: nn.Module, box_predictor: nn.Module, features: Features, boxes: Tensor,
                    image_size: tuple[int, int], how: HeadPooling) -> BoxHeadOutput:
    """Pool ``boxes`` (R, 4) from ``features`` as ``how`` says and run the box head on them."""
    pooled = pool_rois(features, boxes, image_size, how.op, how.output_size, how.sampling_ratio, how.levels)
    return run_box_head(box_head, box_predictor, pooled.features)
