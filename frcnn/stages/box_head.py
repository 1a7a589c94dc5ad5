"""Box head: fully connected layers on each pooled RoI, then two siblings: K class scores (background
included, softmax) and per-class box deltas (Fast R-CNN 2, figure 1).

Shapes: (R, C, S, S) pooled features -> class_logits (R, K), box_deltas (R, 4K).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


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
