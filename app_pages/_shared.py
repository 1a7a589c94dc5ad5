"""What every page shares: the cached tracer, the current image and ground truth, settings bound to widgets
and to the URL, figure display, explanations.

- Models (and their tracers, whose stage cache is shared) are loaded once per (name, weights, device) with
  ``st.cache_resource`` and shared by every browser session; they are never written to. Settings are
  passed to ``Tracer.run`` per call.
- Per-session state lives in ``st.session_state``: ``settings`` (a flat dict of the current values),
  the chosen image and ground truth, the presentation flag. ``app.py`` fills it each run (``Context``).
- A settings widget is bound to one flat key by :func:`bind` (``bind("rpn.nms_thresh", "NMS IoU", (0.0, 1.0),
  0.05)``; a toggle, selectbox, multiselect or slider after the setting's type): its value is kept in
  ``settings`` so it survives page switches, goes into the URL, and a bad combination is refused with a
  message instead of an exception.
- One error guard (:func:`guard`): a :class:`frcnn.FrcnnError` in a page, a fragment or a trace is one
  ``st.error`` line, never a traceback. app.py runs each page inside it; a page's fragments go through
  :func:`fragment`, which runs them inside it too (Streamlit shows a fragment's exception itself).
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from streamlit.runtime.state import get_session_state

from app_pages import _presentation as presentation
from app_pages._chart import chart, figure_json
from app_pages._sessions import is_session_alive, session_key
from app_pages._story import mark_weights
from frcnn import FrcnnError, Settings, Trace, Tracer, budget, load_model
from frcnn.errors import OUT_OF_MEMORY, is_out_of_memory
from frcnn.export import trace_to_dict
from frcnn.lesson import setting_text
from frcnn.lru import BoundedLRU
from frcnn.paper_diff import departures
from frcnn.trace import StageCache
from frcnn.viz.common import styled

WIDGET_PREFIX = "set:"


@dataclass(frozen=True)
class Context:
    tracer: Tracer
    image: torch.Tensor  # (3, H, W) uint8
    image_name: str
    gt_boxes: torch.Tensor | None  # (G, 4) in the image's pixels, or None
    gt_labels: torch.Tensor | None  # (G,) model class indices
    presentation: bool

    @property
    def image_np(self) -> np.ndarray:
        return self.image.permute(1, 2, 0).numpy()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.tracer.detector.class_names


MAX_MODELS = 4  # models held at once by the server (the oldest out): each is 10-600 MB, plus its cache entries
CACHE_BYTES = 1 << 30  # the stage cache every model shares, bounded by entries and bytes


@st.cache_resource(show_spinner=False)
def _stage_cache() -> StageCache:
    """One stage cache for the server: its keys start with the model's key, so models never meet in it, and
    its bound holds whatever number of models and weights files the sessions load."""
    return StageCache(max_entries=256, max_bytes=CACHE_BYTES)


@st.cache_resource(show_spinner="Loading the model...", max_entries=MAX_MODELS)
def get_tracer(name: str, weights: str, device: str) -> Tracer:
    """One tracer (model + the shared stage cache) per (name, weights, device), shared by every session; at
    most :data:`MAX_MODELS` at once. A first use of a torchvision model downloads its weights with a progress
    bar."""
    bar = st.empty()

    def progress(done: int, total: int) -> None:
        text = f"Downloading {name} weights: {done / 1e6:.0f} MB" + (f" of {total / 1e6:.0f} MB" if total else "")
        bar.progress(min(done / total, 1.0) if total else 0.0, text=text)

    tracer = Tracer(load_model(name, weights, device, progress), _stage_cache())
    bar.empty()
    return tracer


def context() -> Context:
    ctx = st.session_state.get("context")
    if ctx is None:
        st.error("The app's state is missing: open the app from its start page (streamlit run app.py).")
        st.stop()
    return ctx


# --------------------------------------------------------------------------------------------- settings
def settings() -> Settings:
    """The session's current settings (the model's defaults with the user's changes)."""
    return st.session_state["settings"]


def set_settings(new: Settings) -> None:
    st.session_state["settings"] = new


