"""Brute-force references shared by the stage tests: plain Python, no torch, checkable by hand."""

from __future__ import annotations


def iou(a, b) -> float:
    """IoU of two (x1, y1, x2, y2) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def greedy_nms(boxes: list, scores: list, thresh: float) -> list[int]:
    """Plain greedy NMS: keep the best remaining box, drop every remaining box with IoU > thresh with it."""
    remaining = sorted(range(len(boxes)), key=lambda i: -scores[i])
    kept = []
    while remaining:
        best = remaining.pop(0)
        kept.append(best)
        remaining = [i for i in remaining if iou(boxes[best], boxes[i]) <= thresh]
    return kept
