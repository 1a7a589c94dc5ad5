"""The figures' background image: a JPEG or PNG data URL (whichever is smaller), encoded once per image and
decoding to that image; figures send float32 arrays."""

from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from frcnn.viz.common import Layers, add_boxes, add_points, box_path, image_data_url, image_figure
from tests.figures import box_layers, path_boxes


def _decoded(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def test_image_data_url_is_a_faithful_cached_jpeg_or_png_whichever_is_smaller():
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, 160)[None, :, None] + np.linspace(0, 50, 120)[:, None, None]  # a photo: smooth + noise
    photo = np.clip(ramp + rng.normal(0, 12, (120, 160, 3)), 0, 255).astype(np.uint8)
    flat = np.zeros((120, 160, 3), dtype=np.uint8)  # a drawing: few colours, sharp edges
    flat[20:60, 30:90] = (230, 40, 160)
    flat[70:72, :] = (0, 200, 255)
    for image, mime in ((photo, "jpeg"), (flat, "png")):
        url = image_data_url(image)
        assert url.startswith(f"data:image/{mime};base64,")
        for fmt, kw in (("JPEG", dict(quality=90, subsampling=0)), ("PNG", {})):
            other = io.BytesIO()
            Image.fromarray(image).save(other, format=fmt, **kw)
            assert len(url.split(",", 1)[1]) <= len(base64.b64encode(other.getvalue()))  # the smaller of the two
        decoded = _decoded(url)
        assert decoded.shape == image.shape
        assert np.abs(decoded.astype(int) - image.astype(int)).mean() < 8  # quality 90
        assert mime == "jpeg" or np.array_equal(decoded, image)  # a PNG is exact
        assert image_data_url(image.copy()) is url  # the same pixels: encoded once
        changed = image.copy()
        changed[0, 0] = 255 - changed[0, 0]
        assert image_data_url(changed) != url
        fig = image_figure(image)
        assert fig.layout.images[0].source == url and fig.layout.images[0].sizex == image.shape[1]
        assert fig.layout.yaxis.range == (image.shape[0] - 0.5, -0.5)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # more JPEG bytes than pixels: a plain JPEG then
    assert _decoded(image_data_url(noise)).shape == noise.shape


def test_boxes_and_points_go_out_as_float32():
    boxes = np.array([[1.25, 2.0, 30.0, 40.5], [5.0, 5.0, 9.0, 12.0]])  # float64 in
    fig = add_points(add_boxes(go.Figure(), boxes, "#0072B2", "boxes", hover=["a", "b"]), boxes[:, 0], boxes[:, 1],
                     "#E69F00", "corners", customdata=boxes)
    for trace in fig.data:
        assert trace.x.dtype == np.float32 and trace.y.dtype == np.float32
    assert fig.data[-1].customdata.dtype == np.float32
    assert '"dtype":"f4"' in fig.to_json()


def test_a_layer_of_boxes_is_one_path_shape_with_its_legend_entry():
    """One SVG element a layer: plotly.js draws a line trace's gap-separated segments as a path element each."""
    boxes = np.array([[1.25, 2.0, 30.0, 40.5], [5.0, 5.0, 9.004, 12.0], [-3.5, 0.0, 1e4 / 3, 7.0]])
    assert box_path(boxes) == "M1.25,2H30V40.5H1.25ZM5,5H9V12H5ZM-3.5,0H3333.33V7H-3.5Z"
    assert np.allclose(path_boxes(box_path(boxes)), boxes, atol=0.005)
    fig = add_boxes(go.Figure(), boxes, "#0072B2", "boxes", width=2, dash="dash", hover=["a", "b", "c"],
                    legendgroup="g", visible="legendonly")
    (shape,) = fig.layout.shapes
    assert (shape.type, shape.xref, shape.yref, shape.layer) == ("path", "x", "y", "above")
    assert (shape.name, shape.legendgroup, shape.showlegend, shape.visible) == ("boxes (3)", "g", True, "legendonly")
    assert (shape.line.color, shape.line.width, shape.line.dash) == ("#0072B2", 2, "dash")
    assert [t.mode for t in fig.data] == ["markers"] and fig.data[0].legendgroup == "g"  # hover rides on a trace
    assert fig.data[0].showlegend is False and fig.data[0].visible == "legendonly"
    (layer,) = box_layers(fig)
    assert np.allclose(layer.boxes, boxes, atol=0.005)
    capped = add_boxes(go.Figure(), boxes[:2], "#000", "few", total=10)
    assert capped.layout.shapes[0].name == "few (2 of 10 drawn)" and not capped.data  # no hover: no trace
    assert add_boxes(go.Figure(), np.zeros((0, 4)), "#000", "none").layout.shapes[0].name == "none (0)"


def test_layers_add_the_same_traces_and_shapes_in_order_at_once():
    boxes = np.array([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 12.0]])
    image = np.zeros((50, 60, 3), dtype=np.uint8)

    def draw(fig):
        add_boxes(fig, boxes, "#0072B2", "boxes", hover=["a", "b"])
        add_points(fig, boxes[:, 0], boxes[:, 1], "#E69F00", "corners", hover=["c", "d"])
        fig.data[-1].update(showlegend=False)  # the helpers' callers touch the last trace
        return fig

    one_by_one = draw(image_figure(image))
    layers = draw(Layers())
    assert len(image_figure(image).data) == 0 and len(image_figure(image).layout.images) == 1
    assert len(layers.data) == 2 and len(layers.shapes) == 1
    at_once = layers.onto(image_figure(image))
    assert at_once.to_plotly_json() == one_by_one.to_plotly_json()