def apply_setting(key: str, value: Any) -> bool:
    """Set the flat settings key ``key`` to ``value`` in a widget's callback (it runs before the page is drawn):
    checked against the settings' rules and the work budget, written into the URL; a refusal is kept as the
    message :func:`show_settings_message` shows, and False returned."""
    try:
        new = settings().replace({key: value})
        check_budget(new)
    except FrcnnError as exc:
        st.session_state["settings_message"] = f"Not applied: {exc}"
        return False
    set_settings(new)
    sync_url()  # a page's widgets rerun only their fragment, not app.py, which writes the URL too
    return True


def _on_widget_change(key: str, to_setting: Any) -> None:
    if not apply_setting(key, to_setting(st.session_state[WIDGET_PREFIX + key])):
        st.session_state[WIDGET_PREFIX + key] = _widget_value(settings().get(key))  # the widget shows the setting


LESSON_URL = "lesson_url"  # session key: ({"lesson": ..., "step": ...}, the step's setting keys) while a lesson is on


def sync_url() -> None:
    """The URL's query string from the session's model, sample and settings (what differs from the model's
    defaults), written only when it changed. During a lesson (:mod:`app_pages._lesson`) it carries ``lesson=``
    and ``step=`` too, and every setting the step sets even where the user moved it back to the model's default,
    so that the link reopens this view and not the step's own."""
    ctx = st.session_state.get("context")
    if ctx is None or "settings" not in st.session_state:
        return
    lesson, keep = st.session_state.get(LESSON_URL) or ({}, ())
    params = url_params(settings(), ctx.tracer.detector.defaults, keep, model=st.session_state["model"],
                        sample=st.session_state["sample"], **lesson)
    if dict(st.query_params.to_dict()) != params:
        st.query_params.from_dict(params)


def check_budget(new: Settings, gt_count: int | None = None) -> None:
    """Raise :class:`frcnn.budget.BudgetError` when ``new`` settings (or ``gt_count`` boxes) would take the
    current image over the work budget; nothing is traced."""
    ctx = st.session_state.get("context")
    if ctx is None:
        return
    boxes = gt_count if gt_count is not None else (0 if ctx.gt_boxes is None else len(ctx.gt_boxes))
    budget.check(budget.facts_of(ctx.tracer.detector), new, tuple(ctx.image.shape[-2:]), boxes)


