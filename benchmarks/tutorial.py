"""The tutorial baseline: the straightforward way many Faster R-CNN tutorials write four steps, kept here
(and only here) to measure the project's stages against, at the tutorial's sizes: an 800x800 input, a
50x50 stride-16 feature map, 22,500 anchors, 6,000 -> 300 proposals from a real RPN output, 128 RoIs.

- anchors: a Python double loop over the 2,500 centres and the 9 (ratio, scale) pairs, writing tensor rows;
- IoU: a loop over the ground-truth boxes, each against every anchor (the scene's boxes, and 20 for a
  crowded image);
- NMS: a while loop that takes the best remaining box and drops the rest above the IoU threshold;
- RoI pooling: a Python loop over the RoIs, cropping each (quantised like RoIPool) and calling
  ``AdaptiveMaxPool2d``.

Each baseline follows torchvision's conventions (anchor centres at ``x * stride``, half-sizes rounded; RoIPool's
rounding), so both sides give the same answer and the comparison checks it: equal anchors, IoU within 1e-6,
the same kept set after NMS (sets, not order: ties may order differently), equal pooled features.

    python benchmarks/tutorial.py [--repeat 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from frcnn.stages.anchors import make_anchors  # noqa: E402
from frcnn.stages.backbone import Features  # noqa: E402
from frcnn.stages.roi_pooling import pool_rois  # noqa: E402

SIZES = (128.0, 256.0, 512.0)  # the paper's scales 8, 16, 32 on a 16-px base
RATIOS = (0.5, 1.0, 2.0)  # h / w
STRIDE = 16
GRID = (50, 50)  # an 800x800 input at stride 16
IMAGE = (800, 800)


# ------------------------------------------------------------------------------------------ the baseline
def tutorial_anchors(grid: tuple[int, int] = GRID, stride: int = STRIDE, sizes=SIZES, ratios=RATIOS) -> Tensor:
    """(H * W * 9, 4): for each centre (row-major), for each ratio, for each size; a row at a time."""
    h, w = grid
    k = len(ratios) * len(sizes)
    anchors = torch.zeros((h * w * k, 4))
    i = 0
    for y in range(h):
        for x in range(w):
            cx, cy = x * stride, y * stride
            for r in ratios:
                for s in sizes:
                    hh = s * r ** 0.5
                    ww = s / r ** 0.5
                    anchors[i] = torch.tensor([cx + round(-ww / 2), cy + round(-hh / 2),
                                               cx + round(ww / 2), cy + round(hh / 2)])
                    i += 1
    return anchors


def tutorial_iou(anchors: Tensor, gt: Tensor) -> Tensor:
    """(A, G): one ground-truth box at a time against every anchor."""
    out = torch.zeros((len(anchors), len(gt)))
    area_a = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    for j, g in enumerate(gt):
        ix1 = torch.maximum(anchors[:, 0], g[0])
        iy1 = torch.maximum(anchors[:, 1], g[1])
        ix2 = torch.minimum(anchors[:, 2], g[2])
        iy2 = torch.minimum(anchors[:, 3], g[3])
        inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
        area_g = (g[2] - g[0]) * (g[3] - g[1])
        out[:, j] = inter / (area_a + area_g - inter)
    return out


def tutorial_nms(boxes: Tensor, scores: Tensor, thresh: float) -> Tensor:
    """Indices kept, best first: take the best remaining box, drop every other one above ``thresh``."""
    order = scores.argsort(descending=True)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.numel() > 0:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        ix1 = torch.maximum(boxes[rest, 0], boxes[i, 0])
        iy1 = torch.maximum(boxes[rest, 1], boxes[i, 1])
        ix2 = torch.minimum(boxes[rest, 2], boxes[i, 2])
        iy2 = torch.minimum(boxes[rest, 3], boxes[i, 3])
        inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= thresh]
    return torch.tensor(keep, dtype=torch.int64)


def tutorial_roi_pool(fmap: Tensor, rois: Tensor, output_size: int, scale: float) -> Tensor:
    """(R, C, out, out): crop each RoI (RoIPool's rounding) and max-pool it with AdaptiveMaxPool2d."""
    pool = nn.AdaptiveMaxPool2d(output_size)
    out = []
    for x1, y1, x2, y2 in rois.tolist():
        c1, r1 = _round(x1 * scale), _round(y1 * scale)  # C's round (half away from zero), as RoIPool
        c2, r2 = _round(x2 * scale), _round(y2 * scale)
        crop = fmap[0, :, r1:max(r2, r1) + 1, c1:max(c2, c1) + 1]
        out.append(pool(crop))
    return torch.stack(out)


def _round(v: float) -> int:
    return int(math.floor(v + 0.5))


# ---------------------------------------------------------------------------------------- the inputs
def rpn_candidates(n: int = 6000) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A real RPN output at the tutorial's sizes: the vgg16 model (the paper's) on an 800x800 scene.

    Returns (pre-NMS boxes (n, 4) and scores (n,), the conv5_3 map (1, 512, 50, 50), ground truth (G, 4)),
    all in network-input pixels.
    """
    from frcnn import StageCache, Tracer, load_model
    from frcnn.data.dataset import scene_tensors
    from frcnn.data.shapes import SceneConfig

    det = load_model("vgg16", "auto", "cpu")  # offline: the seeded random model
    image, gt, labels = scene_tensors(2026, 1, SceneConfig(min_side=800, max_side=800))
    settings = det.defaults.replace({"input.min_size": 800, "input.max_size": 800, "rpn.pre_nms_top_n": n,
                                     "rpn.post_nms_top_n": 300, "rpn.min_size": 0.0})
    trace = Tracer(det, StageCache()).run(image, settings)
    sy, sx = trace.preprocess.scale
    scale = torch.tensor([sx, sy, sx, sy])
    p = trace.proposals
    return p.pre_nms_boxes * scale, p.pre_nms_scores, trace.features.maps[0], gt * scale


# ------------------------------------------------------------------------------------------- the runs
def _median_ms(fn: Callable[[], object], repeat: int, min_sample_s: float = 0.05) -> float:
    """Median over ``repeat`` samples of the mean time of one call, after a warm-up; like ``timeit``, a sample
    runs ``fn`` as many times as it takes to last ``min_sample_s``, so a 1-ms step is not timed off one call."""
    start = time.perf_counter()
    fn()  # warm-up, and how long a call takes
    calls = max(1, math.ceil(min_sample_s / max(time.perf_counter() - start, 1e-6)))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) * 1000 / calls)
    return statistics.median(times)


def compare(repeat: int = 5) -> list[dict]:
    """Each step: tutorial ms, project ms, speed-up, and whether both gave the same answer."""
    boxes, scores, fmap, gt = rpn_candidates()
    rows = []

    def project_anchors() -> Tensor:
        return make_anchors([SIZES], RATIOS, [GRID], [STRIDE], IMAGE).boxes

    ours, theirs = project_anchors(), tutorial_anchors()
    same = torch.equal(ours.sort(dim=0).values, theirs.sort(dim=0).values) and torch.equal(ours, theirs)
    rows.append(_row("anchors (22,500)", _median_ms(tutorial_anchors, repeat), _median_ms(project_anchors, repeat),
                     same, "Python double loop writing rows vs torchvision AnchorGenerator"))

    anchors = ours
    many = torch.cat([gt + 7.0 * i for i in range(math.ceil(20 / len(gt)))])[:20]  # a crowded image: 20 boxes
    for boxes_gt in (gt, many):
        # (G, A), as frcnn.stages.anchor_targets calls it
        same = torch.allclose(box_iou(boxes_gt, anchors).T, tutorial_iou(anchors, boxes_gt), atol=1e-6)
        rows.append(_row(f"IoU (22,500 x {len(boxes_gt)} GT)",
                         _median_ms(lambda b=boxes_gt: tutorial_iou(anchors, b), repeat),
                         _median_ms(lambda b=boxes_gt: box_iou(b, anchors), repeat), same,
                         "loop over GT boxes vs torchvision.ops.box_iou"))

    level = torch.zeros(len(boxes), dtype=torch.int64)

    def project_nms() -> Tensor:
        return batched_nms(boxes, scores, level, 0.7)[:300]  # what frcnn.stages.proposals.propose runs

    kept_ours, kept_theirs = project_nms(), tutorial_nms(boxes, scores, 0.7)[:300]
    same = set(kept_ours.tolist()) == set(kept_theirs.tolist())
    rows.append(_row(f"NMS ({len(boxes):,} -> 300)", _median_ms(lambda: tutorial_nms(boxes, scores, 0.7), repeat),
                     _median_ms(project_nms, repeat), same, "while loop vs torchvision.ops.batched_nms"))

    h, w = fmap.shape[-2:]
    rois = boxes[kept_ours[:128]].clone()
    rois[:, 0::2] = rois[:, 0::2].clamp(0, (w - 1) * STRIDE - 8)  # inside the map after rounding, where
    rois[:, 1::2] = rois[:, 1::2].clamp(0, (h - 1) * STRIDE - 8)  # RoIPool and a plain crop agree
    feats = Features((fmap,), ("0",), (STRIDE,))

    def project_pool() -> Tensor:
        return pool_rois(feats, rois, IMAGE, "roi_pool", 7).features

    same = torch.equal(project_pool(), tutorial_roi_pool(fmap, rois, 7, 1 / STRIDE))
    rows.append(_row(f"RoI pooling ({len(rois)} RoIs, {fmap.shape[1]} ch)",
                     _median_ms(lambda: tutorial_roi_pool(fmap, rois, 7, 1 / STRIDE), repeat),
                     _median_ms(project_pool, repeat), same, "loop of AdaptiveMaxPool2d vs torchvision.ops.roi_pool"))
    return rows


def _row(step: str, tutorial_ms: float, project_ms: float, same: bool, how: str) -> dict:
    return {"step": step, "tutorial_ms": round(tutorial_ms, 3), "project_ms": round(project_ms, 3),
            "speedup": round(tutorial_ms / max(project_ms, 1e-9), 1), "same_answer": bool(same), "how": how}


def print_table(rows: list[dict]) -> None:
    print(f"{'step':<34}{'tutorial ms':>13}{'project ms':>12}{'speed-up':>10}  same answer")
    for r in rows:
        print(f"{r['step']:<34}{r['tutorial_ms']:>13.2f}{r['project_ms']:>12.2f}{r['speedup']:>9.1f}x  "
              f"{'yes' if r['same_answer'] else 'NO'}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json")
    args = p.parse_args()
    rows = compare(args.repeat)
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
