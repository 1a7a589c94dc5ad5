"""The guided lesson: a panel at the top of the page (step k of n, its caption, Previous / Next), the keys a
presentation clicker sends (Right / Left, PageDown / PageUp), the sidebar's "Lesson" selector with upload and
download, and an editor (caption, title, add the current view, move, delete). The lesson itself (steps,
validation, JSON) is :mod:`frcnn.lesson`.

How a step is shown: going to step k (a button, a key, the selector, a link) records it as pending; at the top
of the next run, before the sidebar's pickers, :func:`apply_pending` puts the step's model and image into
their widgets' state and its settings where a shared link's go (``url_settings``: ``app.py`` applies them on
the model's defaults one at a time, each within the work budget, saying what it refused); after
``st.navigation``, :func:`panel` switches to the step's page. So a step is shown exactly as its link would
show it.

The URL: ``?lesson=<name>&step=k`` (1-based) with the usual model, sample and settings
(:func:`app_pages._shared.sync_url`). A built-in lesson's name is its file's (``paper``); a lesson uploaded or
edited in a session is kept on the server under its content's id (:attr:`frcnn.lesson.Lesson.id`, a bounded
store shared by every session), so its links work on this server while it runs. Opening a link reads the
step's view and lets the link's own model, sample and settings override it (:func:`from_url`): the link of a
step the user changed reopens the changed view.

Session state: ``lesson_id`` (the lesson shown, or None), ``lesson_step`` (k), ``lesson_own`` (the session's
uploaded or edited lesson), ``lesson_goto`` (a step to show at the next run), ``lesson_page`` (a page to switch
to after navigation).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from app_pages._shared import LESSON_URL, plain, settings, sync_url
from frcnn import FrcnnError, budget
from frcnn.data import load_sample
from frcnn.lesson import (
    Lesson,
    Step,
    builtin_names,
    check_budget,
    deleted,
    inserted,
    lesson_to_json,
    load_builtin,
    moved,
    read_lesson,
    view_step,
    with_caption,
    with_title,
)
from frcnn.lru import BoundedLRU
from frcnn.settings import shown

NONE = ""  # the selector's "no lesson"
URL_KEYS = ("lesson", "step")
STORE_ENTRIES, STORE_BYTES = 256, 32 << 20  # the server's uploaded and edited lessons (a lesson is a few KB)

_KEYS_JS = """
// The lesson's keys: a clicker sends PageDown / PageUp (or Right / Left); every key goes to the page's document,
// and a key meant for a widget (a slider's arrows, a text field) is left to it. One listener per tab reads the
// latest step and n that Streamlit gave (a stale one would send an old step), and sends the step to go to.
const STATE = "__frcnnLessonKeys";
const WIDGETS = "input, textarea, select, [contenteditable='true'], [role='slider'], [role='combobox'], " +
                "[role='listbox'], [role='option'], [role='spinbutton'], [role='textbox'], [role='tab'], " +
                "[role='grid'], [data-testid='stDataFrame'], [data-testid='stDataFrameResizable']";
const MOVES = {ArrowRight: 1, PageDown: 1, ArrowLeft: -1, PageUp: -1};

