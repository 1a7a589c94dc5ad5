"""Sweeps against brute force: each value traced afresh and scored with plain loops."""

from __future__ import annotations

import pytest
import torch

from frcnn import StageCache, Tracer, load_model
from frcnn.analysis.sweeps import detection_sweep, proposal_recall_sweep
from frcnn.data.dataset import scene_tensors
from frcnn.data.shapes import SceneConfig
from tests.reference import iou

SMALL = {"input.min_size": 160, "input.max_size": 256}


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    det = load_model("default", "random", "cpu")
    items = [scene_tensors(5, i, SceneConfig(min_side=160, max_side=200)) for i in range(3)]
    return det, items, det.defaults.replace({**SMALL, "roi.score_thresh": 0.0})


def test_proposal_recall_against_brute_force(setup):
    det, items, settings = setup
    values = [1, 10, 50, 300]
    result = proposal_recall_sweep(Tracer(det), items, settings, values)
    for value, got in zip(values, result.metrics["recall"], strict=True):
        s = settings.replace({"rpn.pre_nms_top_n": 6000, "rpn.post_nms_top_n": value})
        found = total = 0
        for image, boxes, _ in items:
            props = Tracer(det, StageCache()).run(image, s).proposals.boxes.tolist()
            for g in boxes.tolist():
                found += any(iou(p, g) >= 0.5 for p in props)
                total += 1
        assert got == pytest.approx(found / total)
    assert result.metrics["recall"] == sorted(result.metrics["recall"])  # more proposals never lose a box
    assert result.boxes == sum(len(b) for _, b, _ in items)


def _greedy(dets, gts, thresh=0.5):
    """Detections best first take the unmatched GT box of their class with the highest IoU >= thresh."""
    taken, tp = set(), 0
    for box, _, label in sorted(dets, key=lambda d: -d[1]):
        cands = [(iou(box, g), j) for j, (g, gl) in enumerate(gts) if gl == label and j not in taken]
        best = max(cands, default=(0.0, -1))
        if best[0] >= thresh:
            taken.add(best[1])
            tp += 1
    return tp


@pytest.mark.parametrize("key, values", [("roi.score_thresh", [0.0, 0.1, 0.3, 0.6]),
                                         ("roi.nms_thresh", [0.2, 0.5, 0.8])])
def test_detection_precision_recall_against_brute_force(setup, key, values):
    det, items, settings = setup
    result = detection_sweep(Tracer(det), items, settings, key, values)
    for k, value in enumerate(values):
        tp = n_det = n_gt = 0
        for image, boxes, labels in items:
            d = Tracer(det, StageCache()).run(image, settings.replace({key: value})).detections
            dets = list(zip(d.boxes.tolist(), d.scores.tolist(), d.labels.tolist(), strict=True))
            tp += _greedy(dets, list(zip(boxes.tolist(), labels.tolist(), strict=True)))
            n_det += len(dets)
            n_gt += len(boxes)
        assert result.metrics["recall"][k] == pytest.approx(tp / n_gt)
        if n_det:
            assert result.metrics["precision"][k] == pytest.approx(tp / n_det)
    if key == "roi.score_thresh":
        assert result.metrics["recall"] == sorted(result.metrics["recall"], reverse=True)
