"""Detections against torchvision's ``RoIHeads.postprocess_detections`` and a brute-force post-processing
written here (softmax, decode with weights (10, 10, 5, 5), clip, score threshold, drop empty boxes, per-class
greedy NMS, top-K)."""

from __future__ import annotations

import math

import pytest
import torch
from reference import greedy_nms as _greedy_nms
from reference import iou as _iou
from torchvision.models.detection.roi_heads import RoIHeads

from frcnn.settings import RoISettings
from frcnn.stages.detections import detect

IMAGE = (100, 120)  # (h, w)
COUNT_KEYS = ["candidates", "score_thresh", "min_size", "nms", "top_k"]


def _case(seed: int, num_rois: int = 60, num_classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num_rois, 2, generator=g) * torch.tensor([110.0, 90.0])
    wh = torch.rand(num_rois, 2, generator=g) * 40 + 4
    rois = torch.cat([xy, xy + wh], dim=1)  # some reach past the image: clipping matters
    logits = torch.randn(num_rois, num_classes, generator=g) * 2
    deltas = torch.randn(num_rois, 4 * num_classes, generator=g)
    return rois, logits, deltas


def _torchvision(rois, logits, deltas, s: RoISettings):
    heads = RoIHeads(None, None, None, fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=512,
                     positive_fraction=0.25, bbox_reg_weights=None, score_thresh=s.score_thresh,
                     nms_thresh=s.nms_thresh, detections_per_img=s.detections_per_img)
    boxes, scores, labels = heads.postprocess_detections(logits, deltas, [rois], [IMAGE])
    return boxes[0], scores[0], labels[0]


def _brute(rois, logits, deltas, s: RoISettings) -> list[tuple[int, int]]:
    """(roi index, class) of the detections, best first."""
    h, w = IMAGE
    by_class: dict[int, list] = {}
    for r, (roi, row, d) in enumerate(zip(rois.tolist(), logits.tolist(), deltas.tolist(), strict=True)):
        z = sum(math.exp(v) for v in row)
        xa, ya = (roi[0] + roi[2]) / 2, (roi[1] + roi[3]) / 2
        wa, ha = roi[2] - roi[0], roi[3] - roi[1]
        for k in range(1, len(row)):
            score = math.exp(row[k]) / z
            if score <= s.score_thresh:
                continue
            tx, ty, tw, th = d[4 * k] / 10, d[4 * k + 1] / 10, d[4 * k + 2] / 5, d[4 * k + 3] / 5
            x, y = xa + tx * wa, ya + ty * ha
            bw, bh = wa * math.exp(tw), ha * math.exp(th)
            box = [min(max(x - bw / 2, 0), w), min(max(y - bh / 2, 0), h),
                   min(max(x + bw / 2, 0), w), min(max(y + bh / 2, 0), h)]
            if box[2] - box[0] < 1e-2 or box[3] - box[1] < 1e-2:
                continue
            by_class.setdefault(k, []).append((score, r, box))
    kept = []
    for k, items in by_class.items():
        for i in _greedy_nms([b for _, _, b in items], [sc for sc, _, _ in items], s.nms_thresh):
            kept.append((items[i][0], items[i][1], k))
    kept.sort(key=lambda t: -t[0])
    return [(r, k) for _, r, k in kept[:s.detections_per_img]]


