"""Figure building blocks shared by every stage: the image as a background, boxes as one path shape a layer.

Boxes are drawn as ONE layout shape per layer: an SVG path (``M x1,y1 H x2 V y2 H x1 Z`` a box) in the image's
coordinates, with the layer's legend entry (plotly shapes join the legend and its legend groups), so a layer of
any size is one DOM element that plotly styles once. A line *trace* with gaps between the boxes is not that:
plotly.js draws every gap-separated segment as a path element of its own and styles each on every redraw
(measured in headless chromium on 2 cores, the Anchors page's figure: about 600 elements, a stride move 532 ->
372 ms from the key press to a settled page). Hover numbers ride on a marker trace of one point per box (its
centre, or top-left corner) with ``customdata``, in the layer's legend group. Never one shape per box.

Markers are WebGL only from ``GL_MIN_POINTS`` points: a figure with any WebGL trace creates a WebGL context,
about 160 ms in a browser without a GPU (measured: headless chromium, the Anchors page), far more than a
thousand SVG markers cost.

Figures with many layers collect their traces in a :class:`Layers` and add them to the figure at once: plotly's
``add_trace`` checks every trace already in the figure, so adding n traces one at a time costs O(n^2) (measured:
37 traces, about 100 ms one at a time against 25 ms at once).

Figures carry only what is drawn, compactly (issue 17: every figure's JSON is re-sent on each redraw): arrays go out
as float32 (plotly sends numpy arrays as base64 typed arrays, so float32 is half of float64's bytes, and within a
thousandth of a pixel on images up to 8,000 px); per-point numbers ride in ``customdata`` under one
``hovertemplate`` rather than one hover string a point; a layer of thousands of grid cells is one heatmap
(:func:`add_cell_shade`: a raster, with the cell's numbers on hover), never a marker a cell.

Coordinates are the image's pixels, (x1, y1, x2, y2); the y axis points down as in the image.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.basedatatypes import BaseTraceType
from torch import Tensor

# colour-blind-safe (Okabe-Ito) roles
POSITIVE = "#009E73"  # green
NEGATIVE = "#D55E00"  # vermilion
IGNORED = "#999999"  # grey
GROUND_TRUTH = "#F0E442"  # yellow
KEPT = "#0072B2"  # blue
SUPPRESSED = "#CC79A7"  # pink
HIGHLIGHT = "#E69F00"  # orange
MISSED = "#CC79A7"  # reddish purple: ground truth no detection found (dashed), apart from FP vermilion
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

GL_MIN_POINTS = 2000  # marker traces this long draw with WebGL; shorter ones as SVG (no WebGL context)
FONT_SIZE = 13
# Fonts every system has (Arial, or its metric twin Liberation Sans on Linux), unquoted: a PNG from the toolbar is
# the figure's SVG drawn as an image, which cannot use the page's web fonts (Streamlit's theme sets Source Sans);
# its text then falls back to a wider font than the one the legend was laid out with, and entries overlap or run
# off the edge ("scoring under 0.5 (19" cut). With a system font the export measures what the page measured.
FONT_FAMILY = "Arial, Liberation Sans, Helvetica, sans-serif"
PRESENTATION_FONT_SIZE = 22


def as_numpy(x: Tensor | np.ndarray | Sequence) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def compact(x: Tensor | np.ndarray | Sequence) -> np.ndarray:
    """``x`` as sent to the browser: floats as float32 (half of float64's bytes in plotly's typed arrays), other
    dtypes as they are."""
    a = as_numpy(x)
    return a.astype(np.float32) if a.dtype.kind == "f" and a.dtype != np.float32 else a


class Layers:
    """Traces and shapes to add to a figure at once (``fig.add_traces``, one layout update); the ``add_*``
    helpers take one in place of a figure (they only call ``add_trace`` and ``add_shape`` and read ``data``)."""

    def __init__(self) -> None:
        self.data: list[BaseTraceType] = []
        self.shapes: list[go.layout.Shape] = []

    def add_trace(self, trace: BaseTraceType) -> Layers:
        self.data.append(trace)
        return self

    def add_shape(self, shape: dict) -> Layers:
        self.shapes.append(go.layout.Shape(shape))
        return self

    def onto(self, fig: go.Figure) -> go.Figure:
        """Add the collected traces and shapes to ``fig``, in order."""
        fig.add_traces(self.data)
        if self.shapes:
            fig.update_layout(shapes=[*fig.layout.shapes, *self.shapes])
        return fig


Canvas = go.Figure | Layers


def image_figure(image: np.ndarray, height: int = 640, title: str | None = None,
                 font_size: int = FONT_SIZE) -> go.Figure:
    """A figure with ``image`` (H, W, 3) uint8 as its background (a layout image: drawn once under the traces,
    cheaper for plotly to redraw than an image trace), axes in image pixels, y down."""
    h, w = image.shape[:2]
    fig = go.Figure()
    fig.add_layout_image(source=image_data_url(image), xref="x", yref="y", x=-0.5, y=-0.5, sizex=w, sizey=h,
                         xanchor="left", yanchor="top", sizing="stretch", layer="below", name="image")
    fig.update_xaxes(range=[-0.5, w - 0.5], showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(range=[h - 0.5, -0.5], showgrid=False, zeroline=False, scaleanchor="x", constrain="domain")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=70 if title else 40, b=10),
                      title=dict(text=title, y=0.995, yref="container", yanchor="top"),
                      font=dict(size=font_size, family=FONT_FAMILY),
                      legend=dict(orientation="h", yanchor="bottom", y=1.005, x=0),
                      dragmode="pan", hoverlabel=dict(font_size=font_size), uirevision="image")
    return fig


def with_system_font(fig: go.Figure) -> go.Figure:
    """``fig`` with :data:`FONT_FAMILY` unless it names a font itself (see there: PNG exports)."""
    if not fig.layout.font.family:
        fig.update_layout(font_family=FONT_FAMILY)
    return fig


def fit_legend(fig: go.Figure) -> go.Figure:
    """Keep a legend whole in a PNG export: laid out and exported with the same system font
    (:func:`with_system_font`)."""
    return with_system_font(fig)


_DATA_URLS: OrderedDict[str, str] = OrderedDict()  # image digest -> data URL (the same image, every figure)
_DATA_URLS_MAX = 32
_DATA_URLS_LOCK = threading.Lock()
JPEG_QUALITY = 90


def _encoded(image: np.ndarray) -> tuple[str, bytes]:
    """(mime type, bytes): a JPEG (quality 90, colour at full resolution: no fringes on thin coloured lines) or a
    PNG, whichever is smaller. A photo or a textured scene is a fraction of its PNG as a JPEG (the default sample:
    102 KB against 395 KB); flat drawings, screenshots and masks are smaller still as a PNG, and exact. The JPEG's
    optimised Huffman tables and progressive scans take 8% off a plain one's bytes for the very same pixels."""
    jpeg = io.BytesIO()
    try:
        Image.fromarray(image).save(jpeg, format="JPEG", quality=JPEG_QUALITY, subsampling=0,  # 4:4:4
                                    optimize=True, progressive=True)
    except OSError:  # Pillow holds an optimised JPEG in a buffer of W * H bytes; noise can need more
        jpeg = io.BytesIO()
        Image.fromarray(image).save(jpeg, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    return ("image/png", png.getvalue()) if png.tell() < jpeg.tell() else ("image/jpeg", jpeg.getvalue())


def image_data_url(image: np.ndarray) -> str:
    """The image as a data URL, a JPEG or a PNG whichever is smaller (:func:`_encoded`), so a redraw after a
    slider moves sends and decodes little. Encoded once per image; every figure reuses it."""
    image = np.ascontiguousarray(image)
    key = hashlib.sha1(image.data).hexdigest() + f"{image.shape}"
    with _DATA_URLS_LOCK:
        url = _DATA_URLS.get(key)
        if url is not None:
            _DATA_URLS.move_to_end(key)
            return url
    mime, data = _encoded(image)
    url = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    with _DATA_URLS_LOCK:
        _DATA_URLS[key] = url
        while len(_DATA_URLS) > _DATA_URLS_MAX:
            _DATA_URLS.popitem(last=False)
    return url


PATH_DECIMALS = 2  # box corners in the path, in image pixels: to a hundredth of a pixel


def box_path(boxes: np.ndarray) -> str:
    """The SVG path of every box's closed outline (N, 4) -> "M x1,y1H x2V y2H x1Z..." (the image's pixels)."""
    b = np.round(as_numpy(boxes).reshape(-1, 4).astype(np.float64), PATH_DECIMALS)
    return "".join(f"M{x1:g},{y1:g}H{x2:g}V{y2:g}H{x1:g}Z" for x1, y1, x2, y2 in b.tolist())


def segments_path(x: np.ndarray, y: np.ndarray) -> str:
    """The SVG path of straight segments (x0, y0) -> (x1, y1): ``x``, ``y`` (N, 2) each."""
    xs, ys = np.round(as_numpy(x), PATH_DECIMALS).tolist(), np.round(as_numpy(y), PATH_DECIMALS).tolist()
    return "".join(f"M{a:g},{c:g}L{b:g},{d:g}" for (a, b), (c, d) in zip(xs, ys, strict=True))


def add_path(fig: Canvas, path: str, color: str, name: str, width: float = 1.5, opacity: float = 1.0,
             dash: str | None = None, showlegend: bool = True, legendgroup: str | None = None,
             visible: bool | str = True) -> Canvas:
    """One layout shape drawing ``path`` in the image's coordinates, above the traces, with a legend entry."""
    fig.add_shape(dict(type="path", path=path, xref="x", yref="y", layer="above", opacity=opacity,
                       line=dict(color=color, width=width, dash=dash), name=name, legendgroup=legendgroup or name,
                       showlegend=showlegend, visible=visible))
    return fig


def marker_trace(n: int) -> type[go.Scatter] | type[go.Scattergl]:
    """The trace type for ``n`` markers: WebGL for many, SVG for few (see the module docstring)."""
    return go.Scattergl if n >= GL_MIN_POINTS else go.Scatter


def add_boxes(fig: Canvas, boxes: Tensor | np.ndarray, color: str, name: str, width: float = 1.5,
              opacity: float = 1.0, dash: str | None = None, hover: Sequence[str] | None = None,
              customdata: np.ndarray | None = None, hovertemplate: str | None = None, hover_at: str = "center",
              showlegend: bool = True, legendgroup: str | None = None, visible: bool | str = True,
              total: int | None = None) -> Canvas:
    """One path shape for all ``boxes`` (N, 4) (:func:`add_path`), plus a marker trace carrying hover text or data.

    The legend says how many boxes: "name (N)", or "name (N of total drawn)" when ``total`` (the layer's size
    before a cap) is more than N."""
    b = as_numpy(boxes).reshape(-1, 4)
    group = legendgroup or name
    count = f"{len(b):,} of {total:,} drawn" if total is not None and total > len(b) else f"{len(b):,}"
    add_path(fig, box_path(b), color, f"{name} ({count})", width=width, opacity=opacity, dash=dash,
             showlegend=showlegend, legendgroup=group, visible=visible)
    if customdata is not None:  # plain lists: a numpy row would come back from a click as a dict
        customdata = as_numpy(customdata).tolist()
    if len(b) and (hover is not None or customdata is not None):
        b = b.astype(np.float32)
        if hover_at == "center":
            px, py = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        else:
            px, py = b[:, 0], b[:, 1]
        fig.add_trace(marker_trace(len(px))(x=px, y=py, mode="markers", marker=dict(color=color, size=5, opacity=0.8),
                                   name=name, text=list(hover) if hover is not None else None,
                                   customdata=customdata, hovertemplate=hovertemplate or "%{text}<extra></extra>",
                                   legendgroup=group, showlegend=False, visible=visible))
    return fig


def box_hover(boxes: np.ndarray) -> list[str]:
    """"(x1, y1)-(x2, y2) w x h" per box."""
    b = as_numpy(boxes).reshape(-1, 4)
    return [f"({x1:.0f}, {y1:.0f})-({x2:.0f}, {y2:.0f}) {x2 - x1:.0f}x{y2 - y1:.0f}" for x1, y1, x2, y2 in b]


def add_points(fig: Canvas, x: np.ndarray, y: np.ndarray, color: str, name: str, size: float = 4,
               hover: Sequence[str] | None = None, customdata: np.ndarray | None = None,
               hovertemplate: str | None = None, symbol: str = "circle", opacity: float = 0.8) -> Canvas:
    x, y = compact(x), compact(y)
    customdata = compact(customdata) if customdata is not None else None
    fig.add_trace(marker_trace(len(x))(x=x, y=y, mode="markers", name=name,
                               marker=dict(color=color, size=size, symbol=symbol, opacity=opacity),
                               text=list(hover) if hover is not None else None, customdata=customdata,
                               hovertemplate=hovertemplate or ("%{text}<extra></extra>" if hover is not None
                                                               else "(%{x:.0f}, %{y:.0f})<extra></extra>")))
    return fig


def add_heatmap(fig: Canvas, values: np.ndarray, cell_size: tuple[float, float], name: str,
                colorscale: str = "Viridis", opacity: float = 0.55, zmin: float | None = None,
                zmax: float | None = None, hovertemplate: str | None = None) -> Canvas:
    """A (h, w) feature map over the image: cell (i, j) is drawn as the square [j*cw, (j+1)*cw) x [i*ch, ...)
    with ``cell_size`` = (ch, cw), the stride in original-image pixels (stride / scale)."""
    v = compact(values)
    ch, cw = cell_size
    fig.add_trace(go.Heatmap(z=v, x0=cw / 2 - 0.5, dx=cw, y0=ch / 2 - 0.5, dy=ch, name=name,
                             colorscale=colorscale, opacity=opacity, zmin=zmin, zmax=zmax, showscale=True,
                             colorbar=dict(thickness=12, len=0.8),
                             hovertemplate=hovertemplate or "cell (%{y:.0f}, %{x:.0f}): %{z:.3f}<extra></extra>"))
    return fig


def shade_scale(color: str, low: float, high: float) -> list[list]:
    """A colour scale of one hue, from ``low`` to ``high`` opacity: a raster of counts tints the image."""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return [[0.0, f"rgba({r},{g},{b},{low})"], [1.0, f"rgba({r},{g},{b},{high})"]]


def add_cell_shade(fig: Canvas, counts: np.ndarray, centre: tuple[float, float], step: tuple[float, float],
                   color: str, name: str, zmax: float, hovertemplate: str, customdata: np.ndarray | None = None,
                   opacity: tuple[float, float] = (0.08, 0.45), legendgroup: str | None = None,
                   visible: bool | str = True) -> Canvas:
    """A grid of counts (h, w) as one raster layer over the image: cell (i, j) centred on ``centre`` + (j, i) *
    ``step`` (x, y in image pixels), tinted ``color`` more the higher its count (of ``zmax``); cells counting 0
    are left out (no tint, no hover). Its numbers are on hover (``hovertemplate``: ``%{z}`` the count,
    ``%{pointNumber[0]}``, ``%{pointNumber[1]}`` the cell's row and column, ``%{customdata}`` a value a cell).

    One heatmap trace, drawn by plotly as one image: a cell costs 4 bytes (8 with ``customdata``) where a marker
    a cell with its hover string cost about 80."""
    z = np.where(counts > 0, counts, np.nan).astype(np.float32)  # (h, w); NaN: a gap
    if customdata is not None:
        customdata = np.where(counts > 0, customdata, np.nan).astype(np.float32)
    fig.add_trace(go.Heatmap(z=z, x0=centre[0], dx=step[0], y0=centre[1], dy=step[1], name=name,
                             colorscale=shade_scale(color, *opacity), zmin=0, zmax=max(zmax, 1), showscale=False,
                             showlegend=True, legendgroup=legendgroup or name, visible=visible, hoverongaps=False,
                             customdata=customdata, hovertemplate=hovertemplate))
    return fig


def styled(fig: go.Figure, presentation: bool = False) -> go.Figure:
    """Every figure the pages show: a system font (:func:`with_system_font`, so PNG exports keep their legends);
    for a projector, larger fonts and lines."""
    with_system_font(fig)
    if presentation:
        fig.update_layout(font=dict(size=PRESENTATION_FONT_SIZE), hoverlabel=dict(font_size=PRESENTATION_FONT_SIZE))
        fig.update_traces(selector=dict(mode="lines"), line_width=2.5)
        fig.update_shapes(selector=dict(type="path"), line_width=2.5)
    return fig