export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  const doc = parentElement.ownerDocument || document;
  const win = doc.defaultView || window;
  const state = win[STATE] || (win[STATE] = {current: null, listener: null});
  const me = {data, setTriggerValue};
  state.current = me;
  if (!state.listener) {
    state.listener = (event) => {
      const c = state.current;
      const move = MOVES[event.key];
      if (!c || !move || event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
      const target = event.target;
      if (target && target.closest && target.closest(WIDGETS)) return;
      const to = c.data.step + move;
      if (to < 1 || to > c.data.n) return;
      event.preventDefault();  // PageDown would scroll the page too
      c.setTriggerValue("step", to);
    };
    doc.addEventListener("keydown", state.listener);
  }
  if (data.highlight && state.scrolled !== data.step) {  // the step's figure, brought on screen once a step
    state.scrolled = data.step;
    const started = Date.now();
    let last = null, still = 0;
    const look = () => {  // the figure is drawn after this component: wait until the page has settled (20 s at most)
      if (Date.now() - started > 20000) return;
      const el = doc.querySelector(`div.frcnn-chart[data-key="${data.highlight}"]`);
      const running = doc.querySelector('[data-testid="stStatusWidget"]');
      const r = el && el._fullLayout ? el.getBoundingClientRect() : null;
      still = r && !running && last !== null && Math.abs(r.top - last) < 1 ? still + 1 : 0;
      last = r ? r.top : null;
      if (still < 3) { win.setTimeout(look, 200); return; }  // the same place for 0.6 s, the script idle
      const seen = Math.min(r.bottom, win.innerHeight) - Math.max(r.top, 0);
      if (seen < Math.min(r.height, win.innerHeight) / 2) el.scrollIntoView({block: "center"});  // half hidden
    };
    look();
  }
  parentElement.dataset.lessonStep = String(data.step);  // read by the browser tests: this step is mounted
  return () => { if (state.current === me) state.current = null; };  // unmounted, no newer call: the lesson is off
}
"""
_keys = st.components.v2.component("frcnn_lesson_keys", js=_KEYS_JS, isolate_styles=False)


# ------------------------------------------------------------------------------------------------ lessons
@st.cache_resource(show_spinner=False)
def _store() -> BoundedLRU:
    """Lessons uploaded or edited in any session, by id, so that their links work on this server."""
    return BoundedLRU(STORE_ENTRIES, STORE_BYTES)


def _remember(lesson: Lesson) -> None:
    _store().put(lesson.id, lesson, len(lesson_to_json(lesson)))


@cache
def _builtin(name: str, pages: tuple[str, ...]) -> Lesson:
    return load_builtin(name, pages)


def find(name: str, pages: Sequence[str]) -> Lesson | None:
    """The lesson a URL or the selector names: a built-in one, the session's own, or one in this server's store."""
    if name in builtin_names():
        return _builtin(name, tuple(pages))
    own = st.session_state.get("lesson_own")
    return own if own is not None and own.id == name else _store().get(name)


def active(pages: Sequence[str]) -> Lesson | None:
    name = st.session_state.get("lesson_id")
    return None if not name else find(name, pages)


def _activate(name: str, lesson: Lesson, step: int) -> None:
    """``lesson`` (under ``name``) at ``step``, 1-based; the step's view is not applied here (see :func:`goto`)."""
    if name not in builtin_names():
        st.session_state["lesson_own"] = lesson
        _remember(lesson)
    st.session_state.update(lesson_id=name, lesson_step=step, lesson_choice=name)
    _publish(name, lesson.steps[step - 1], step)


def _publish(name: str | None, step: Step | None, k: int | None) -> None:
    """What sync_url writes: lesson= and step=, and the step's setting keys."""
    st.session_state[LESSON_URL] = None if name is None or step is None else (
        {"lesson": name, "step": str(k)}, tuple(key for key, _ in step.settings))


def goto(k: int) -> None:
    """Show step ``k`` (1-based) at the next run (a button's or the selector's callback, or before a rerun)."""
    st.session_state["lesson_goto"] = k


def _off() -> None:
    st.session_state.update(lesson_id=None, lesson_step=None, lesson_goto=None, lesson_page=None)
    _publish(None, None, None)


