"""The figures' background image: a JPEG data URL, encoded once per image and decoding to that image."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from frcnn.viz.common import Layers, add_boxes, add_points, image_data_url, image_figure


def test_image_data_url_is_a_faithful_cached_jpeg():
    rng = np.random.default_rng(0)
    image = np.repeat(np.repeat(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), 4, axis=0), 4, axis=1)
    url = image_data_url(image)
    assert url.startswith("data:image/jpeg;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))
    assert decoded.shape == image.shape
    assert np.abs(decoded.astype(int) - image.astype(int)).mean() < 8  # quality 90
    assert image_data_url(image.copy()) is url  # the same pixels: encoded once
    other = image.copy()
    other[0, 0] = 255 - other[0, 0]
    assert image_data_url(other) != url
    fig = image_figure(image)
    assert fig.data[0].source == url and fig.layout.yaxis.range == (image.shape[0] - 0.5, -0.5)


def test_layers_add_the_same_traces_in_order_at_once():
    boxes = np.array([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 12.0]])
    image = np.zeros((50, 60, 3), dtype=np.uint8)

    def draw(fig):
        add_boxes(fig, boxes, "#0072B2", "boxes", hover=["a", "b"])
        add_points(fig, boxes[:, 0], boxes[:, 1], "#E69F00", "corners", hover=["c", "d"])
        fig.data[-1].update(showlegend=False)  # the helpers' callers touch the last trace
        return fig

    one_by_one = draw(image_figure(image))
    layers = draw(Layers())
    assert len(image_figure(image).data) == 1 and len(layers.data) == 3
    at_once = layers.onto(image_figure(image))
    assert at_once.to_plotly_json() == one_by_one.to_plotly_json()
