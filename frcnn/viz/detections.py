"""Detections against ground truth: true positives, false positives and misses at an IoU threshold
(greedy matching in score order, as COCO/VOC evaluation does), and the figure that shows them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
from torch import Tensor
from torchvision.ops import box_iou

from frcnn.trace import Trace
from frcnn.viz.common import GROUND_TRUTH, NEGATIVE, PALETTE, POSITIVE, add_boxes, image_figure


@dataclass(frozen=True)
class Matching:
    true_positive: Tensor  # (D,) bool per detection
    matched_gt: Tensor  # (D,) int64 GT index or -1
    iou: Tensor  # (D,) IoU with the matched (or best) GT box
    missed: Tensor  # (G,) bool per GT box

    @property
    def precision(self) -> float:
        n = len(self.true_positive)
        return float(self.true_positive.sum()) / n if n else 1.0

    @property
    def recall(self) -> float:
        g = len(self.missed)
        return float((~self.missed).sum()) / g if g else 1.0


def match_detections(boxes: Tensor, scores: Tensor, labels: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
                     iou_thresh: float = 0.5) -> Matching:
    """Each detection, best score first, takes the unmatched GT box of its class with the highest IoU >=
    ``iou_thresh``; it is then a true positive. GT boxes left unmatched are misses."""
    d, g = len(boxes), len(gt_boxes)
    tp = torch.zeros(d, dtype=torch.bool)
    matched = torch.full((d,), -1, dtype=torch.int64)
    best_iou = torch.zeros(d)
    taken = torch.zeros(g, dtype=torch.bool)
    if d and g:
        iou = box_iou(boxes.cpu().float(), gt_boxes.cpu().float())  # (D, G)
        same = labels.cpu()[:, None] == gt_labels.cpu()[None, :]
        iou = torch.where(same, iou, torch.zeros_like(iou))
        best_iou = iou.max(dim=1).values
        for i in torch.argsort(scores.cpu(), descending=True).tolist():  # greedy: order matters
            candidates = torch.where(~taken, iou[i], torch.full_like(iou[i], -1.0))
            j = int(candidates.argmax())
            if candidates[j] >= iou_thresh:
                tp[i], matched[i], taken[j] = True, j, True
                best_iou[i] = iou[i, j]
    return Matching(tp, matched, best_iou, ~taken)


def detections_figure(image: np.ndarray, trace: Trace, iou_thresh: float = 0.5, title: str | None = None,
                      height: int = 620) -> go.Figure:
    """Detections coloured TP / FP against the trace's ground truth (misses dashed), or by class without it."""
    fig = image_figure(image, height=height, title=title)
    d = trace.detections
    names = trace.class_names
    hover = [f"{names[int(lab)]} {float(s):.3f}" for lab, s in zip(d.labels, d.scores, strict=True)]
    if len(trace.gt_boxes):
        m = match_detections(d.boxes, d.scores, d.labels, trace.gt_boxes, trace.gt_labels, iou_thresh)
        add_boxes(fig, trace.gt_boxes, GROUND_TRUTH, "ground truth", width=2,
                  hover=[f"GT {names[int(lab)] if 0 < int(lab) < len(names) else int(lab)}"
                         for lab in trace.gt_labels])
        miss = m.missed.numpy()
        add_boxes(fig, trace.gt_boxes[miss], NEGATIVE, "missed", width=2.5, dash="dash")
        tp = m.true_positive.numpy()
        add_boxes(fig, d.boxes[tp], POSITIVE, "true positive", width=2.5,
                  hover=[f"{h} · IoU {float(i):.2f}" for h, i, t in zip(hover, m.iou, tp, strict=True) if t])
        add_boxes(fig, d.boxes[~tp], NEGATIVE, "false positive", width=2,
                  hover=[f"{h} · best IoU {float(i):.2f}" for h, i, t in zip(hover, m.iou, tp, strict=True)
                         if not t])
        fig.update_layout(title=dict(text=title or f"precision {m.precision:.2f} · recall {m.recall:.2f} at IoU "
                                           f"{iou_thresh}"), margin=dict(t=70))
        return fig
    for k, label in enumerate(sorted(set(d.labels.tolist()))):
        keep = (d.labels == label).cpu().numpy()
        add_boxes(fig, d.boxes[keep], PALETTE[k % len(PALETTE)], names[label], width=2.5,
                  hover=[h for h, kk in zip(hover, keep, strict=True) if kk])
    return fig