# ------------------------------------------------------------------------------------------------ app.py
def from_url(params: Mapping[str, str], pages: Sequence[str]) -> tuple[Step | None, list[str]]:
    """The step a link names (``lesson=``, ``step=``), made the session's lesson and step, its page to switch to;
    and what was wrong with the link, for the page to say. ``app.py`` seeds the model, image and settings from the
    step and lets the link's own override them."""
    name = params.get("lesson")
    if not name:
        return None, []
    lesson = find(name, pages)
    if lesson is None:
        return None, [f"The link's lesson {shown(name)} is not on this server (built-in: "
                      f"{', '.join(builtin_names())}; a lesson of yours: upload its file in the sidebar)"]
    text, messages = params.get("step", "1"), []
    k = int(text) if re.fullmatch(r"[0-9]{1,4}", text) else 0
    if not 1 <= k <= len(lesson):
        messages.append(f"The link's step {shown(text)} is not one of the lesson's 1 to {len(lesson)}: step 1")
        k = 1
    _activate(name, lesson, k)
    step = lesson.steps[k - 1]
    st.session_state["lesson_page"] = step.page
    return step, messages


def apply_pending(pages: Sequence[str]) -> None:
    """At the top of a run, before the sidebar's pickers: the step asked for last run, into the model and image
    widgets' state and the shared link's settings (``url_settings``, applied by ``app.py`` on the model's
    defaults within the work budget)."""
    k = st.session_state.pop("lesson_goto", None)
    lesson = active(pages)
    if k is None or lesson is None:
        return
    k = min(max(int(k), 1), len(lesson))
    step = lesson.steps[k - 1]
    if step.model is not None:
        st.session_state["model"] = step.model
    st.session_state["sample"] = step.image
    st.session_state["url_settings"] = step.settings_dict
    st.session_state.pop("settings_model", None)  # the settings start again from the model's defaults
    st.session_state.update(lesson_step=k, lesson_page=step.page)
    _publish(st.session_state["lesson_id"], step, k)


def keep_messages() -> None:
    """A copy of this run's link messages (``url_messages``, which ``app.py`` shows next): if :func:`panel` then
    switches to the step's page, they are shown there."""
    st.session_state["lesson_messages"] = list(st.session_state.get("url_messages", []))


def panel(pages: Mapping[str, StreamlitPage], current: StreamlitPage) -> None:
    """After ``st.navigation``, before the page: the step's page if the step just changed, the sidebar's lesson
    controls, and the panel at the top of the page."""
    files = list(pages)
    kept = st.session_state.pop("lesson_messages", [])
    lesson = _sidebar(files)
    if lesson is None:
        return
    target = st.session_state.pop("lesson_page", None)
    if target in pages and pages[target].url_path != current.url_path:
        st.session_state.setdefault("url_messages", []).extend(kept)  # said on the step's page
        st.switch_page(pages[target], query_params=st.query_params.to_dict())
    k = min(max(int(st.session_state.get("lesson_step") or 1), 1), len(lesson))
    step = lesson.steps[k - 1]
    here = next((f for f, p in pages.items() if p.url_path == current.url_path), None)
    ctx = st.session_state.get("context")
    with st.container(border=True, key="lesson_panel", gap="small"):
        with st.container(horizontal=True, vertical_alignment="center", gap="small"):
            st.button("◀ Previous", key="lesson_prev", on_click=goto, args=(k - 1,), disabled=k <= 1,
                      help="Left arrow or Page Up")
            st.button("Next ▶", key="lesson_next", on_click=goto, args=(k + 1,), disabled=k >= len(lesson),
                      help="Right arrow or Page Down")
            st.markdown(f"**Step {k} of {len(lesson)}** · {plain(lesson.title, 120)}", width="content")
            if here != step.page:
                st.button(f"Back to the step's page, {pages[step.page].title}", key="lesson_back", on_click=goto,
                          args=(k,), type="primary")
        with st.container(key="lesson_caption"):  # presentation mode: a box of a few lines, scrolled when longer
            st.markdown(step.caption or "*(no caption yet: write one under Edit the lesson)*")
        if here == step.page and ctx is not None and ctx.image_name != step.image:
            st.caption(f"This step shows the sample {plain(step.image)}; an uploaded image is shown instead "
                       "(remove it in the sidebar).")
        shown = step.highlight if here == step.page else None  # brought on screen when it is below the fold
        pressed = _keys(key="lesson_keys", data={"step": k, "n": len(lesson), "highlight": shown}, height=0,
                        on_step_change=lambda: None)
        if ctx is None or not ctx.presentation:  # a room sees the step, not the editor
            _editor(lesson, k, here, {f: p.title for f, p in pages.items()})
    if step.highlight and here == step.page:  # validated: letters, digits, _ : . - only
        st.html(f"<style>div.frcnn-chart[data-key='{step.highlight}'] {{outline: 4px solid #ff8700; "
                "outline-offset: 4px; border-radius: 2px;}</style>")
    to = pressed.step  # from the browser: a step number, or anything a tampered page sends
    if isinstance(to, int) and not isinstance(to, bool) and 1 <= to <= len(lesson) and to != k:
        goto(to)
        st.rerun()
    sync_url()  # the step's lesson= and step= (app.py wrote the URL before this ran)


