"""Evaluation: COCO-style mean average precision of a model on a dataset, computed by torchmetrics'
``MeanAveragePrecision`` (pycocotools underneath), never by a hand-written AP.

Detections come from the same :class:`~frcnn.trace.Tracer` the app uses, with the score threshold
lowered to ``score_thresh`` (COCO evaluation wants the low-scoring tail too).
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from frcnn.analysis.naming import class_name
from frcnn.models.registry import Detector
from frcnn.settings import Settings
from frcnn.trace import StageCache, Tracer

EVAL_SCORE_THRESH = 0.001


def evaluate(detector: Detector, dataset: Dataset, settings: Settings | None = None, limit: int | None = None,
             score_thresh: float = EVAL_SCORE_THRESH, progress: bool = True) -> dict[str, Any]:
    """mAP@[.5:.95] ("map"), mAP@0.5 ("map_50"), mAP@0.75, and per-class AP ("per_class": {name: AP}).

    Dataset labels must index ``detector.class_names``.
    """
    from torchmetrics.detection import MeanAveragePrecision

    settings = (settings or detector.defaults).replace({"roi.score_thresh": score_thresh})
    tracer = Tracer(detector, StageCache(max_entries=1))  # nothing worth keeping between images
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    indices = range(n)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="eval", unit="image", dynamic_ncols=True)
    for i in indices:
        image, boxes, labels = dataset[i]
        d = tracer.run(image, settings).detections
        metric.update([{"boxes": d.boxes.cpu(), "scores": d.scores.cpu(), "labels": d.labels.cpu()}],
                      [{"boxes": boxes, "labels": labels}])
    result = metric.compute()
    per_class = {}
    classes = result["classes"].reshape(-1).tolist()
    for cls, ap in zip(classes, result["map_per_class"].reshape(-1).tolist(), strict=True):
        per_class[class_name(detector.class_names, cls)] = ap
    return {"images": n, "map": float(result["map"]), "map_50": float(result["map_50"]),
            "map_75": float(result["map_75"]), "per_class": per_class}
