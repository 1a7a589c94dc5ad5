"""Detections against ground truth: true positives, false positives and misses at an IoU threshold (greedy
matching in score order, as COCO/VOC evaluation does). Used by the Detections page, the RoI tables and the
sweeps, so it lives with the library, not with the figures."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from frcnn.stages._iou import iou_chunks


@dataclass(frozen=True)
class Matching:
    true_positive: Tensor  # (D,) bool per detection
    matched_gt: Tensor  # (D,) int64 GT index or -1
    iou: Tensor  # (D,) IoU with the matched GT box, else the best with a GT box of the detection's class
    missed: Tensor  # (G,) bool per GT box
    overlap_gt: Tensor  # (D,) int64 the GT box of any class it overlaps most, or -1 (no GT box overlaps it)
    overlap_iou: Tensor  # (D,) that IoU: a false positive on a GT box of a class the model does not know shows it

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
    ``iou_thresh``; it is then a true positive. GT boxes left unmatched are misses.

    Boxes (x1, y1, x2, y2) in the same pixels: ``boxes`` Tensor[D, 4], ``gt_boxes`` Tensor[G, 4]. Besides the
    matching (same class only), each detection's largest IoU with a GT box of any class (``overlap_iou``, at
    ``overlap_gt``): with ground truth in classes the model does not know, every detection is a false positive
    and this says which boxes it found anyway."""
    d, g = len(boxes), len(gt_boxes)
    tp = torch.zeros(d, dtype=torch.bool)
    matched = torch.full((d,), -1, dtype=torch.int64)
    best_iou = torch.zeros(d)
    overlap_iou = torch.zeros(d)
    overlap_gt = torch.full((d,), -1, dtype=torch.int64)
    taken = torch.zeros(g, dtype=torch.bool)
    if d and g:
        iou = torch.empty(d, g)  # (D, G), filled a chunk at a time: box_iou's intermediates stay bounded
        for start, rows in iou_chunks(boxes.cpu().float(), gt_boxes.cpu().float()):
            end = start + len(rows)
            overlap_iou[start:end], overlap_gt[start:end] = rows.max(dim=1)  # any class
            same = labels.cpu()[start:end, None] == gt_labels.cpu()[None, :]
            iou[start:end] = torch.where(same, rows, 0.0)
        overlap_gt = torch.where(overlap_iou > 0, overlap_gt, -1)
        best_iou = iou.max(dim=1).values
        for i in torch.argsort(scores.cpu(), descending=True).tolist():  # greedy: order matters
            candidates = torch.where(~taken, iou[i], torch.full_like(iou[i], -1.0))
            j = int(candidates.argmax())
            if candidates[j] >= iou_thresh:
                tp[i], matched[i], taken[j] = True, j, True
                best_iou[i] = iou[i, j]
    return Matching(tp, matched, best_iou, ~taken, overlap_gt, overlap_iou)
