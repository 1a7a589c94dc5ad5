"""The figures' background image: a JPEG data URL, encoded once per image and decoding to that image."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from frcnn.viz.common import image_data_url, image_figure


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
