"""Boxes against boxes: detections against ground truth (true positives, false positives and misses at an IoU
threshold, greedy matching in score order, as COCO/VOC evaluation does), and each box's best overlap with another
set (:func:`best_overlap`, the same-class IoU both the matching and the Compare page's "only in A" read).
Used by the Detections page, the RoI tables, the sweeps and Compare.

Boxes (x1, y1, x2, y2) in the same pixels: ``boxes`` Tensor[D, 4], ``gt_boxes`` / ``other`` Tensor[G, 4].
"""

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

    def of_top(self, keep: Tensor) -> Matching:
        """The matching of the detections ``keep`` (D,) bool selects, when they are the best-scoring ones (scores
        >= a threshold): the greedy matching runs best score first, so theirs is the same as in the full run, and
        only the GT boxes they took are found. Equals :func:`match_detections` of those detections alone."""
        keep = torch.as_tensor(keep, dtype=torch.bool)
        matched = self.matched_gt[keep]
        missed = torch.ones_like(self.missed)
        missed[matched[matched >= 0]] = False
        return Matching(self.true_positive[keep], matched, self.iou[keep], missed, self.overlap_gt[keep],
                        self.overlap_iou[keep])


def _same_class(rows: Tensor, start: int, labels: Tensor | None, other_labels: Tensor | None) -> Tensor:
    """``rows`` (n, G) of IoU with zeros where box ``start + i``'s label is not the other box's (no labels: all)."""
    if labels is None or other_labels is None:
        return rows
    same = labels.cpu()[start:start + len(rows), None] == other_labels.cpu()[None, :]  # (n, G)
    return torch.where(same, rows, 0.0)


def best_overlap(boxes: Tensor, labels: Tensor | None, other: Tensor,
                 other_labels: Tensor | None) -> tuple[Tensor, Tensor]:
    """(D,) each box's largest IoU with a box of ``other`` of the same label (labels None: of any label), and
    (D,) int64 that box's index (-1 when none overlaps). Memory bounded at any D (a chunk of rows at a time)."""
    best = torch.zeros(len(boxes))
    index = torch.full((len(boxes),), -1, dtype=torch.int64)
    if len(boxes) and len(other):
        for start, rows in iou_chunks(boxes.float().cpu(), other.float().cpu()):  # (n, G)
            end = start + len(rows)
            best[start:end], index[start:end] = _same_class(rows, start, labels, other_labels).max(dim=1)
        index = torch.where(best > 0, index, -1)
    return best, index


def match_detections(boxes: Tensor, scores: Tensor, labels: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
                     iou_thresh: float = 0.5) -> Matching:
    """Each detection, best score first, takes the unmatched GT box of its class with the highest IoU >=
    ``iou_thresh``; it is then a true positive. GT boxes left unmatched are misses.

    Besides the matching (same class only), each detection's largest IoU with a GT box of any class
    (``overlap_iou``, at ``overlap_gt``): with ground truth in classes the model does not know, every detection is
    a false positive and this says which boxes it found anyway."""
    d, g = len(boxes), len(gt_boxes)
    tp = torch.zeros(d, dtype=torch.bool)
    matched = torch.full((d,), -1, dtype=torch.int64)
    best_iou = torch.zeros(d)
    taken = torch.zeros(g, dtype=torch.bool)
    overlap_iou, overlap_gt = best_overlap(boxes, None, gt_boxes, None)  # any class
    if d and g:
        iou = torch.empty(d, g)  # (D, G), filled a chunk at a time: box_iou's intermediates stay bounded
        for start, rows in iou_chunks(boxes.cpu().float(), gt_boxes.cpu().float()):
            iou[start:start + len(rows)] = _same_class(rows, start, labels, gt_labels)
        best_iou = iou.max(dim=1).values
        # greedy: order matters; stable, so equal scores go in index order, in any subset too (:meth:`of_top`)
        for i in torch.argsort(scores.cpu(), descending=True, stable=True).tolist():
            candidates = torch.where(~taken, iou[i], torch.full_like(iou[i], -1.0))
            j = int(candidates.argmax())
            if candidates[j] >= iou_thresh:
                tp[i], matched[i], taken[j] = True, j, True
                best_iou[i] = iou[i, j]
    return Matching(tp, matched, best_iou, ~taken, overlap_gt, overlap_iou)
