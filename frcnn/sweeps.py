"""Sweeps over a set of images: one setting takes several values and a measure is summed over the images.

- :func:`proposal_recall_sweep`: the share of ground-truth boxes covered (IoU >= 0.5) by the proposals, for
  each ``rpn.post_nms_top_n`` (or any RPN setting);
- :func:`detection_sweep`: precision and recall of the detections (a detection is a true positive when it
  takes an unmatched ground-truth box of its class at IoU >= 0.5, best score first), for each value of
  ``roi.score_thresh``, ``roi.nms_thresh`` or any setting.

Every value is a real re-trace through the shared :class:`~frcnn.trace.Tracer`, so its cache does the work:
a score-threshold value re-runs only the detections; the backbone runs once per image.
Images: a list of (image (3, H, W) uint8, boxes (G, 4), labels (G,)) in the image's pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from frcnn.detection_stats import match_detections
from frcnn.proposal_stats import first_hits
from frcnn.settings import Settings
from frcnn.trace import Trace, Tracer

Item = tuple[Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class Sweep:
    key: str
    values: list[Any]
    metrics: dict[str, list[float]] = field(default_factory=dict)  # name -> one number per value
    images: int = 0
    boxes: int = 0


def sweep(tracer: Tracer, items: Sequence[Item], settings: Settings, key: str, values: Sequence[Any],
          measure: Callable[[Trace, Tensor, Tensor], dict[str, float]],
          finish: Callable[[dict[str, float]], dict[str, float]],
          progress: Callable[[float], None] | None = None) -> Sweep:
    """For each value of ``key``: trace every image, sum ``measure``'s counts, turn them into metrics."""
    metrics: dict[str, list[float]] = {}
    total = len(values) * len(items)
    for v, value in enumerate(values):
        s = settings.replace({key: value})
        counts: dict[str, float] = {}
        for i, (image, boxes, labels) in enumerate(items):
            trace = tracer.run(image, s, boxes, labels)
            for name, c in measure(trace, boxes, labels).items():
                counts[name] = counts.get(name, 0.0) + c
            if progress:
                progress((v * len(items) + i + 1) / total)
        for name, m in finish(counts).items():
            metrics.setdefault(name, []).append(m)
    return Sweep(key, list(values), metrics, len(items), sum(len(b) for _, b, _ in items))


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def proposal_recall_sweep(tracer: Tracer, items: Sequence[Item], settings: Settings, values: Sequence[Any],
                          key: str = "rpn.post_nms_top_n", iou: float = 0.5,
                          progress: Callable[[float], None] | None = None) -> Sweep:
    """Recall of the ground truth by the proposals (IoU >= ``iou``) for each value of ``key``."""
    if key == "rpn.post_nms_top_n":  # keep pre-NMS top-N at least as large, as the validator asks
        settings = settings.replace({"rpn.pre_nms_top_n": max(settings.rpn.pre_nms_top_n, *values)})

    def measure(trace: Trace, boxes: Tensor, labels: Tensor) -> dict[str, float]:
        hits = first_hits(trace.proposals.boxes, boxes, iou) < len(trace.proposals.boxes)
        return {"found": float(hits.sum()), "gt": float(len(boxes)), "proposals": float(len(trace.proposals.boxes))}

    def finish(c: dict[str, float]) -> dict[str, float]:
        return {"recall": _ratio(c["found"], c["gt"]), "proposals per image": c["proposals"] / max(1, len(items))}

    return sweep(tracer, items, settings, key, values, measure, finish, progress)


def detection_sweep(tracer: Tracer, items: Sequence[Item], settings: Settings, key: str, values: Sequence[Any],
                    iou: float = 0.5, progress: Callable[[float], None] | None = None) -> Sweep:
    """Precision and recall of the detections (IoU >= ``iou``, right class) for each value of ``key``."""

    def measure(trace: Trace, boxes: Tensor, labels: Tensor) -> dict[str, float]:
        d = trace.detections
        m = match_detections(d.boxes, d.scores, d.labels, boxes, labels, iou)
        tp = float(m.true_positive.sum())
        return {"tp": tp, "fp": float(len(d.boxes)) - tp, "gt": float(len(boxes))}

    def finish(c: dict[str, float]) -> dict[str, float]:
        return {"precision": _ratio(c["tp"], c["tp"] + c["fp"]), "recall": _ratio(c["tp"], c["gt"]),
                "detections per image": (c["tp"] + c["fp"]) / max(1, len(items))}

    return sweep(tracer, items, settings, key, values, measure, finish, progress)