def _budget_range(key: str, lo: float, hi: float, step: float | None) -> tuple[float, float]:
    """The slider's range cut to what the work budget allows with the other settings as they are."""
    ctx = st.session_state.get("context")
    if ctx is None or not isinstance(settings().get(key), int) or isinstance(settings().get(key), bool):
        return lo, hi
    gt = 0 if ctx.gt_boxes is None else len(ctx.gt_boxes)
    a, b = budget.allowed_range(budget.facts_of(ctx.tracer.detector), settings(), tuple(ctx.image.shape[-2:]), gt,
                                key, lo, hi)
    if step and a > lo:  # keep the slider's grid: the first step at or above the budget's lowest value
        a = lo + -(-(a - lo) // step) * step
    if step and b < hi:
        b = lo + ((b - lo) // step) * step
    return (a, b) if a <= b else (lo, hi)


def _widget_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _sorted_floats(values: Iterable[Any]) -> tuple[float, ...]:
    return tuple(sorted(float(v) for v in values))


def bind(key: str, label: str, choices: Sequence[Any] = (), step: float | None = None, *, help: str | None = None,
         fmt: str | None = None, container: Any = st) -> Any:
    """The one settings widget: bound to the flat settings key ``key`` (its value lives in the settings, so it
    survives page switches and goes into the URL; a refused value is put back, with a message), of the kind the
    setting's value asks for:

    - a bool: a toggle;
    - a str: a selectbox of ``choices``;
    - a tuple of numbers (anchor sizes, ratios): a multiselect of ``choices`` and the values set now;
    - a number: a slider over ``choices`` = (min, max) by ``step``, cut to what the work budget allows (widened
      to hold a value from the URL outside it).

    Returns the setting's current value."""
    current = settings().get(key)
    wkey = WIDGET_PREFIX + key
    if wkey not in st.session_state:
        st.session_state[wkey] = _widget_value(current)
    common = {"label": label, "key": wkey, "help": help, "on_change": _on_widget_change}
    if isinstance(current, bool):
        container.toggle(**common, args=(key, bool))
    elif isinstance(current, str):
        container.selectbox(options=list(choices), **common, args=(key, str))
    elif isinstance(current, tuple):
        st.session_state[wkey] = [float(v) for v in st.session_state[wkey]]
        options = sorted({float(v) for v in choices} | set(st.session_state[wkey]))
        container.multiselect(options=options, format_func=lambda v: f"{v:g}", **common, args=(key, _sorted_floats))
    else:
        lo, hi = _budget_range(key, *choices, step)
        if not lo <= st.session_state[wkey] <= hi:  # a URL value outside the slider's range
            lo, hi = min(lo, current), max(hi, current)
        kind = type(current)
        container.slider(min_value=kind(lo), max_value=kind(hi), step=None if step is None else kind(step),
                         format=fmt, **common, args=(key, kind))
    return settings().get(key)


def url_params(current: Settings, defaults: Settings, keep: Iterable[str] = (), **extra: str) -> dict[str, str]:
    """The query string of a state: ``extra`` (model, sample, lesson, step), every setting that differs from the
    model's defaults and every key in ``keep`` (a lesson step's), in tree order, tuples as "a,b,c"
    (:func:`frcnn.lesson.setting_text`). Reading it back: ``defaults.replace(params)``."""
    params = dict(extra)
    changed, kept = current.diff(defaults), set(keep)
    for key, value in current.to_flat().items():
        if key in changed or key in kept:
            params[key] = setting_text(value)
    return params


def reset_widgets() -> None:
    for k in [k for k in st.session_state if isinstance(k, str) and k.startswith(WIDGET_PREFIX)]:
        del st.session_state[k]


KEPT_WIDGETS = "kept_widgets"  # session key of the display widgets' last values
MAX_KEPT_WIDGETS = 64  # values kept at most (some keys carry a setting: anchors_show_sizes_(16, 32)), oldest out
# widgets whose value st.session_state may set (not buttons, uploads, cameras or chat inputs; charts and data
# editors hold a string value too, and are told apart by their dict of selections / edits)
_SETTABLE = frozenset({"bool_value", "int_value", "double_value", "string_value", "double_array_value",
                       "int_array_value", "string_array_value"})


def keep_display_widgets() -> None:
    """Keep the values of display-only widgets ("Draw scores from", "Heatmap opacity", a page's radio) across page
    switches; app.py calls it at the top of every run, before the page.

    Streamlit drops a widget's value when a run does not render it, so leaving a page reset its sliders. Here the
    last value of every keyed, settable widget is copied under :data:`KEPT_WIDGETS`, and a value Streamlit dropped
    is put back under its key (Streamlit's documented way: a value set in ``st.session_state`` before the widget
    is created is the widget's value). Settings widgets (``set:...``) are left out: they are bound to the
    settings, which may have changed on another page. A restored value that no longer fits (an option gone) is
    reset by the widget itself.
    """
    kept: OrderedDict = st.session_state.setdefault(KEPT_WIDGETS, OrderedDict())
    for key, value in kept.items():
        if key not in st.session_state:
            st.session_state[key] = value
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and not key.startswith(WIDGET_PREFIX) and _is_display_widget(key):
            kept[key] = st.session_state[key]
            kept.move_to_end(key)
    while len(kept) > MAX_KEPT_WIDGETS:
        kept.popitem(last=False)


def _is_display_widget(key: str) -> bool:
    """Whether ``key`` is (or was, last run) a widget whose value may be set through ``st.session_state``.
    Streamlit keeps no public record of which keys are widgets: this reads its session state's widget metadata
    (streamlit 1.67; a missing method makes it False, so nothing is kept)."""
    state = getattr(get_session_state(), "_state", None)
    try:
        widget_id = state.get_widget_id_from_key(key)
        metadata = state.get_widget_metadata(widget_id) if widget_id else None
    except (AttributeError, KeyError):
        return False
    return (metadata is not None and metadata.value_type in _SETTABLE
            and not isinstance(st.session_state.get(key), dict))


def show_settings_message() -> None:
    message = st.session_state.pop("settings_message", None)
    if message:
        st.warning(plain(message))


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=])")  # every character Markdown (or Streamlit) acts on
_AUTOLINK = re.compile(r"(?i)(https?|ftp|www|@)")  # GitHub Markdown links these even when escaped
MAX_ECHO = 300  # characters of a message with user text shown at most


