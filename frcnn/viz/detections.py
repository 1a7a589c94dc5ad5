"""The detections figure: true positives, false positives and misses against the ground truth
(the matching is :func:`frcnn.detection_stats.match_detections`)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from frcnn.detection_stats import Matching, match_detections  # noqa: F401 - the figures' matching, re-exported
from frcnn.trace import Trace
from frcnn.viz.common import GROUND_TRUTH, IGNORED, NEGATIVE, PALETTE, POSITIVE, add_boxes, image_figure


def detections_figure(image: np.ndarray, trace: Trace, iou_thresh: float = 0.5, title: str | None = None,
                      height: int = 620, min_score: float = 0.0) -> go.Figure:
    """Detections coloured TP / FP against the trace's ground truth (misses dashed), or by class without it.

    ``min_score``: detections scoring less are not drawn but kept in one legend-only trace (a click on its legend
    entry shows them), and the matching (TP / FP / missed) is of the drawn ones: precision and recall at that
    score. The detector's own score threshold (the paper's 0.05, for mAP) keeps many low scores."""
    fig = image_figure(image, height=height, title=title)
    d = trace.detections
    names = trace.class_names
    drawn = (d.scores >= min_score).cpu().numpy()  # (D,)
    hover = [f"{names[int(lab)]} {float(s):.3f}" for lab, s in zip(d.labels, d.scores, strict=True)]
    low = [h for h, k in zip(hover, drawn, strict=True) if not k]
    boxes, scores, labels = d.boxes[drawn], d.scores[drawn], d.labels[drawn]
    hover = [h for h, k in zip(hover, drawn, strict=True) if k]
    if len(trace.gt_boxes):
        m = match_detections(boxes, scores, labels, trace.gt_boxes, trace.gt_labels, iou_thresh)
        add_boxes(fig, trace.gt_boxes, GROUND_TRUTH, "ground truth", width=2,
                  hover=[f"GT {names[int(lab)] if 0 < int(lab) < len(names) else int(lab)}"
                         for lab in trace.gt_labels])
        miss = m.missed.numpy()
        add_boxes(fig, trace.gt_boxes[miss], NEGATIVE, "missed", width=2.5, dash="dash")
        tp = m.true_positive.numpy()
        add_boxes(fig, boxes[tp], POSITIVE, "true positive", width=2.5,
                  hover=[f"{h} · IoU {float(i):.2f}" for h, i, t in zip(hover, m.iou, tp, strict=True) if t])
        add_boxes(fig, boxes[~tp], NEGATIVE, "false positive", width=2,
                  hover=[f"{h} · best IoU {float(i):.2f}" for h, i, t in zip(hover, m.iou, tp, strict=True)
                         if not t])
        at = f" · scores from {min_score:g}" if min_score > 0 else ""
        fig.update_layout(title=dict(text=title or f"precision {m.precision:.2f} · recall {m.recall:.2f} at IoU "
                                           f"{iou_thresh}{at}"), margin=dict(t=70))
    else:
        for k, label in enumerate(sorted(set(labels.tolist()))):
            keep = (labels == label).cpu().numpy()
            add_boxes(fig, boxes[keep], PALETTE[k % len(PALETTE)], names[label], width=2.5,
                      hover=[h for h, kk in zip(hover, keep, strict=True) if kk])
    if low:
        add_boxes(fig, d.boxes[~drawn], IGNORED, f"scoring under {min_score:g}", width=1, dash="dot", hover=low,
                  visible="legendonly")
    return fig
