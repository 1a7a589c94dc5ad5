"""Numbers the proposals page shows that the trace does not hold: objectness per location, recall of the
ground truth by the proposals, and the state of greedy NMS at one step of its replay.

Shapes: k anchors per location, (H, W) a level's grid; P proposals (best first); G ground-truth boxes;
M replayed candidates. Boxes are (x1, y1, x2, y2) float pixels. Everything here is a pure function over
tensors (no streamlit), so the page only draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from frcnn.stages._iou import iou_chunks
from frcnn.stages.proposals import NMSStep, nms_steps

REDUCTIONS = ("max", "mean")  # how the k anchors of a location become one objectness


def objectness_per_location(logits: Tensor, reduce: str = "max") -> Tensor:
    """P(object) of one level per grid location: sigmoid of the k logits (k, H, W), then their max or mean.

    Returns: (H, W) float in [0, 1].
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    prob = torch.sigmoid(logits.detach().float())  # (k, H, W)
    return prob.amax(dim=0) if reduce == "max" else prob.mean(dim=0)


def first_hits(boxes: Tensor, gt_boxes: Tensor, iou_thresh: float) -> Tensor:
    """For each ground-truth box, the rank (index into ``boxes``, best first) of the first box with
    IoU >= ``iou_thresh``, or P when none reaches it. Args: boxes (P, 4), gt_boxes (G, 4). Returns (G,) int64."""
    p, g = len(boxes), len(gt_boxes)
    if g == 0:
        return torch.zeros(0, dtype=torch.int64)
    if p == 0:
        return torch.zeros(g, dtype=torch.int64)
    firsts = torch.full((g,), p, dtype=torch.int64)
    for start, iou in iou_chunks(gt_boxes.float().cpu(), boxes.float().cpu()):  # (g', P), a chunk of GT at a time
        hit = iou >= iou_thresh
        first = hit.int().argmax(dim=1)  # first True per GT box (0 where none)
        firsts[start:start + len(first)] = torch.where(hit.any(dim=1), first, p)
    return firsts


def recall_at(boxes: Tensor, gt_boxes: Tensor, thresholds: Sequence[float] = (0.5, 0.7)) -> dict[float, float]:
    """Share of ground-truth boxes covered by some box with IoU >= t, per threshold t (nan without GT)."""
    g = len(gt_boxes)
    return {float(t): float((first_hits(boxes, gt_boxes, t) < len(boxes)).sum()) / g if g else float("nan")
            for t in thresholds}


def recall_curve(boxes: Tensor, gt_boxes: Tensor, iou_thresh: float) -> Tensor:
    """Recall when only the first n boxes (best first) are kept, for n = 1..P. Returns (P,) float."""
    p, g = len(boxes), len(gt_boxes)
    if p == 0 or g == 0:
        return torch.zeros(p)
    first = first_hits(boxes, gt_boxes, iou_thresh)
    found_at = torch.bincount(first, minlength=p + 1)[:p]  # GT boxes first covered by box n
    return found_at.cumsum(0).float() / g


def top_candidates(scores: Tensor, m: int, levels: Tensor | None = None, level: int | None = None) -> Tensor:
    """Indices of the ``m`` best-scoring candidates (of one FPN level when ``level`` is given), best first."""
    idx = torch.arange(len(scores))
    s = scores.detach().cpu()
    if level is not None and levels is not None:
        idx = idx[levels.cpu() == level]
        s = s[idx]
    order = torch.argsort(s, descending=True, stable=True)[:max(0, m)]
    return idx[order]


@dataclass(frozen=True)
class NMSState:
    """Greedy NMS after ``step`` of its replay (1-based): every candidate is in exactly one field."""

    kept_before: Tensor  # (.,) int64 kept at earlier steps
    kept: int  # kept at this step
    suppressed: Tensor  # (S,) int64 suppressed at this step by ``kept``
    suppressed_iou: Tensor  # (S,) their IoU with ``kept``
    suppressed_before: Tensor  # (.,) int64 suppressed at earlier steps
    remaining: Tensor  # (.,) int64 not decided yet (lower scores, to be visited later)


def replay(boxes: Tensor, scores: Tensor, iou_thresh: float) -> list[NMSStep]:
    """The greedy NMS loop over ``boxes`` (M, 4), one step per kept box (``nms_steps``, torchvision's kept set)."""
    return nms_steps(boxes.float().cpu(), scores.float().cpu(), iou_thresh)


def nms_state(steps: Sequence[NMSStep], num_boxes: int, step: int) -> NMSState:
    """Where the replay stands after ``step`` (1..len(steps)) of ``steps`` over ``num_boxes`` candidates."""
    if not 1 <= step <= len(steps):
        raise ValueError(f"step must be in [1, {len(steps)}], got {step}")
    done = steps[:step - 1]
    now = steps[step - 1]
    empty = torch.zeros(0, dtype=torch.int64)
    kept_before = torch.tensor([s.kept for s in done], dtype=torch.int64)
    suppressed_before = torch.cat([s.suppressed.cpu() for s in done]) if done else empty
    decided = torch.zeros(num_boxes, dtype=torch.bool)
    for part in (kept_before, suppressed_before, now.suppressed.cpu(), torch.tensor([now.kept])):
        decided[part] = True
    return NMSState(kept_before, int(now.kept), now.suppressed.cpu(), now.suppressed_iou.cpu(),
                    suppressed_before, torch.where(~decided)[0])