def plain(text: Any, limit: int = MAX_ECHO) -> str:
    """``text`` (a message that holds what a user sent: a file name, a URL value, a class name) as literal text
    for Streamlit's Markdown: every Markdown character escaped, so no link, image, HTML, colour or LaTeX is
    made of it (a zero-width space after "http", "www" and "@" stops the bare-address links); cut to ``limit``
    characters."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[:limit] + "..."
    return _AUTOLINK.sub("\\1\u200b", _MARKDOWN.sub(r"\\\1", text))


# ------------------------------------------------------------------------------------------------ errors
@contextmanager
def guard(kept: str = "", where: Any = st, stop: bool = False, about: str = "") -> Iterator[None]:
    """The one error guard of the app: a :class:`FrcnnError` raised inside (a refused file, the work budget, a
    job the queue will not take) becomes one ``st.error`` line in ``where`` (the page or the sidebar), never a
    traceback: ``about`` (a file's name) before it, ``kept`` (what was kept instead: "keeping the previous
    image") after it; so does running out of memory. The run goes on after the block, or stops there with
    ``stop=True`` (what follows needed the result). A context manager or, as ``@guard()``, a decorator; app.py
    runs every page inside one, and :func:`run_trace` traces inside one."""
    try:
        yield
    except FrcnnError as exc:
        where.error(plain(f"{about + ': ' if about else ''}{exc}{f' ({kept})' if kept else ''}"))
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        where.error(OUT_OF_MEMORY)
    else:
        return
    if stop:
        st.stop()


# ----------------------------------------------------------------------------------------------- tracing
def run_trace(with_settings: Settings | None = None, head: bool = True) -> Trace:
    """The current image (and ground truth) through the shared tracer with the session's settings; pages of the
    RPN's stages pass ``head=False`` (no RoI pooling, box head, detections or losses to wait for). A refusal
    (the work budget, an image the settings cannot resize) is one error line and the page stops there."""
    ctx = context()
    s = with_settings or settings()
    key = session_key()
    with guard(), st.spinner("Tracing..."):
        return ctx.tracer.run(ctx.image, s, ctx.gt_boxes, ctx.gt_labels, head=head,
                              should_stop=lambda: not is_session_alive(key))  # a closed tab's trace stops
    st.stop()  # the guard said why


def fragment(body: Callable[..., None], *args: Any, run_every: float | None = None) -> None:
    """Run ``body(*args)`` as a fragment (a widget in it reruns only it, not the sidebar, the title and the
    explanation) inside the :func:`guard`: a fragment's own reruns do not pass through app.py's page runner,
    and Streamlit would show an exception raised in one as a traceback."""
    st.fragment(guard()(body), run_every=run_every)(*args)


def stage_fragment(stage: str, body: Callable[[], None]) -> None:
    """A stage page below its title and explanation: ``body`` as a :func:`fragment`, opening with the stage's
    :func:`paper_box` and the message of a refused setting (in the fragment, so that a setting changed there
    redraws both)."""
    @wraps(body)
    def live() -> None:
        paper_box(stage)
        show_settings_message()
        body()

    fragment(live)


# ---------------------------------------------------------------------------------------------- display
FIGURE_CACHE_BYTES = 256 << 20  # figures' JSON the server keeps, for every session (a figure is 5 KB - 1 MB)


class FigureCache(BoundedLRU):
    """Figures' JSON by (slot, model, the stage keys the figure reads, its parameters): a widget that changes one
    figure of a page leaves the page's other figures unbuilt. Bounded by entries and bytes, oldest out."""

    def __init__(self, max_entries: int = 512, max_bytes: int = FIGURE_CACHE_BYTES) -> None:
        super().__init__(max_entries, max_bytes)

    def put(self, key: tuple, value: str) -> None:
        super().put(key, value, len(value))


@st.cache_resource(show_spinner=False)
def _figure_cache() -> FigureCache:
    return FigureCache()


def show_figure(fig: go.Figure | Callable[[], go.Figure], key: str, on_select: str = "ignore",
                selection_mode: Any = ("points", "box"), filename: str | None = None,
                trace: Trace | None = None, stages: tuple[str, ...] | None = None, params: tuple = ()) -> Any:
    """Render a figure in its slot ``key`` (:mod:`app_pages._chart`: updated in place, the user's zoom kept while
    the image is the same; presentation styling; PNG download of the view from the toolbar); returns the
    component's state, whose ``selection`` is the user's, when ``on_select="rerun"``.

    ``fig`` may be a function that builds the figure from ``trace``: then its JSON is cached on the keys of
    ``trace``'s ``stages`` (every stage of the trace when None, and its settings) and ``params`` (everything else
    the figure shows: the display widgets' values), and built only when that key is new."""
    ctx = context()
    modes = (selection_mode,) if isinstance(selection_mode, str) else tuple(selection_mode)
    selectable = on_select == "rerun"
    cache_key = None
    if callable(fig) and trace is not None:
        reads = tuple(sorted(trace.keys.items())) + (repr(trace.settings),) if stages is None else \
            tuple(trace.keys.get(s) for s in (*stages, "image", "gt"))
        cache_key = (key, ctx.tracer.detector.key, ctx.image_name, ctx.presentation, selectable, modes, filename,
                     reads, repr(params))
    built = _figure_cache().get(cache_key) if cache_key is not None else None
    if built is None:
        figure = fig() if callable(fig) else fig
        mark_weights(figure, ctx.tracer.detector.weights)  # "— random weights" in the title (the key has the weights)
        styled(figure, ctx.presentation)
        if ctx.presentation:  # a main figure fills the screen's height (CSS), the others at most MAX_HEIGHT
            figure.update_layout(height=presentation.figure_height(key, figure.layout.height), autosize=True)
        figure.update_layout(uirevision=f"{key}:{ctx.image_name}")  # a new image starts from its whole view
        built = figure_json(figure, key, selectable, modes)
        if cache_key is not None:
            _figure_cache().put(cache_key, built)
    config = {"displaylogo": False, "scrollZoom": True,
              "toImageButtonOptions": {"format": "png", "filename": filename or key, "scale": 2}}
    state = chart(built, key, config=config, selectable=selectable, modes=modes)
    return state if selectable else None


def explain(text: str, *formulas: str, expanded: bool = False) -> None:
    """A few sentences on the stage with the paper's formulas (a page's :func:`paper_box` follows it: the first
    line of the page's fragment, so that a setting changed in the fragment redraws the box too)."""
    with st.container(key="stage_explain"), st.expander("What this stage does", expanded=expanded):
        st.markdown(text)
        for formula in formulas:
            st.latex(formula)


ALL_STAGES = "Start"  # paper_box(ALL_STAGES): every row of the table, each with its stage
PAPER_BOX = "This model vs the paper"


def paper_box(stage: str) -> None:
    """"This model vs the paper": the places where the current model with the session's settings departs from
    Ren et al. 2015 at ``stage`` (every stage for :data:`ALL_STAGES`), generated from the settings by
    :func:`frcnn.paper_diff.departures`, each with the paper's value, this model's and the reason; "matches the
    paper" when nothing differs."""
    with st.container(key="stage_paper"):  # presentation mode in a lesson: hidden, the step's caption explains
        _paper_rows(stage)


def _paper_rows(stage: str) -> None:
    detector = context().tracer.detector
    rows = departures(settings(), detector, None if stage == ALL_STAGES else stage)
    where = "" if stage == ALL_STAGES else f" at this stage ({stage})"
    if not rows:
        with st.expander(f"{PAPER_BOX}: matches the paper"):
            st.caption(f"{detector.name} with the current settings matches Ren et al. 2015{where}.")
        return
    with st.expander(f"{PAPER_BOX}: {len(rows)} difference{'s' * (len(rows) > 1)}"):
        st.caption(f"Where {detector.name} with the current settings departs from Ren et al. 2015{where}, and why. "
                   "Settings (rpn.…, roi.…) can be changed on the pages; convention.… rows are fixed by the model "
                   "and torchvision.")
        for r in rows:  # markdown, not a table: a page's own tables stay the only ones on it
            where = f"{r.stage} · " if stage == ALL_STAGES else ""
            st.markdown(f"{where}**`{r.key}`** · the paper: {plain(r.paper)} · this model: **{plain(r.this)}**  \n"
                        f"{plain(r.reason, limit=1000)}")


def notes(trace: Trace) -> None:
    for note in trace.notes:
        st.info(note)


def download_trace(trace: Trace, key: str = "download_trace") -> None:
    """A download of the whole trace as JSON, built when the button is pressed (it is about 17 MB for the
    default model: building it on every rerun cost seconds)."""
    def build() -> str:
        try:
            return json.dumps(trace_to_dict(trace))
        except MemoryError:
            return json.dumps({"error": OUT_OF_MEMORY})

    st.download_button("Download the trace (JSON)", build, file_name="trace.json", mime="application/json",
                       key=key, on_click="ignore")
