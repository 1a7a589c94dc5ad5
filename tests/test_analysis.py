"""The analysis layer against brute force: one matching (the drawn detections' is the full one's restricted, the
Compare page's "only in" is the same-class best overlap), one sweep table and engine, one class-name lookup, and
figures that draw a matching passed in exactly as one they compute."""

from __future__ import annotations

import pytest
import torch

from frcnn import FrcnnError, Tracer, load_model
from frcnn.analysis.compare import only_in
from frcnn.analysis.losses import TERMS
from frcnn.analysis.matching import best_overlap, match_detections
from frcnn.analysis.naming import class_name
from frcnn.analysis.sweeps import (
    PLOTTED,
    SWEEPS,
    detection_sweep,
    loss_sweep,
    proposal_recall_sweep,
    run_sweep,
    sweep_settings,
    sweeps_of,
)
from frcnn.data.shapes import make_scene
from frcnn.stages.losses import Losses
from frcnn.viz.common import GROUND_TRUTH, GROUND_TRUTH_WIDTH
from frcnn.viz.detections import detections_figure
from frcnn.viz.roi import detections_rows
from tests.reference import iou


def _boxes(n: int, gen: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * 80
    wh = torch.rand(n, 2, generator=gen) * 30 + 2
    return torch.cat([xy, xy + wh], 1)  # (n, 4)


@pytest.mark.parametrize("seed", range(5))
def test_the_top_detections_matching_is_the_full_ones_restricted(seed):
    gen = torch.Generator().manual_seed(seed)
    d, g = 30, 8
    boxes, gt = _boxes(d, gen), _boxes(g, gen)
    scores = (torch.rand(d, generator=gen) * 4).round() / 4  # ties
    labels, gt_labels = torch.randint(1, 3, (d,), generator=gen), torch.randint(1, 3, (g,), generator=gen)
    full = match_detections(boxes, scores, labels, gt, gt_labels, 0.3)
    for t in (0.0, 0.25, 0.5, 1.0, 2.0):
        keep = scores >= t
        mine = full.of_top(keep)
        alone = match_detections(boxes[keep], scores[keep], labels[keep], gt, gt_labels, 0.3)
        for field in ("true_positive", "matched_gt", "iou", "missed", "overlap_gt", "overlap_iou"):
            torch.testing.assert_close(getattr(mine, field), getattr(alone, field))


def test_best_overlap_and_only_in_against_brute_force():
    gen = torch.Generator().manual_seed(3)
    a, b = _boxes(12, gen), _boxes(9, gen)
    la, lb = torch.randint(1, 3, (12,), generator=gen), torch.randint(1, 3, (9,), generator=gen)
    best, index = best_overlap(a, la, b, lb)
    for i in range(12):
        same = [(iou(a[i].tolist(), b[j].tolist()), j) for j in range(9) if int(lb[j]) == int(la[i])]
        value, j = max(same, default=(0.0, -1))
        assert float(best[i]) == pytest.approx(value, abs=1e-6)
        assert int(index[i]) == (j if value > 0 else -1)
    assert only_in(a, la, b, lb, 0.4).tolist() == (best < 0.4).tolist()
    assert only_in(a, None, b[:0], None).all() and len(only_in(a[:0], None, b, None)) == 0


def test_one_sweep_table_and_its_settings():
    assert {s.measure for s in SWEEPS.values()} == {"losses", "recall", "detections"}
    assert all(name == s.key for name, s in sweeps_of("losses").items())  # the Losses page names them by key
    base = load_model("default", "random", "cpu").defaults
    runs = sweep_settings(base, "roi.score_thresh", [0.1, 0.4])
    assert [s.roi.score_thresh for s in runs] == [0.1, 0.4]
    with pytest.raises(FrcnnError):
        sweep_settings(base, "roi.fg_iou_thresh", [0.3])  # below roi.bg_iou_thresh_hi
    (refused,) = sweep_settings(base, "roi.fg_iou_thresh", [0.3], keep_refused=True)
    assert isinstance(refused, FrcnnError)


def test_the_loss_terms_are_the_losses_fields():
    assert TERMS == ("rpn_objectness", "rpn_box", "roi_classifier", "roi_box")
    zero = torch.tensor(0.0)
    assert tuple(Losses(zero, zero, zero, zero).as_dict()) == (*TERMS, "total")


def test_class_name():
    names = ("__background__", "ring", "cross")
    assert [class_name(names, k) for k in (0, 1, 2, 3)] == ["background", "ring", "cross",
                                                            "class 3 (not the model's)"]


@pytest.fixture(scope="module")
def traced():
    det = load_model("default", "random", "cpu")
    tracer = Tracer(det)
    scene = make_scene(7, 1)
    image = torch.from_numpy(scene.image.copy()).permute(2, 0, 1).contiguous()
    boxes, labels = torch.from_numpy(scene.boxes.copy()), torch.from_numpy(scene.labels)
    settings = det.defaults.replace({"input.min_size": 256, "input.max_size": 512, "roi.score_thresh": 0.0})
    return tracer, image, boxes, labels, settings, scene.image


def test_figures_draw_a_matching_passed_in_as_one_they_compute(traced):
    tracer, image, boxes, labels, settings, image_np = traced
    trace = tracer.run(image, settings, boxes, labels)
    d = trace.detections
    m = match_detections(d.boxes, d.scores, d.labels, trace.gt_boxes, trace.gt_labels, 0.5)
    for min_score in (0.0, 0.3):
        given = detections_figure(image_np, trace, 0.5, min_score=min_score, matching=m)
        own = detections_figure(image_np, trace, 0.5, min_score=min_score)
        assert given.to_json() == own.to_json()
    assert detections_rows(trace, 0.5, matching=m) == detections_rows(trace, 0.5)
    gt = [s for s in own.layout.shapes if s.name and s.name.startswith("ground truth")]
    assert gt and all(s.line.color == GROUND_TRUTH and s.line.width == GROUND_TRUTH_WIDTH for s in gt)


def test_run_sweep_runs_the_tables_sweeps(traced):
    tracer, image, boxes, labels, settings, _ = traced
    items = [(image, boxes, labels)]
    recall = SWEEPS["proposal recall vs post-NMS top-N"]
    got = run_sweep(tracer, items, settings, recall, [10, 100])
    assert got == proposal_recall_sweep(tracer, items, settings, [10, 100])
    assert set(PLOTTED["recall"]) <= set(got.metrics) and got.boxes == len(boxes)
    score = SWEEPS["detections vs score threshold"]
    got = run_sweep(tracer, items, settings, score, [0.0, 0.5])
    assert got == detection_sweep(tracer, items, settings, "roi.score_thresh", [0.0, 0.5])
    assert set(PLOTTED["detections"]) <= set(got.metrics)
    with pytest.raises(FrcnnError):
        run_sweep(tracer, items, settings, SWEEPS["rpn.fg_iou_thresh"])


def test_the_loss_sweep_runs_on_the_one_engine(traced):
    tracer, image, boxes, labels, settings, _ = traced

    def run(s):
        return tracer.run(image, s, boxes, labels)

    points = loss_sweep(run, settings, "roi.fg_iou_thresh", [0.3, 0.6])
    assert points[0].error and all(v is None for v in points[0].losses.values())
    expected = run(settings.replace({"roi.fg_iou_thresh": 0.6})).losses.as_dict()
    assert points[1].error is None and points[1].losses == expected
