"""Loss figures and the settings sweep, from real traces of the default model (random weights) on a synthetic
scene: the terms shown are the trace's, a sweep point is the trace of that value, one point per value."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from frcnn import FrcnnError, Tracer, load_model
from frcnn.data.shapes import make_scene
from frcnn.viz.losses import TERMS, loss_counts, loss_values, sweep, sweep_figure, terms_figure


@pytest.fixture(scope="module")
def setup():
    det = load_model("default", "random", "cpu")
    tracer = Tracer(det)
    scene = make_scene(7, 1)
    image = torch.from_numpy(scene.image.copy()).permute(2, 0, 1).contiguous()
    boxes, labels = torch.from_numpy(scene.boxes.copy()), torch.from_numpy(scene.labels)
    settings = det.defaults.replace({"input.min_size": 256, "input.max_size": 512})

    def run(s):
        return tracer.run(image, s, boxes, labels)

    return run, settings, tracer, image


def test_loss_values_are_the_traces(setup):
    run, settings, tracer, image = setup
    trace = run(settings)
    values = loss_values(trace.losses)
    assert values == trace.losses.as_dict()
    assert all(math.isfinite(values[t]) for t in TERMS)
    assert math.isclose(values["total"], sum(values[t] for t in TERMS), rel_tol=1e-5)
    assert loss_values(tracer.run(image, settings).losses) == dict.fromkeys((*TERMS, "total"))
    c = loss_counts(trace)
    assert c["anchors_sampled"] <= settings.rpn.batch_size_per_image
    assert c["rois_foreground"] == int((trace.roi_targets.labels > 0).sum())


def test_sweep_traces_each_value_and_reuses_the_backbone(setup):
    run, settings, tracer, _ = setup
    run(settings)
    values = [0.5, 0.7, 0.9]
    points = sweep(run, settings, "roi.fg_iou_thresh", values)
    assert [p.value for p in points] == values
    for p in points:
        expected = run(settings.replace({"roi.fg_iou_thresh": p.value}))
        assert p.losses == expected.losses.as_dict() and p.error is None
        assert "backbone" in expected.cached
    refused = sweep(run, settings, "roi.fg_iou_thresh", [0.3])[0]  # below roi.bg_iou_thresh_hi 0.5
    assert refused.error and all(v is None for v in refused.losses.values())
    with pytest.raises(FrcnnError):
        sweep(run, settings, "rpn.batch_size_per_image", [1, 2, 3, 4, 5, 6, 7])


def test_sweep_figure_has_one_point_per_value_and_terms_figure_the_terms(setup):
    run, settings, _, _ = setup
    values = [32, 64, 256, 512]
    points = sweep(run, settings, "rpn.batch_size_per_image", values)
    fig = sweep_figure(points, "rpn.batch_size_per_image", current=256)
    lines = [d for d in fig.data if d.type == "scatter"]
    assert len(lines) == 4
    for line, term in zip(lines, TERMS, strict=True):
        assert list(line.x) == values
        np.testing.assert_allclose([y for y in line.y], [p.losses[term] for p in points])
    assert fig.layout.xaxis.type == "log" and len(fig.layout.shapes) == 4
    bars = terms_figure(run(settings).losses)
    np.testing.assert_allclose(bars.data[0].y, [run(settings).losses.as_dict()[t] for t in TERMS])