SETTINGS = [
    RoISettings(),
    RoISettings(score_thresh=0.0, nms_thresh=0.5, detections_per_img=100),
    RoISettings(score_thresh=0.2, nms_thresh=0.3, detections_per_img=10),
    RoISettings(score_thresh=0.05, nms_thresh=0.7, detections_per_img=1),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_detect_equals_torchvision_postprocess_detections(settings: RoISettings) -> None:
    for seed in range(4):
        rois, logits, deltas = _case(seed)
        d = detect(rois, logits, deltas, IMAGE, settings)
        boxes, scores, labels = _torchvision(rois, logits, deltas, settings)
        assert len(d.boxes) > 0
        assert torch.equal(d.boxes, boxes)
        assert torch.equal(d.scores, scores)
        assert torch.equal(d.labels, labels)


@pytest.mark.parametrize("settings", SETTINGS)
def test_detect_equals_brute_force(settings: RoISettings) -> None:
    for seed in range(3):
        rois, logits, deltas = _case(seed)
        d = detect(rois, logits, deltas, IMAGE, settings)
        assert list(zip(d.roi_index.tolist(), d.labels.tolist(), strict=True)) == _brute(rois, logits, deltas,
                                                                                         settings)
        probs = torch.softmax(logits.double(), dim=-1)
        assert d.scores.tolist() == pytest.approx(probs[d.roi_index, d.labels].tolist(), abs=1e-6)


def test_raising_score_thresh_never_adds_detections() -> None:
    rois, logits, deltas = _case(7, num_rois=100)
    previous = None
    for t in [0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9]:
        d = detect(rois, logits, deltas, IMAGE, RoISettings(score_thresh=t, nms_thresh=0.5, detections_per_img=50))
        found = set(zip(d.roi_index.tolist(), d.labels.tolist(), strict=True))
        assert torch.all(d.scores > t)
        if previous is not None:
            assert found <= previous, t  # greedy NMS decides a box only from better boxes
        previous = found
    assert len(previous) < 50


def test_no_two_same_class_detections_overlap_above_nms_thresh() -> None:
    for nms_thresh in (0.1, 0.3, 0.5):
        rois, logits, deltas = _case(3, num_rois=120)
        d = detect(rois, logits, deltas, IMAGE, RoISettings(score_thresh=0.0, nms_thresh=nms_thresh,
                                                            detections_per_img=1000))
        boxes, labels = d.boxes.tolist(), d.labels.tolist()
        cross_class = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                iou = _iou(boxes[i], boxes[j])
                if labels[i] == labels[j]:
                    assert iou <= nms_thresh + 1e-5
                else:
                    cross_class |= iou > nms_thresh
        assert cross_class  # NMS is per class: different classes may overlap


def test_counts_non_increasing() -> None:
    for settings in SETTINGS:
        rois, logits, deltas = _case(1)
        d = detect(rois, logits, deltas, IMAGE, settings)
        assert list(d.counts) == COUNT_KEYS
        values = list(d.counts.values())
        assert all(a >= b for a, b in zip(values, values[1:], strict=False)), d.counts
        assert d.counts["candidates"] == len(rois) * (logits.shape[1] - 1)
        assert d.counts["top_k"] == len(d.boxes) <= settings.detections_per_img


def test_hand_case() -> None:
    rois = torch.tensor([[10.0, 10.0, 50.0, 50.0], [12.0, 10.0, 52.0, 50.0], [200.0, 10.0, 220.0, 30.0],
                         [60.0, 60.0, 90.0, 90.0]])
    # class 1 strong on RoIs 0 and 1 (overlapping, one suppressed), class 2 on RoI 3; RoI 2 is off the image
    logits = torch.tensor([[0.0, 5.0, 0.0], [0.0, 4.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 3.0]])
    deltas = torch.zeros(4, 12)
    d = detect(rois, logits, deltas, IMAGE, RoISettings(score_thresh=0.5, nms_thresh=0.5))
    assert d.counts == {"candidates": 8, "score_thresh": 4, "min_size": 3, "nms": 2, "top_k": 2}
    assert d.roi_index.tolist() == [0, 3]
    assert d.labels.tolist() == [1, 2]
    assert d.boxes.tolist() == [[10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 90.0, 90.0]]
    p = math.exp(5) / (math.exp(5) + 2)
    assert d.scores[0].item() == pytest.approx(p, rel=1e-6)


def test_decoding_uses_class_specific_deltas_with_weights_10_10_5_5() -> None:
    rois = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # centre (20, 40), 20 x 40
    logits = torch.tensor([[0.0, 0.0, 6.0]])
    deltas = torch.zeros(1, 12)
    deltas[0, 8:12] = torch.tensor([10 * 0.25, 10 * -0.1, 5 * math.log(1.5), 5 * math.log(0.5)])  # class 2
    d = detect(rois, logits, deltas, IMAGE, RoISettings(score_thresh=0.5))
    # centre (20 + 5, 40 - 4), 30 x 20
    assert d.labels.tolist() == [2]
    assert d.boxes[0].tolist() == pytest.approx([10.0, 26.0, 40.0, 46.0], abs=1e-4)


def test_score_thresh_is_strict_even_at_zero() -> None:
    """torchvision keeps scores > score_thresh: a class whose softmax underflows to exactly 0 is dropped even
    with score_thresh 0."""
    rois = torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 90.0, 90.0]])
    logits = torch.tensor([[0.0, -200.0, 1.0], [0.0, 1.0, -200.0]])
    deltas = torch.zeros(2, 12)
    settings = RoISettings(score_thresh=0.0)
    assert (torch.softmax(logits, dim=-1) == 0).sum() == 2
    d = detect(rois, logits, deltas, IMAGE, settings)
    assert d.counts["score_thresh"] == 2
    assert sorted(zip(d.roi_index.tolist(), d.labels.tolist(), strict=True)) == [(0, 2), (1, 1)]
    assert torch.equal(d.labels, _torchvision(rois, logits, deltas, settings)[2])


def test_no_rois() -> None:
    d = detect(torch.zeros((0, 4)), torch.zeros((0, 3)), torch.zeros((0, 12)), IMAGE, RoISettings())
    assert d.boxes.shape == (0, 4) and d.labels.numel() == 0
    assert d.counts == dict.fromkeys(COUNT_KEYS, 0)
