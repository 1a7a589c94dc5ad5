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
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

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
PRESENTATION_FONT_SIZE = 22  # px: every text of a figure in presentation mode (ticks, hover, axis titles), at least
PRESENTATION_LEGEND_SIZE = 19  # px: legend entries in presentation mode (a room reads 18 px; 22 px legends of six
# long entries took half the height of a figure at 1280x720)
PRESENTATION_TITLE_SIZE = 24  # px: a figure's title in presentation mode
PRESENTATION_LABEL_SIZE = 18  # px: annotations in presentation mode (box labels, IoU labels), at least
LABEL_FONT_SIZE = 16  # px: a box's "class score" label (:func:`add_box_labels`)
TITLE_CHARS = 48  # characters a line of a figure's title in presentation mode (26 px: about 600 px)
_TITLE_BREAKS = re.compile(r"(?<=· )|(?<=: )|(?<=; )")  # not ", ": "cell (36, 43)" stays whole


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


GROUND_TRUTH_WIDTH = 2.5  # px: ground truth's line in every figure


def add_ground_truth(fig: Canvas, boxes: Tensor | np.ndarray, name: str = "ground truth",
                     hover: Sequence[str] | None = None, **kwargs: Any) -> Canvas:
    """Ground truth as every figure draws it: yellow (:data:`GROUND_TRUTH`), solid, :data:`GROUND_TRUTH_WIDTH`."""
    return add_boxes(fig, boxes, GROUND_TRUTH, name, width=GROUND_TRUTH_WIDTH, hover=hover, **kwargs)


