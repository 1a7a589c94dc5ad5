"""Presentation mode: the app for a room (issue 18, item 1), on a projector at 1280x720 or 1920x1080 with the
sidebar collapsed.

What changes when the sidebar's "Presentation mode" is on:

- :func:`apply` puts :data:`CSS` in the page: no blank band above the title, the title and the metric values at
  least 40 px, body text, labels and expanders larger, labels that wrap instead of being cut ("Stretc...").
  Everything is targeted through Streamlit's ``data-testid`` attributes (stable across its releases, unlike its
  generated class names).
- A page's **main figure** (:data:`MAIN_FIGURES`, by chart key) is as tall as the viewport allows:
  ``calc(100vh - MAIN_OFFSET_PX)`` (:func:`main_figure_css`), so it is whole on screen with the title and a
  collapsed control row above it; plotly lays it out to its div (:func:`figure_height` drops the figure's own
  height). Other figures keep their height, at most :data:`MAX_HEIGHT`.
- :func:`controls` puts a page's widgets in a collapsed expander ("Controls"), at most :data:`PER_ROW` a row,
  so no label is cut; outside presentation mode it is ``st.columns``.
- :func:`panel` puts the main figure beside its metrics (one a row in a side column) instead of below them.

Figure fonts (ticks, legends, titles, hover labels, annotations) are :func:`frcnn.viz.common.styled`'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import streamlit as st

PER_ROW = 3  # controls a row in presentation mode: a label of ~25 characters at 18 px fits a third of 1280 px
MAX_HEIGHT = 560  # px: a figure other than the main one, in presentation mode
MAIN_OFFSET_PX = 300  # px of the viewport above and below the main figure: header, title, expanders, a margin
MIN_MAIN_HEIGHT = 300  # px: the main figure's height on a very short viewport
SIDE_WEIGHTS = (5, 2)  # the main figure's column : the metrics' column

# the chart key of each page's main figure (the figure a room looks at) -> px of the viewport that is not the figure
# (above it on that page: the header, the title, the expanders, a subheader or a metric; below it a margin),
# measured in chromium at 1280x720 (tests/e2e/test_presentation.py)
MAIN_FIGURES = {"overview_image": MAIN_OFFSET_PX + 100,  # a caption, the explanation, a subheader and a note
                "bb_figure": MAIN_OFFSET_PX, "anchors_image": MAIN_OFFSET_PX, "fit_figure": MAIN_OFFSET_PX,
                "targets_image": MAIN_OFFSET_PX, "prop_objectness": MAIN_OFFSET_PX,
                "roi_chart": MAIN_OFFSET_PX + 40,  # its subheader
                "det_figure": MAIN_OFFSET_PX, "loss_terms": MAIN_OFFSET_PX,
                "compare_fig_A": MAIN_OFFSET_PX + 70, "compare_fig_B": MAIN_OFFSET_PX + 70,  # a metric above each
                "train_curves": MAIN_OFFSET_PX}

CSS = """
[data-testid="stMainBlockContainer"] {padding-top: 3.25rem !important; padding-bottom: 2rem !important;}
[data-testid="stMain"] [data-testid="stVerticalBlock"] {gap: 0.6rem;}
[data-testid="stMain"] h1 {font-size: 2.75rem !important; line-height: 1.15 !important;
    padding: 0.1rem 0 0.1rem !important;}
[data-testid="stMain"] h2, [data-testid="stMain"] h3 {font-size: 1.9rem !important; padding: 0.2rem 0 !important;}
[data-testid="stHeading"] {margin-top: 0 !important;}
[data-testid="stMetricValue"], [data-testid="stMetricValue"] * {font-size: 2.75rem !important;
    line-height: 1.15 !important;}
[data-testid="stMetricLabel"], [data-testid="stMetricLabel"] * {font-size: 1.2rem !important;
    white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
    height: auto !important; max-height: none !important;}
