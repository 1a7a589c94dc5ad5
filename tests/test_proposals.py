"""Proposals (paper 3.1, 3.3) against a brute-force proposal layer and a greedy NMS loop written here.

Reference pipeline, per level: top pre_nms_top_n logits by a Python sort; decode
(x = xa + tx wa, y = ya + ty ha, w = wa e^tw, h = ha e^th); clip to the image; drop boxes with a side below
min_size; sigmoid; drop scores below score_thresh; greedy NMS; then all levels by score, the best
post_nms_top_n.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from reference import greedy_nms as _greedy_nms
from reference import iou as _iou
from torchvision.ops import nms

from frcnn.settings import RPNSettings
from frcnn.stages.anchors import make_anchors
from frcnn.stages.proposals import decode, nms_steps, propose

COUNT_KEYS = ["anchors", "pre_nms_top_n", "min_size", "score_thresh", "nms", "post_nms_top_n"]


def _decode(anchor, delta) -> list[float]:
    xa, ya = (anchor[0] + anchor[2]) / 2, (anchor[1] + anchor[3]) / 2
    wa, ha = anchor[2] - anchor[0], anchor[3] - anchor[1]
    x, y = xa + delta[0] * wa, ya + delta[1] * ha
    w, h = wa * math.exp(delta[2]), ha * math.exp(delta[3])
    return [x - w / 2, y - h / 2, x + w / 2, y + h / 2]


def _brute_propose(anchors, logits, deltas, num_per_level, image_size, s: RPNSettings) -> list[int]:
    """Anchor indices of the kept proposals, best first."""
    h, w = image_size
    kept_all = []  # (score, anchor index)
    offset = 0
    for n in num_per_level:
        level_idx = sorted(range(offset, offset + n), key=lambda i: -logits[i])[:s.pre_nms_top_n]
        offset += n
        cands, boxes, scores = [], [], []
        for i in level_idx:
            x1, y1, x2, y2 = _decode(anchors[i], deltas[i])
            box = [min(max(x1, 0), w), min(max(y1, 0), h), min(max(x2, 0), w), min(max(y2, 0), h)]
            score = 1 / (1 + math.exp(-logits[i]))
            if box[2] - box[0] < s.min_size or box[3] - box[1] < s.min_size or score < s.score_thresh:
                continue
            cands.append(i)
            boxes.append(box)
            scores.append(score)
        kept_all += [(scores[k], cands[k]) for k in _greedy_nms(boxes, scores, s.nms_thresh)]
    kept_all.sort(key=lambda t: -t[0])
    return [i for _, i in kept_all[:s.post_nms_top_n]]


def _case(seed: int, multi_level: bool = False):
    """Dense, overlapping anchors on a 64 x 80 image with random logits and deltas."""
    image_size = (64, 80)
    if multi_level:
        anchors = make_anchors([(16.0, 24.0), (32.0, 48.0)], (0.5, 1.0, 2.0), [(8, 10), (4, 5)], [8, 16], image_size)
    else:
        anchors = make_anchors([(16.0, 32.0)], (0.5, 1.0, 2.0), [(8, 10)], [8], image_size)
    g = torch.Generator().manual_seed(seed)
    n = len(anchors.boxes)
    logits = torch.randn(n, generator=g) * 2
    deltas = (torch.rand(n, 4, generator=g) - 0.5) * 0.6
    return anchors, logits, deltas, image_size


SETTINGS = [
    RPNSettings(pre_nms_top_n=200, post_nms_top_n=50, nms_thresh=0.7, min_size=4.0),
    RPNSettings(pre_nms_top_n=100, post_nms_top_n=100, nms_thresh=0.5, min_size=12.0),
    RPNSettings(pre_nms_top_n=1000, post_nms_top_n=20, nms_thresh=0.3, min_size=0.0, score_thresh=0.6),
    RPNSettings(pre_nms_top_n=50, post_nms_top_n=10, nms_thresh=0.9, min_size=8.0),
]


@pytest.mark.parametrize("multi_level", [False, True])
@pytest.mark.parametrize("settings", SETTINGS)
def test_propose_equals_brute_force(settings: RPNSettings, multi_level: bool) -> None:
    for seed in range(3):
        anchors, logits, deltas, image_size = _case(seed, multi_level)
        num_per_level = anchors.num_per_level
        p = propose(anchors.boxes, logits, deltas, num_per_level, image_size, settings)
        expected = _brute_propose(anchors.boxes.tolist(), logits.tolist(), deltas.tolist(), num_per_level,
                                  image_size, settings)
        assert len(expected) > 0
        assert p.anchor_index.tolist() == expected  # same set, best first
        assert p.scores.tolist() == pytest.approx([1 / (1 + math.exp(-logits[i].item())) for i in expected])
        for box, i in zip(p.boxes.tolist(), expected, strict=True):
            x1, y1, x2, y2 = _decode(anchors.boxes[i].tolist(), deltas[i].tolist())
            h, w = image_size
            want = [min(max(x1, 0), w), min(max(y1, 0), h), min(max(x2, 0), w), min(max(y2, 0), h)]
            assert box == pytest.approx(want, abs=1e-4)
        # the level of each kept candidate is its anchor's level
        assert torch.equal(p.pre_nms_level[p.keep], anchors.level[p.anchor_index])


def test_counts_non_increasing_and_in_order() -> None:
    for settings in SETTINGS:
        for multi_level in (False, True):
            anchors, logits, deltas, image_size = _case(1, multi_level)
            p = propose(anchors.boxes, logits, deltas, anchors.num_per_level, image_size, settings)
            assert list(p.counts) == COUNT_KEYS
            values = list(p.counts.values())
            assert all(a >= b for a, b in zip(values, values[1:], strict=False)), p.counts
            assert p.counts["anchors"] == len(anchors.boxes)
            assert p.counts["pre_nms_top_n"] == sum(min(settings.pre_nms_top_n, n) for n in anchors.num_per_level)
            assert p.counts["score_thresh"] == len(p.pre_nms_boxes) == len(p.pre_nms_scores)
            assert p.counts["post_nms_top_n"] == len(p.boxes) == len(p.keep)


def test_kept_proposals_do_not_overlap_above_nms_thresh_per_level() -> None:
    settings = RPNSettings(pre_nms_top_n=300, post_nms_top_n=300, nms_thresh=0.5, min_size=0.0)
    anchors, logits, deltas, image_size = _case(2, multi_level=True)
    p = propose(anchors.boxes, logits, deltas, anchors.num_per_level, image_size, settings)
    boxes, levels = p.boxes.tolist(), p.pre_nms_level[p.keep].tolist()
    cross_level_overlap = False
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            iou = _iou(boxes[i], boxes[j])
            if levels[i] == levels[j]:
                assert iou <= settings.nms_thresh + 1e-5
            cross_level_overlap |= iou > settings.nms_thresh
    assert cross_level_overlap  # levels are suppressed separately, so overlaps across levels remain
    # and every candidate NMS dropped overlaps a better kept box of its level above the threshold
    kept = set(p.keep.tolist())
    pre, scores, lv = p.pre_nms_boxes.tolist(), p.pre_nms_scores.tolist(), p.pre_nms_level.tolist()
    for q in range(len(pre)):
        if q not in kept:
            assert any(lv[k] == lv[q] and scores[k] > scores[q] and _iou(pre[k], pre[q]) > settings.nms_thresh
                       for k in kept)


def test_raising_nms_thresh_on_this_data_never_lowers_the_count() -> None:
    anchors, logits, deltas, image_size = _case(0)
    counts = []
    for t in [0.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]:
        s = RPNSettings(pre_nms_top_n=1000, post_nms_top_n=1000, nms_thresh=t, min_size=0.0)
        p = propose(anchors.boxes, logits, deltas, anchors.num_per_level, image_size, s)
        counts.append(p.counts["nms"])
        assert p.counts["nms"] == len(_greedy_nms(p.pre_nms_boxes.tolist(), p.pre_nms_scores.tolist(), t))
    assert counts == sorted(counts), counts
    assert counts[0] < counts[-1] == len(anchors.boxes)  # at 1.0 nothing is suppressed


def test_greedy_nms_count_is_not_monotone_in_general() -> None:
    """A hand-made case where raising the threshold LOWERS the count: at 0.55 A suppresses B, so C and D
    (which overlap only B strongly) survive; at 0.65 B survives and suppresses C and D. So the monotone check
    above is a fact about its data, not a theorem about greedy NMS."""
    a, b = [0.0, 0.0, 10.0, 10.0], [2.5, 0.0, 12.5, 10.0]
    c, d = [2.5 + 30 / 17, 0.0, 12.5 + 30 / 17, 10.0], [2.5, 30 / 17, 12.5, 10.0 + 30 / 17]
    boxes, scores = [a, b, c, d], [0.9, 0.8, 0.7, 0.6]
    assert _iou(a, b) == pytest.approx(0.6)
    assert _iou(b, c) == pytest.approx(0.7) and _iou(b, d) == pytest.approx(0.7)
    assert max(_iou(a, c), _iou(a, d), _iou(c, d)) < 0.55
    assert _greedy_nms(boxes, scores, 0.55) == [0, 2, 3]
    assert _greedy_nms(boxes, scores, 0.65) == [0, 1]
    bt, st = torch.tensor(boxes), torch.tensor(scores)
    assert nms(bt, st, 0.55).tolist() == [0, 2, 3]
    assert nms(bt, st, 0.65).tolist() == [0, 1]


def _random_boxes(seed: int, n: int, extent: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = random.Random(seed)
    boxes = []
    for _ in range(n):
        x1, y1 = rng.uniform(0, extent), rng.uniform(0, extent)
        boxes.append([x1, y1, x1 + rng.uniform(2, 30), y1 + rng.uniform(2, 30)])
    scores = [rng.random() for _ in range(n)]
    assert len(set(scores)) == n
    return torch.tensor(boxes, dtype=torch.float64), torch.tensor(scores, dtype=torch.float64)


@pytest.mark.parametrize("thresh", [0.0, 0.3, 0.5, 0.7, 0.85])
def test_torchvision_nms_equals_greedy_loop(thresh: float) -> None:
    boxes, scores = _random_boxes(11, 300)
    kept = nms(boxes, scores, thresh).tolist()
    assert kept == _greedy_nms(boxes.tolist(), scores.tolist(), thresh)
    assert 1 < len(kept) < 300


@pytest.mark.parametrize("thresh", [0.1, 0.3, 0.5, 0.7])
def test_nms_steps(thresh: float) -> None:
    boxes, scores = _random_boxes(5, 200, extent=60.0)
    steps = nms_steps(boxes, scores, thresh)
    kept = [s.kept for s in steps]
    assert kept == nms(boxes, scores, thresh).tolist()
    assert kept == _greedy_nms(boxes.tolist(), scores.tolist(), thresh)
    b, sc = boxes.tolist(), scores.tolist()
    suppressed = []
    for step in steps:
        for i, iou in zip(step.suppressed.tolist(), step.suppressed_iou.tolist(), strict=True):
            assert _iou(b[step.kept], b[i]) == pytest.approx(iou, abs=1e-9)
            assert iou > thresh
            assert sc[i] < sc[step.kept]
        suppressed += step.suppressed.tolist()
    assert len(suppressed) == len(set(suppressed))
    assert not set(suppressed) & set(kept)
    assert sorted(suppressed + kept) == list(range(len(boxes)))
    assert len(suppressed) > 0
    # each box is suppressed by the FIRST (best) kept box that overlaps it above the threshold
    first_step = {}
    for step in steps:
        for i in step.suppressed.tolist():
            first_step[i] = step.kept
    for i, k in first_step.items():
        earlier = kept[:kept.index(k)]
        assert all(_iou(b[e], b[i]) <= thresh or sc[e] < sc[i] for e in earlier)


def test_nms_steps_hand_case() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [20.0, 20.0, 30.0, 30.0],
                          [0.0, 0.0, 10.0, 5.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    steps = nms_steps(boxes, scores, 0.5)
    # box 3 (best) covers half of box 0: IoU 0.5, not above 0.5, so box 0 survives and suppresses box 1
    assert [s.kept for s in steps] == [3, 0, 2]
    assert [s.suppressed.tolist() for s in steps] == [[], [1], []]
    assert steps[1].suppressed_iou.tolist() == pytest.approx([90 / 110])


def test_multi_level_nms_is_per_level() -> None:
    box = [[8.0, 8.0, 40.0, 40.0]]
    anchors = torch.tensor(box * 2)
    logits = torch.tensor([1.0, 0.5])
    deltas = torch.zeros(2, 4)
    s = RPNSettings(pre_nms_top_n=10, post_nms_top_n=10, nms_thresh=0.7, min_size=0.0)
    two_levels = propose(anchors, logits, deltas, (1, 1), (64, 64), s)
    assert two_levels.anchor_index.tolist() == [0, 1]
    assert two_levels.pre_nms_level[two_levels.keep].tolist() == [0, 1]
    one_level = propose(anchors, logits, deltas, (2,), (64, 64), s)
    assert one_level.anchor_index.tolist() == [0]


def test_pre_nms_top_n_is_per_level() -> None:
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0], [40.0, 0.0, 50.0, 10.0],
                            [0.0, 20.0, 10.0, 30.0], [20.0, 20.0, 30.0, 30.0]])
    logits = torch.tensor([5.0, 4.0, 3.0, -1.0, -2.0])
    s = RPNSettings(pre_nms_top_n=2, post_nms_top_n=2, min_size=0.0)
    p = propose(anchors, logits, torch.zeros(5, 4), (3, 2), (64, 64), s)
    assert sorted(p.pre_nms_anchor.tolist()) == [0, 1, 3, 4]  # the best two of EACH level
    assert p.anchor_index.tolist() == [0, 1]  # post-NMS top-N is over all levels


def test_clip_and_min_size_by_hand() -> None:
    anchors = torch.tensor([[-10.0, -10.0, 20.0, 20.0], [50.0, 50.0, 58.0, 70.0], [10.0, 10.0, 30.0, 30.0]])
    s = RPNSettings(pre_nms_top_n=10, post_nms_top_n=10, min_size=10.0)
    p = propose(anchors, torch.tensor([3.0, 2.0, 1.0]), torch.zeros(3, 4), (3,), (64, 64), s)
    # anchor 0 clips to [0, 0, 20, 20]; anchor 1 is 8 wide (< 10) and dropped; anchor 2 overlaps 0 by 1/7
    assert p.counts["min_size"] == 2
    assert p.anchor_index.tolist() == [0, 2]
    assert p.boxes.tolist() == [[0.0, 0.0, 20.0, 20.0], [10.0, 10.0, 30.0, 30.0]]


def test_decode_by_hand() -> None:
    anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    deltas = torch.tensor([[0.3, 0.3, math.log(1.2), math.log(1.2)]])
    assert decode(anchors, deltas).tolist()[0] == pytest.approx([2.0, 4.0, 14.0, 28.0], abs=1e-5)


def test_propose_is_deterministic() -> None:
    anchors, logits, deltas, image_size = _case(4, multi_level=True)
    a = propose(anchors.boxes, logits, deltas, anchors.num_per_level, image_size, SETTINGS[0])
    b = propose(anchors.boxes, logits, deltas, anchors.num_per_level, image_size, SETTINGS[0])
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.keep, b.keep) and a.counts == b.counts
