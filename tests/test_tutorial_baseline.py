"""The benchmark's tutorial baseline (benchmarks/tutorial.py) gives the project's answers, so its timings
compare like with like (small sizes here; the benchmark checks again at the tutorial's sizes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torchvision.ops import batched_nms, box_iou

from frcnn.stages.anchors import make_anchors
from frcnn.stages.backbone import Features
from frcnn.stages.roi_pooling import pool_rois

_spec = importlib.util.spec_from_file_location("tutorial", Path(__file__).parents[1] / "benchmarks" / "tutorial.py")
tutorial = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tutorial)


def _boxes(n: int, size: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 3 + 2
    return torch.cat([xy, xy + wh], dim=1)


def test_anchors_and_iou_agree():
    ours = make_anchors([(32.0, 64.0)], (0.5, 1.0, 2.0), [(6, 7)], [16], (96, 112)).boxes
    theirs = tutorial.tutorial_anchors((6, 7), 16, (32.0, 64.0), (0.5, 1.0, 2.0))
    assert torch.equal(ours, theirs)
    gt = _boxes(5, 100, 0)
    torch.testing.assert_close(tutorial.tutorial_iou(ours, gt), box_iou(ours, gt), atol=1e-6, rtol=0)


def test_nms_keeps_the_same_set():
    boxes, scores = _boxes(400, 200, 1), torch.rand(400, generator=torch.Generator().manual_seed(2))
    for thresh in (0.3, 0.7):
        ours = batched_nms(boxes, scores, torch.zeros(400, dtype=torch.int64), thresh)
        assert set(tutorial.tutorial_nms(boxes, scores, thresh).tolist()) == set(ours.tolist())


def test_roi_pooling_agrees_inside_the_map():
    fmap = torch.randn(1, 8, 20, 20, generator=torch.Generator().manual_seed(3))
    rois = _boxes(30, 200, 4).clamp(0, 19 * 16 - 8)
    ours = pool_rois(Features((fmap,), ("0",), (16,)), rois, (320, 320), "roi_pool", 7).features
    assert torch.equal(ours, tutorial.tutorial_roi_pool(fmap, rois, 7, 1 / 16))
