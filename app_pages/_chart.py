"""A plotly chart that updates in place: a Streamlit custom component (``st.components.v2``, no build step).

``st.plotly_chart`` derives a chart's identity from its figure, so every slider move mounted a new chart and the
user's zoom, pan and hidden legend entries were lost. Here a chart's identity is its ``key``: the browser keeps
one plotly div per key across reruns and applies each new figure with ``Plotly.react`` (``_chart.js``), and
``layout.uirevision`` (the key and the image, unless the figure sets its own) keeps the view the user made.

- plotly.js is the installed ``plotly`` package's own ``package_data/plotly.min.js``, served by Streamlit as the
  asset folder of a component named :data:`ASSETS` (registered on the running server at the first chart), loaded
  once per browser tab.
- Box and lasso selections, and clicks where points are selectable, come back as the widget state
  ``{"selection": {"points": [...], "point_indices": [...], "box": [...], "lasso": [...]}}`` (the shape
  ``st.plotly_chart`` gives), in ``st.session_state[key]`` and on the returned value.
- The toolbar's camera downloads a PNG of what is on screen (plotly's ``toImage``: the current zoom, the whole
  legend).

Tests read a chart's figure with :func:`figure_of` (the JSON the browser gets).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go
import streamlit as st
from streamlit import config
from streamlit.components.v2.manifest_scanner import ComponentConfig, ComponentManifest

NAME = "frcnn_chart"
ASSETS = "frcnn.plotly"  # the component whose asset folder is plotly's package_data
PLOTLY_DIR = Path(plotly.__file__).parent
PLOTLY_JS = "plotly.min.js"
_JS = Path(__file__).with_name("_chart.js").read_text()

# The look st.plotly_chart gave (its "streamlit" template, which plotly's default becomes once streamlit is
# imported, holds placeholder colours that only st.plotly_chart's frontend fills in): Streamlit's light theme.
TEXT, GRID = "#31333F", "#e6eaf1"
CATEGORICAL = ["#0068c9", "#83c9ff", "#ff2b2b", "#ffabab", "#29b09d", "#7defa1", "#ff8700", "#ffd16a", "#6d3fc0",
               "#d5dae5"]
SEQUENTIAL = ["#e4f5ff", "#c7ebff", "#a6dcff", "#83c9ff", "#60b4ff", "#3d9df3", "#0068c9", "#0054a3", "#003f7d",
              "#002b57"]
_SCALE = [[i / (len(SEQUENTIAL) - 1), c] for i, c in enumerate(SEQUENTIAL)]
_AXIS = dict(automargin=True, gridcolor=GRID, linecolor=GRID, zerolinecolor=GRID, tickcolor=GRID,
             title=dict(standoff=8), ticks="")
TEMPLATE = go.layout.Template(
    data=dict(heatmap=[go.Heatmap(colorscale=_SCALE)], scatter=[go.Scatter(marker=dict(line=dict(width=0)))]),
    layout=go.Layout(
        colorway=CATEGORICAL, colorscale=dict(sequential=_SCALE, sequentialminus=_SCALE),
        coloraxis=dict(colorscale=_SCALE), font=dict(color=TEXT), paper_bgcolor="white", plot_bgcolor="white",
        title=dict(x=0, xanchor="left", xref="container", pad=dict(l=8), font=dict(size=15, weight="bold", color=TEXT)),
        legend=dict(font=dict(color=TEXT)), hoverlabel=dict(bgcolor="white", font=dict(color=TEXT)),
        xaxis=_AXIS, yaxis=_AXIS))

_mount = st.components.v2.component(NAME, js=_JS, isolate_styles=False)  # plotly's own CSS lives in the page


def _serve_plotly() -> None:
    """Register :data:`ASSETS` on the running server (once per runtime; an AppTest has a runtime of its own)."""
    from streamlit.runtime import Runtime

    if not Runtime.exists():
        return
    manager = Runtime.instance().bidi_component_registry
    if manager.get_component_path(ASSETS) is None:
        owner, name = ASSETS.split(".")
        manager.register_from_manifest(
            ComponentManifest(name=owner, version=plotly.__version__,
                              components=[ComponentConfig(name=name, asset_dir="package_data")]), PLOTLY_DIR)


EMPTY_SELECTION = {"points": [], "point_indices": [], "box": [], "lasso": []}


def plotly_url() -> str:
    base = str(config.get_option("server.baseUrlPath") or "").strip("/")
    return f"{'/' + base if base else ''}/_stcore/bidi-components/{ASSETS}/{PLOTLY_JS}"


_SLASH = re.compile(r"(?<!\\)((?:\\\\)*)\\u002f")  # an escaped "/" (not an escaped backslash before "u002f")


def figure_json(fig: go.Figure, key: str, selectable: bool = False, modes: tuple[str, ...] = ("points", "box")) -> str:
    """``fig`` as the JSON the browser draws: the app's template, ``uirevision`` (the key, unless the figure has its
    own) and the click mode of its selections."""
    fig.update_layout(template=TEMPLATE)
    if not fig.layout.uirevision:
        fig.update_layout(uirevision=key)
    if selectable and ("box" in modes or "lasso" in modes):
        fig.update_layout(clickmode="event+select")
    elif selectable:
        fig.update_layout(clickmode="event")
    # plotly writes every "/" as "\u002f" (for JSON inside HTML); this JSON goes through protobuf to JSON.parse,
    # and base64 images are full of slashes: about a tenth of an image figure
    return _SLASH.sub(r"\1/", fig.to_json())


def chart(fig: go.Figure | str, key: str, config: dict | None = None, selectable: bool = False,
          modes: tuple[str, ...] = ("points", "box")) -> Any:
    """Show ``fig`` (a figure, or what :func:`figure_json` made of one) in the slot ``key``; returns the
    component's state (``.selection`` when ``selectable``)."""
    _serve_plotly()
    data = {"figure": fig if isinstance(fig, str) else figure_json(fig, key, selectable, modes), "key": key,
            "config": config or {}, "plotly_url": plotly_url(), "selectable": selectable, "modes": list(modes)}
    kwargs = {"on_selection_change": lambda: None} if selectable else {}
    return _mount(key=key, data=data, default={"selection": EMPTY_SELECTION} if selectable else None, **kwargs)


def preload(container: Any = st) -> None:
    """Start loading plotly.js in the browser now (an empty element): on a new tab its 4.6 MB parse while the
    server runs the page, instead of after the first chart arrives."""
    _serve_plotly()
    with container:
        _mount(key="frcnn_plotly_preload", data={"preload": True, "plotly_url": plotly_url()}, height=0)


def figure_of(element: Any) -> dict:
    """The figure (plotly JSON, as a dict) of a chart in an AppTest run: ``figure_of(at.get("bidi_component")[0])``."""
    return json.loads(json.loads(element.proto.json)["figure"])


def charts(elements: Any) -> list:
    """The chart slots among an AppTest run's component elements (not :func:`preload`'s)."""
    return [e for e in elements if "figure" in json.loads(e.proto.json or "{}")]