def text_colour(background: str) -> str:
    """Black or white, whichever reads better on ``background`` ("#rrggbb"): its relative luminance (WCAG)."""
    channels = [int(background[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return "#000000" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 else "#ffffff"


def add_box_labels(fig: go.Figure, boxes: Tensor | np.ndarray, texts: Sequence[str], color: str,
                   name: str = "box label", size: int = LABEL_FONT_SIZE, visible: bool = True) -> go.Figure:
    """A label per box (N, 4): ``texts[i]`` ("ring 0.97") just above the box's top-left corner (inside it when the
    box touches the image's top), white or black on the box's ``color`` so it reads on any image. Plotly
    annotations (about 250 bytes of JSON each: 300 labels are 75 KB), anchored in the image's pixels, so they
    follow a zoom; they carry ``name`` (the tests read them back by it)."""
    b = as_numpy(boxes).reshape(-1, 4)
    font = dict(color=text_colour(color), size=size, family=FONT_FAMILY)
    labels = [go.layout.Annotation(x=x1, y=y1, xref="x", yref="y", text=text, showarrow=False, xanchor="left",
                                   yanchor="bottom" if y1 > 2 * size else "top", font=font, bgcolor=color,
                                   borderpad=1, opacity=0.9, name=name, visible=visible)
              for (x1, y1, _, _), text in zip(b.tolist(), texts, strict=True)]
    if labels:  # at once: add_annotation copies every annotation already there, O(n^2) for n labels
        fig.update_layout(annotations=[*fig.layout.annotations, *labels])
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


def _at_least(size: float | None, minimum: float) -> float:
    return minimum if size is None else max(float(size), minimum)


def wrap_title(text: str, width: int = TITLE_CHARS) -> str:
    """A long title in lines of about ``width`` characters, broken after its own separators (" · ", ": ", "; "),
    or between words in a part longer than a line, with plotly's ``<br>``: a plotly title never wraps, and at a
    projector's font size it ran off the figure."""
    if len(text) <= width or "<br>" in text:
        return text
    parts = [word for part in _TITLE_BREAKS.split(text)  # a part still too long: broken between its words
             for word in ([part] if len(part) <= width else re.split(r"(?<= )", part))]
    lines, line = [], ""
    for part in parts:
        if line and len(line) + len(part) > width:
            lines.append(line.rstrip())
            line = part.lstrip()
        else:
            line += part
    return "<br>".join([*lines, line.rstrip()])


# a legend entry at 19 px, measured in chromium: px per character, its mark and gaps, a row of a horizontal legend
LEGEND_CHAR_PX, LEGEND_ENTRY_PX, LEGEND_ROW_PX = 10.5, 50, 33
TYPICAL_PLOT_PX = (790, 370)  # a main figure at 1280x720 less its ticks (width, height), for choosing a legend's side
TITLE_LINE_PX = 31  # a line of a title at PRESENTATION_TITLE_SIZE


_ASIDE = re.compile(r"\s*\((?=[^()]*[a-z]{3})[^()]*\)")  # "(cells shaded by count)", not "(72)" or "(IoU 0.5)"


def short_legend(name: str) -> str:
    """A legend entry without its asides in words ("negative, not sampled: 181,063 (cells shaded by count)" ->
    "negative, not sampled: 181,063"; counts such as "size 16 (72)" stay): in presentation mode a room reads the
    entry, the hover still says the rest, and the image keeps the width the asides took."""
    return _ASIDE.sub("", name).strip() or name


def _legend_beside(fig: go.Figure) -> bool:
    """Whether an image figure's legend leaves the image larger beside it (a column as wide as its longest entry)
    than under it (rows of entries), estimated on a main figure's size at 1280x720 (presentation mode)."""
    names = [t.name for t in fig.data if t.showlegend is not False and t.name]
    names += [s.name for s in fig.layout.shapes if s.showlegend and s.name]
    if not names:
        return True
    image = fig.layout.images[0]
    iw, ih = float(image.sizex or 1), float(image.sizey or 1)
    w, h = TYPICAL_PLOT_PX
    title = fig.layout.title.text
    h -= TITLE_LINE_PX * (title.count("<br>") + 1) if title else 0
    side = LEGEND_CHAR_PX * max(len(n) for n in names) + LEGEND_ENTRY_PX
    rows, used = 1, 0.0  # entries laid in rows as plotly lays them: the next row when one does not fit
    for n in names:
        entry = LEGEND_CHAR_PX * len(n) + LEGEND_ENTRY_PX
        rows, used = (rows + 1, entry) if used and used + entry > w else (rows, used + entry)
    beside = min(max(w - side, 1) / iw, h / ih)
    under = min(w / iw, max(h - rows * LEGEND_ROW_PX, 1) / ih)
    return beside >= under


def _large_axis(axis: go.layout.XAxis | go.layout.YAxis, size: int) -> None:
    """An axis' ticks and title at least ``size`` px. A log axis is labelled at its powers of ten only: plotly draws
    the digits in between ("2", "5") at about 3/4 of the tick font, and at a projector's size they overlapped."""
    axis.update(tickfont_size=_at_least(axis.tickfont.size, size),
                title_font_size=_at_least(axis.title.font.size, size))
    if axis.type == "log" and axis.dtick is None:
        axis.update(dtick=1)


def styled(fig: go.Figure, presentation: bool = False) -> go.Figure:
    """Every figure the pages show: a system font (:func:`with_system_font`, so PNG exports keep their legends);
    for a projector (issue 18), every text at least :data:`PRESENTATION_FONT_SIZE` px (the title
    :data:`PRESENTATION_TITLE_SIZE`, wrapped: :func:`wrap_title`) and every annotation (box labels, IoU labels)
    at least :data:`PRESENTATION_LABEL_SIZE`, thicker lines, and the top margin the larger title and legend need."""
    with_system_font(fig)
    if not presentation:
        return fig
    size = PRESENTATION_FONT_SIZE
    title = fig.layout.title.text
    fig.update_layout(font_size=size, hoverlabel_font_size=size, legend_font_size=PRESENTATION_LEGEND_SIZE,
                      title_font_size=PRESENTATION_TITLE_SIZE, coloraxis_colorbar_tickfont_size=size)
    if title:  # above the plot, pushing the top margin as far as its lines need (a legend on top goes below)
        notes = [a for a in fig.layout.annotations if a.yref == "paper" and (a.y or 0) >= 1]  # a note on top
        above = max((_at_least(a.font.size, PRESENTATION_LABEL_SIZE) * 1.5 for a in notes), default=0)
        fig.update_layout(title=dict(text=wrap_title(title), yref="paper", y=1, yanchor="bottom", automargin=True,
                                     pad=dict(b=8 + int(above))), margin_t=10)
    for item in (*fig.data, *fig.layout.shapes):
        if item.name:
            item.name = short_legend(item.name)
    if fig.layout.images and _legend_beside(fig):
        # an image is as large as the figure lets it: its legend beside it, or under it, whichever leaves it larger
        fig.update_layout(legend=dict(orientation="v", x=1.01, xanchor="left", y=1, yanchor="top", yref="paper"))
    elif fig.layout.images or title and fig.layout.legend.orientation == "h" and (fig.layout.legend.y or 0) >= 1:
        # long entries: a row under the figure (beside it, they took most of its width)
        fig.update_layout(legend=dict(orientation="h", x=0, xanchor="left", yref="container", y=0, yanchor="bottom"),
                          margin_b=10)
    if fig.layout.images and not title:
        fig.update_layout(margin_t=20)  # the room above was the legend's (20: the first tick label's half)
    fig.for_each_xaxis(lambda a: _large_axis(a, size))
    fig.for_each_yaxis(lambda a: _large_axis(a, size))
    fig.for_each_annotation(lambda a: a.update(font_size=_at_least(a.font.size, PRESENTATION_LABEL_SIZE)))
    for trace in fig.data:
        if "textfont" in trace:
            trace.textfont.size = _at_least(trace.textfont.size, size)
        if "hoverlabel" in trace and trace.hoverlabel.font.size is not None:
            trace.hoverlabel.font.size = _at_least(trace.hoverlabel.font.size, size)
        if "colorbar" in trace:
            trace.colorbar.tickfont.size = _at_least(trace.colorbar.tickfont.size, size)
            trace.colorbar.title.font.size = _at_least(trace.colorbar.title.font.size, size)
    if any(t.type in ("bar", "funnel") for t in fig.data):  # text inside a bar: never shrunk below the room's size
        fig.update_layout(uniformtext=dict(minsize=PRESENTATION_LABEL_SIZE, mode="show"))
    fig.update_traces(selector=dict(mode="lines"), line_width=2.5)
    fig.update_shapes(selector=dict(type="path"), line_width=2.5)
    return fig
