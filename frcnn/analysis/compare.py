"""Two traces of one image: the boxes of a stage each has, and those one has that the other lacks."""

from __future__ import annotations

from torch import Tensor

from frcnn.analysis.matching import best_overlap
from frcnn.trace import Trace

SAME_IOU = 0.9  # boxes (of one class) overlapping this much count as the same box in both traces


def only_in(boxes: Tensor, labels: Tensor | None, other: Tensor, other_labels: Tensor | None,
            same_iou: float = SAME_IOU) -> Tensor:
    """(N,) bool: the boxes with no box of the same label in ``other`` at IoU >= ``same_iou``."""
    return best_overlap(boxes, labels, other, other_labels)[0] < same_iou


def what_boxes(trace: Trace, stage: str) -> tuple[Tensor, Tensor | None, Tensor]:
    """(boxes, labels or None, scores) of ``stage``: "proposals" or "detections"."""
    if stage == "proposals":
        return trace.proposals.boxes, None, trace.proposals.scores
    d = trace.detections
    return d.boxes, d.labels, d.scores