[data-testid="stMetricDelta"], [data-testid="stMetricDelta"] * {font-size: 1.2rem !important;}
[data-testid="stMain"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMain"] [data-testid="stMarkdownContainer"] li {font-size: 1.25rem;}
[data-testid="stMain"] [data-testid="stCaptionContainer"],
[data-testid="stMain"] [data-testid="stCaptionContainer"] p {font-size: 1.1rem !important;}
[data-testid="stWidgetLabel"], [data-testid="stWidgetLabel"] * {font-size: 1.15rem !important;
    white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
    height: auto !important; max-height: none !important; min-height: 0 !important;}
[data-testid="stExpander"] summary, [data-testid="stExpander"] summary * {font-size: 1.25rem !important;}
[data-testid="stExpander"] summary {padding-top: 0.25rem !important; padding-bottom: 0.25rem !important;}
[data-testid="stSliderThumbValue"], [data-testid="stSliderTickBar"] * {font-size: 1.05rem !important;}
[data-testid="stAlertContainer"] p {font-size: 1.2rem !important;}
"""


IN_LESSON = "body:has(.st-key-lesson_panel)"  # a page showing a lesson's step (app_pages/_lesson.py)
LESSON_CAPTION_LINES = 5  # a step's caption in presentation mode: this many lines, the rest scrolled in its box
LESSON_PANEL_PX = 210  # the lesson panel at most: its buttons' row, the caption's box, padding (chromium, 1280x720)
STAGE_BOXES_PX = 100  # "What this stage does" and "This model vs the paper", hidden in a lesson (the caption says it)
LESSON_CSS = f"""
{IN_LESSON} .st-key-stage_explain, {IN_LESSON} .st-key-stage_paper {{display: none !important;}}
.st-key-lesson_caption {{max-height: calc({LESSON_CAPTION_LINES} * 1.5 * 1.1rem + 0.3rem); overflow-y: auto;}}
.st-key-lesson_caption p {{font-size: 1.1rem !important; line-height: 1.5 !important; margin-bottom: 0.3rem;}}
"""


def is_on() -> bool:
    """Whether this session shows the app in presentation mode (the sidebar's toggle, key ``presentation``)."""
    ctx = st.session_state.get("context")
    return bool(ctx.presentation if ctx is not None else st.session_state.get("presentation", False))


def main_figure_css(minimum: int = MIN_MAIN_HEIGHT) -> str:
    """The main figures' divs sized to the viewport (their inline height, from the figure, is overridden); in a
    lesson (its panel on the page) the panel's height less the stage's two boxes it hides (:data:`LESSON_CSS`)."""
    def rule(scope: str, key: str, offset: int) -> str:
        return (f'{scope}div.frcnn-chart[data-key="{key}"] {{height: max({minimum}px, calc(100vh - {offset}px)) '
                "!important;}")

    return "\n".join([rule("", key, offset) for key, offset in MAIN_FIGURES.items()]
                     + [rule(f"{IN_LESSON} ", key, offset + LESSON_PANEL_PX - STAGE_BOXES_PX)
                        for key, offset in MAIN_FIGURES.items()])


def apply(presentation: bool) -> None:
    """The page's presentation style, when on (app.py, every run)."""
    if presentation:
        st.html(f"<style>{CSS}\n{LESSON_CSS}\n{main_figure_css()}</style>")


def figure_height(key: str, height: float | None) -> int | None:
    """The layout height of the figure in slot ``key`` in presentation mode: None for a main figure (plotly fills
    its div, which :func:`main_figure_css` sizes to the viewport), else its own, at most :data:`MAX_HEIGHT`."""
    if key in MAIN_FIGURES:
        return None
    return None if height is None else int(min(height, MAX_HEIGHT))


def _rows(spec: int | Sequence[float]) -> list[list[float]]:
    weights = [1.0] * spec if isinstance(spec, int) else [float(w) for w in spec]
    return [weights[i:i + PER_ROW] for i in range(0, len(weights), PER_ROW)]


def box(label: str = "Controls", expanded: bool = False, container: Any = st) -> Any:
    """Where a page's controls go: in presentation mode a collapsed expander ``label`` (the figure stays on
    screen; the presenter opens it to change a setting), else a plain container in the page's flow."""
    return container.expander(label, expanded=expanded) if is_on() else container.container()


def columns(spec: int | Sequence[float], container: Any = st) -> list[Any]:
    """``container.columns(spec)``, in presentation mode in rows of at most :data:`PER_ROW` (a row of five or six
    cut the labels at 1280 px)."""
    if not is_on():
        return list(container.columns(spec))
    return [col for row in _rows(spec) for col in container.columns(row)]


def controls(spec: int | Sequence[float], label: str = "Controls", container: Any = st) -> list[Any]:
    """The columns a page lays its widgets in, as ``st.columns(spec)`` gives them: outside presentation mode that
    row; in it, the same columns inside a collapsed expander ``label`` (:func:`box`, :func:`columns`)."""
    if not is_on():
        return list(container.columns(spec))
    return columns(spec, box(label, container=container))


def slot() -> Any:
    """A place kept here for what is made later (presentation mode: controls above the main figure), else the
    page's flow."""
    return st.container() if is_on() else st


def label_toggle(key: str, container: Any = st) -> bool:
    """The "Label boxes" toggle of a figure of boxes: on by default in presentation mode, off otherwise (a key per
    mode, so turning presentation mode on brings the labels even where they were off)."""
    on = is_on()
    return container.toggle("Label boxes", value=on, key=f"{key}:{'presentation' if on else 'plain'}",
                            help="A \"class score\" label on every drawn box.")


def metric_row(n: int) -> list[Any]:
    """``n`` places for ``st.metric`` here: a row of columns, or in presentation mode ``n`` rows (a metric of
    44 px in a narrow side column)."""
    return [st.container() for _ in range(n)] if is_on() else list(st.columns(n))


class Panel:
    """Where a page's metrics and its main figure go: in the page's flow outside presentation mode (the metrics,
    then the figure where it is drawn); in it, the figure in a wide column with the metrics beside it, one a row,
    so the figure starts right below the controls."""

    def __init__(self, presentation: bool) -> None:
        self.presentation = presentation
        self._main, self._side = st.columns(list(SIDE_WEIGHTS)) if presentation else (None, None)

    def metrics(self, n: int) -> list[Any]:
        """``n`` places for ``st.metric``: a row of columns, or ``n`` rows of the side column."""
        if not self.presentation:
            return list(st.columns(n))
        return [self._side.container() for _ in range(n)]

    def place(self) -> Any:
        """A container kept for later: in the side column (presentation mode), else here in the page's flow."""
        return self._side.container() if self.presentation else st.container()

    @property
    def side(self) -> Any:
        """The side column (presentation mode), else the page's flow: for notes that belong with the metrics."""
        return self._side if self.presentation else contextlib.nullcontext()

    @property
    def figure(self) -> Any:
        """A context for the main figure's ``show_figure`` call."""
        return self._main if self.presentation else contextlib.nullcontext()


def panel() -> Panel:
    """A :class:`Panel` for the current mode, created where the page's metrics begin."""
    return Panel(is_on())
