"""A Trace as plain JSON-ready data (lists, numbers, strings), for the CLI and the app's download.

Boxes are [x1, y1, x2, y2] in the original image's pixels, rounded to 0.01 px; scores and IoUs to 1e-4.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from frcnn.analysis.naming import class_name
from frcnn.trace import Trace


def _boxes(t: Tensor) -> list[list[float]]:
    return [[round(v, 2) for v in row] for row in t.detach().float().cpu().tolist()]


def _floats(t: Tensor, digits: int = 4) -> list[float]:
    return [round(v, digits) for v in t.detach().float().cpu().tolist()]


def _ints(t: Tensor) -> list[int]:
    return [int(v) for v in t.detach().cpu().tolist()]


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    """Everything a reader needs to redraw each stage, as JSON-ready data."""
    height, width = trace.image_size
    pre = trace.preprocess
    out: dict[str, Any] = {
        "image": {"width": width, "height": height},
        "model": trace.model,
        "weights": trace.weights,
        "device": trace.device,
        "class_names": list(trace.class_names),
        "settings": {k: _jsonable(v) for k, v in trace.settings.to_flat().items()},
        "input": {"width": pre.image_size[1], "height": pre.image_size[0],
                  "padded_width": pre.padded_size[1], "padded_height": pre.padded_size[0],
                  "scale": [round(pre.scale[1], 6), round(pre.scale[0], 6)]},
        "features": [{"name": n, "channels": int(m.shape[1]), "height": int(m.shape[-2]),
                      "width": int(m.shape[-1]), "stride": s}
                     for n, m, s in zip(trace.features.names, trace.features.maps, trace.features.strides,
                                        strict=True)],
        "anchors": {"boxes": _boxes(trace.anchors.boxes), "inside": [bool(v) for v in trace.anchors.inside.tolist()],
                    "count": len(trace.anchors.boxes), "inside_count": int(trace.anchors.inside.sum()),
                    "sizes": [list(s) for s in trace.anchors.sizes], "ratios": list(trace.anchors.ratios),
                    "strides": list(trace.anchors.strides),
                    "num_per_location": list(trace.anchors.num_per_location),
                    "rpn_uses": trace.anchors_source},
        "ground_truth": {"boxes": _boxes(trace.gt_boxes), "labels": _ints(trace.gt_labels)},
    }
    if trace.anchor_targets is not None:
        t = trace.anchor_targets
        out["anchor_targets"] = {
            "labels": _ints(t.labels), "max_iou": _floats(t.max_iou), "matched_gt": _ints(t.matched_gt),
            "regression_targets": [[round(v, 4) for v in r] for r in t.regression_targets.cpu().tolist()],
            "sampled_positive": _ints(t.sampled_positive), "sampled_negative": _ints(t.sampled_negative),
            "best_anchor_per_gt": _ints(t.best_anchor_per_gt), "best_iou_per_gt": _floats(t.best_iou_per_gt),
        }
    p = trace.proposals
    out["proposals"] = {"boxes": _boxes(p.boxes), "scores": _floats(p.scores), "anchor_index": _ints(p.anchor_index),
                        "pre_nms_count": len(p.pre_nms_boxes), "pre_nms_boxes": _boxes(p.pre_nms_boxes),
                        "pre_nms_scores": _floats(p.pre_nms_scores), "counts": dict(p.counts)}
    if trace.roi_targets is not None:
        r = trace.roi_targets
        out["roi_samples"] = {"boxes": _boxes(r.boxes), "labels": _ints(r.labels), "ious": _floats(r.ious),
                              "matched_gt": _ints(r.matched_gt)}
    d = trace.detections
    names = trace.class_names
    if d is not None:  # None: traced without the RoI head
        out["detections"] = [
            {"box": box, "score": score, "label": label,
             "name": class_name(names, label)}
            for box, score, label in zip(_boxes(d.boxes), _floats(d.scores), _ints(d.labels), strict=True)
        ]
        out["detection_counts"] = dict(d.counts)
    if trace.losses is not None:
        out["losses"] = {k: (None if v is None else round(v, 6)) for k, v in trace.losses.as_dict().items()}
    out["counts"] = trace.counts()
    out["timings_ms"] = {k: round(v, 3) for k, v in trace.timings_ms.items()}
    out["cached"] = list(trace.cached)
    out["notes"] = list(trace.notes)
    return out