# ------------------------------------------------------------------------------------------------ sidebar
def _choose(files: Sequence[str]) -> None:
    name = st.session_state.get("lesson_choice") or NONE
    lesson = None if name == NONE else find(name, files)
    if lesson is None:
        _off()
        return
    _activate(name, lesson, 1)
    goto(1)


@st.cache_data(max_entries=16, show_spinner=False)
def _image_facts(name: str) -> tuple[tuple[int, int], int]:
    """A sample's (H, W) and number of ground-truth boxes, for the work budget of an uploaded lesson."""
    image, gt = load_sample(name)
    return tuple(image.tensor.shape[-2:]), len(gt)


def _upload(files: Sequence[str]) -> None:
    upload = st.sidebar.file_uploader("Upload a lesson (JSON)", type=["json"], key="lesson_upload",
                                      help="A lesson downloaded from this app (or written by hand: "
                                           "frcnn/data/lessons/paper.json is one).")
    if upload is None:
        return
    data = upload.getvalue()
    digest = hashlib.sha1(data).hexdigest()
    tried = st.session_state.get("lesson_upload_tried")
    if tried and tried[0] == digest:  # read once; its error stays while the file does
        if tried[1]:
            st.sidebar.error(plain(tried[1]))
        return
    try:
        lesson = read_lesson(data, files, name=upload.name)
        ctx = st.session_state.get("context")
        if ctx is not None:  # the steps on the loaded model, within the budget (others: when they are shown)
            det = ctx.tracer.detector
            check_budget(lesson, det.name, det.defaults, budget.facts_of(det), _image_facts, name=upload.name)
    except FrcnnError as exc:
        message = f"{exc} (the lesson is unchanged)"
        st.session_state["lesson_upload_tried"] = (digest, message)
        st.sidebar.error(plain(message))
        return
    st.session_state["lesson_upload_tried"] = (digest, None)
    _activate(lesson.id, lesson, 1)
    goto(1)
    st.rerun()


def _sidebar(files: Sequence[str]) -> Lesson | None:
    """The sidebar's Lesson section; the lesson that is on, or None."""
    st.sidebar.header("Lesson")
    slot = st.sidebar.container()
    _upload(files)
    own: Lesson | None = st.session_state.get("lesson_own")
    options = [NONE, *builtin_names()] + ([own.id] if own is not None else [])
    if st.session_state.get("lesson_choice") not in options:
        st.session_state["lesson_choice"] = st.session_state.get("lesson_id") if \
            st.session_state.get("lesson_id") in options else NONE

    def label(name: str) -> str:
        if name == NONE:
            return "(none)"
        if own is not None and name == own.id:
            return f"Yours: {own.title}"
        lesson = find(name, files)
        return lesson.title if lesson is not None else name

    slot.selectbox("Lesson", options, key="lesson_choice", format_func=label, on_change=_choose, args=(files,),
                   help="A guided walk through the pages; step with the buttons or a clicker's keys "
                        "(Right / Left, Page Down / Page Up).")
    lesson = active(files)
    if lesson is None:
        if st.session_state.get("lesson_id"):  # a stored lesson that the server's store has let go
            _off()
        return None
    st.sidebar.download_button("Download the lesson (JSON)", lesson_to_json(lesson), key="lesson_download",
                               file_name=f"lesson-{lesson.id}.json", mime="application/json", on_click="ignore")
    return lesson


