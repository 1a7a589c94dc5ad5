"""proposal_stats against brute-force references: objectness per location, recall and its curve, the
candidates of the NMS replay and the replay's state at each step (against torchvision's nms)."""

from __future__ import annotations

import math
import random

import pytest
import torch
from reference import iou as _iou
from torchvision.ops import nms

from frcnn.analysis.proposals import (
    first_hits,
    nms_state,
    objectness_per_location,
    recall_at,
    recall_curve,
    replay,
    top_candidates,
)


def _random_boxes(rng: random.Random, n: int, size: float = 100.0) -> torch.Tensor:
    out = []
    for _ in range(n):
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        out.append([x, y, x + rng.uniform(5, 40), y + rng.uniform(5, 40)])
    return torch.tensor(out).reshape(-1, 4)


def _brute_recall(boxes, gt, t, n=None) -> float:
    boxes = boxes.tolist()[:n] if n is not None else boxes.tolist()
    found = sum(any(_iou(b, g) >= t for b in boxes) for g in gt.tolist())
    return found / len(gt)


def test_objectness_per_location_is_max_or_mean_of_the_sigmoids():
    logits = torch.randn(3, 4, 5)
    top = objectness_per_location(logits, "max")
    mean = objectness_per_location(logits, "mean")
    for i in range(4):
        for j in range(5):
            probs = [1 / (1 + math.exp(-float(logits[a, i, j]))) for a in range(3)]
            assert top[i, j] == pytest.approx(max(probs), abs=1e-6)
            assert mean[i, j] == pytest.approx(sum(probs) / 3, abs=1e-6)
    with pytest.raises(ValueError):
        objectness_per_location(logits, "median")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_and_its_curve_match_a_brute_force_count(seed):
    rng = random.Random(seed)
    boxes, gt = _random_boxes(rng, 40), _random_boxes(rng, 6)
    for t in (0.3, 0.5, 0.7):
        assert recall_at(boxes, gt, (t,))[t] == pytest.approx(_brute_recall(boxes, gt, t))
        curve = recall_curve(boxes, gt, t)
        assert len(curve) == 40
        for n in (1, 5, 17, 40):
            assert float(curve[n - 1]) == pytest.approx(_brute_recall(boxes, gt, t, n))
        assert bool((curve[1:] >= curve[:-1]).all())


def test_recall_edge_cases():
    gt = torch.tensor([[0.0, 0, 10, 10]])
    assert recall_at(torch.tensor([[0.0, 0, 10, 10]]), gt) == {0.5: 1.0, 0.7: 1.0}
    assert recall_at(torch.zeros(0, 4), gt) == {0.5: 0.0, 0.7: 0.0}
    assert math.isnan(recall_at(torch.zeros(3, 4), torch.zeros(0, 4))[0.5])
    assert first_hits(torch.tensor([[50.0, 50, 60, 60], [0, 0, 10, 10]]), gt, 0.5).tolist() == [1]
    assert len(recall_curve(torch.zeros(0, 4), gt, 0.5)) == 0


def test_top_candidates_best_first_and_per_level():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3])
    levels = torch.tensor([0, 1, 0, 1, 0])
    assert top_candidates(scores, 3).tolist() == [1, 3, 2]
    assert top_candidates(scores, 10, levels, 0).tolist() == [2, 4, 0]
    assert top_candidates(scores, 1, levels, 1).tolist() == [1]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("thresh", [0.0, 0.3, 0.7])
def test_replay_states_partition_the_candidates_and_agree_with_torchvision(seed, thresh):
    rng = random.Random(seed)
    boxes = _random_boxes(rng, 30, size=60)
    scores = torch.tensor([rng.random() for _ in range(30)])
    steps = replay(boxes, scores, thresh)
    assert [s.kept for s in steps] == nms(boxes, scores, thresh).tolist()
    for step in range(1, len(steps) + 1):
        st = nms_state(steps, 30, step)
        parts = [st.kept_before, torch.tensor([st.kept]), st.suppressed, st.suppressed_before, st.remaining]
        every = torch.cat(parts).sort().values
        assert every.tolist() == list(range(30))  # each candidate in exactly one part
        for i, v in zip(st.suppressed.tolist(), st.suppressed_iou.tolist(), strict=True):
            assert v == pytest.approx(_iou(boxes[st.kept].tolist(), boxes[i].tolist()), abs=1e-5)
            assert v > thresh and scores[i] <= scores[st.kept]
        for i in st.remaining.tolist():  # still to visit: below the kept box and not overlapping a kept box
            assert scores[i] <= scores[st.kept]
            for k in st.kept_before.tolist() + [st.kept]:
                assert _iou(boxes[k].tolist(), boxes[i].tolist()) <= thresh + 1e-6
    last = nms_state(steps, 30, len(steps))
    assert len(last.remaining) == 0
    with pytest.raises(ValueError):
        nms_state(steps, 30, len(steps) + 1)
