"""Backbone figure: the heatmap is the feature map's mean (or a channel), laid over the right image cells."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from frcnn.analysis.features import cell_size, feature_map_values, top_channels
from frcnn.models import load_model
from frcnn.trace import Tracer
from frcnn.viz.backbone import feature_figure
from frcnn.viz.overview import pipeline_dot, stage_times_figure


@pytest.fixture(scope="module")
def trace():
    torch.manual_seed(0)
    det = load_model("default", "random", "cpu")
    image = (torch.rand(3, 200, 300) * 255).to(torch.uint8)
    return Tracer(det).run(image, det.defaults.replace({"input.min_size": 256, "input.max_size": 400})), image


def test_cell_size_is_stride_over_scale(trace):
    t, _ = trace
    ch, cw = cell_size(t)
    sy, sx = t.preprocess.scale
    (stride,) = t.features.strides
    assert stride == 8  # the default model's
    assert (ch, cw) == pytest.approx((stride / sy, stride / sx))
    assert cw == pytest.approx(stride * 300 / t.preprocess.image_size[1])


def test_heatmap_is_the_mean_or_a_channel(trace):
    t, image = trace
    fmap = t.features.maps[0][0]
    np.testing.assert_allclose(feature_map_values(t), fmap.mean(0).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(feature_map_values(t, channel=3), fmap[3].numpy())
    top = top_channels(t, k=4)
    means = fmap.mean(dim=(1, 2))
    assert float(means[top[0]]) == float(means.max())
    fig = feature_figure(image.permute(1, 2, 0).numpy(), t, channel=3)
    heat = next(tr for tr in fig.data if tr.type == "heatmap")
    np.testing.assert_array_equal(np.asarray(heat.z), fmap[3].numpy())
    assert heat.dx == pytest.approx(cell_size(t)[1])
    (grid,) = [s for s in fig.layout.shapes if s.name and s.name.startswith("feature cells")]  # one path shape
    assert f"{fmap.shape[-1]}×{fmap.shape[-2]}" in grid.name and grid.type == "path"
    segments = re.findall(r"M([^,]+),([^L]+)L([^,]+),([^M]+)", grid.path)  # one "M x0,y0 L x1,y1" a grid line
    assert "".join(f"M{a},{b}L{c},{d}" for a, b, c, d in segments) == grid.path
    seg = np.array(segments, dtype=float)  # (L, 4): x0, y0, x1, y1
    h, w = image.shape[-2:]
    ch, cw = cell_size(t)
    vertical = seg[:, 0] == seg[:, 2]
    assert np.allclose(seg[vertical, 0], [j * cw for j in range(fmap.shape[-1] + 1) if j * cw <= w], atol=0.005)
    assert np.allclose(seg[~vertical, 1], [i * ch for i in range(fmap.shape[-2] + 1) if i * ch <= h], atol=0.005)
    assert (seg[vertical, 1] == 0).all() and (seg[vertical, 3] == h).all() and (seg[~vertical, 2] == w).all()


def test_pipeline_diagram_carries_the_counts(trace):
    t, _ = trace
    dot = pipeline_dot(t)
    c = t.counts()
    assert f"anchors\\n{c['anchors']:,}" in dot and f"{c['detections']:,}" in dot and "no ground truth" in dot
    fig = stage_times_figure(t)
    assert list(fig.data[0].y) == list(t.timings_ms)
    assert tuple(fig.layout.xaxis.range) == (0, 1.3 * max(t.timings_ms.values()))  # the longest bar's label fits
    assert "from the cache" not in fig.layout.title.text
    cached = replace(t, timings_ms=dict.fromkeys(t.timings_ms, 0.0), cached=tuple(t.timings_ms))
    again = stage_times_figure(cached)  # every stage from the cache: a 0-1 ms axis, not plotly's -1..1
    assert tuple(again.layout.xaxis.range) == (0, 1) and "every stage from the cache" in again.layout.title.text
    assert list(again.data[0].text) == ["cached"] * len(t.timings_ms)