# ------------------------------------------------------------------------------------------------ editor
def _edit(lesson: Lesson, change: Any, *args: Any, step: int) -> None:
    """Make ``change(lesson, *args)`` the session's own lesson, at ``step`` (a callback: before the next run)."""
    try:
        new = change(lesson, *args)
    except FrcnnError as exc:
        st.session_state["lesson_message"] = str(exc)
        return
    _activate(new.id, new, min(max(step, 1), len(new)))


def _caption_saved(lesson: Lesson, k: int, key: str) -> None:
    _edit(lesson, with_caption, k - 1, st.session_state.get(key, ""), step=k)


def _title_saved(lesson: Lesson, k: int, key: str) -> None:
    _edit(lesson, with_title, st.session_state.get(key, ""), step=k)


def _add_view(lesson: Lesson, k: int, page: str | None) -> None:
    """The view on screen (this page, sample, model and the settings that differ from its defaults) as step k + 1;
    it is on screen already, so nothing is applied."""
    ctx = st.session_state.get("context")
    if ctx is None or page is None:
        return
    if ctx.image_name != st.session_state.get("sample"):
        st.session_state["lesson_message"] = ("A step shows a sample image, and an uploaded image is shown: "
                                              "remove it in the sidebar to add this view.")
        return
    step = view_step(page, st.session_state["sample"], st.session_state.get("model"), settings(),
                     ctx.tracer.detector.defaults)
    _edit(lesson, inserted, k, step, step=k + 1)


def _editor(lesson: Lesson, k: int, here: str | None, titles: Mapping[str, str]) -> None:
    message = st.session_state.pop("lesson_message", None)
    if message:
        st.error(plain(message))
    with st.expander("Edit the lesson"):
        caption_key, title_key = f"lesson_caption:{lesson.id}:{k}", f"lesson_title:{lesson.id}"
        st.session_state.setdefault(caption_key, lesson.steps[k - 1].caption)  # their keys name the lesson: a
        st.session_state.setdefault(title_key, lesson.title)  # value kept across pages is this lesson's
        st.text_area(f"Caption of step {k} (Markdown)", key=caption_key, height=120)
        c = st.columns(5)
        c[0].button("Save the caption", key="lesson_save", on_click=_caption_saved, args=(lesson, k, caption_key))
        c[1].button(f"Add this view as step {k + 1}", key="lesson_add", on_click=_add_view, args=(lesson, k, here),
                    help="This page, image, model and the settings that differ from the model's defaults, after "
                         "this step.")
        c[2].button("Move up", key="lesson_up", on_click=_edit, args=(lesson, moved, k - 1, -1),
                    kwargs={"step": k - 1}, disabled=k <= 1)
        c[3].button("Move down", key="lesson_down", on_click=_edit, args=(lesson, moved, k - 1, 1),
                    kwargs={"step": k + 1}, disabled=k >= len(lesson))
        c[4].button("Delete this step", key="lesson_delete", on_click=_edit, args=(lesson, deleted, k - 1),
                    kwargs={"step": k}, disabled=len(lesson) <= 1)
        st.text_input("Title", key=title_key, on_change=_title_saved, args=(lesson, k, title_key))
        st.caption("Steps: " + " · ".join(
            f"{'**' * (i == k)}{i} {plain(titles.get(s.page, s.page))}{'**' * (i == k)}"
            for i, s in enumerate(lesson.steps, start=1)))
        st.caption("An edit makes the lesson yours (the selector says so); download it to keep it. Its link works "
                   "on this server while the server runs.")
