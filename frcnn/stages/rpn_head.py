"""RPN head: a 3x3 conv slid over the feature map, then two sibling 1x1 convs giving, for each of the
k anchors of each location, an objectness logit and four box deltas (paper 3.1, figure 3).

Shapes: level i gives objectness (1, k, Hi, Wi) and deltas (1, 4k, Hi, Wi); flattened with torchvision's
``concat_box_prediction_layers`` to (A,) and (A, 4) in the anchors' (level, y, x, k) order.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torchvision.models.detection.rpn import concat_box_prediction_layers

from frcnn.stages.backbone import Features


@dataclass(frozen=True)
class RPNOutput:
    objectness: Tensor  # (A,) logits, anchor order
    deltas: Tensor  # (A, 4) predicted (tx, ty, tw, th)
    objectness_maps: tuple[Tensor, ...]  # per level (k, Hi, Wi) logits, for heatmaps

    @property
    def num_per_level(self) -> tuple[int, ...]:
        return tuple(int(m.numel()) for m in self.objectness_maps)


def run_rpn_head(head: nn.Module, features: Features) -> RPNOutput:
    objectness, deltas = head(list(features.maps))  # L x (1, k, Hi, Wi), L x (1, 4k, Hi, Wi)
    flat_objectness, flat_deltas = concat_box_prediction_layers(objectness, deltas)  # (A, 1), (A, 4)
    return RPNOutput(flat_objectness.flatten(), flat_deltas, tuple(o[0] for o in objectness))
