"""The app's one error guard (app_pages._shared.guard) through AppTest: a FrcnnError raised in run_trace, in a
page's own code and in a page's fragment is one st.error line, never a traceback, and the sidebar (image, model,
settings) is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_pages import _shared
from app_pages._shared import plain
from frcnn import FrcnnError, Tracer

APP = str(Path(__file__).resolve().parents[1] / "app.py")
REFUSAL = "refused by the test"


def _refuse(*args, **kwargs):
    raise FrcnnError(REFUSAL)


def _app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    return at.switch_page(f"app_pages/{page}").run() if page else at


def _one_refusal(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [plain(REFUSAL)]
    assert at.selectbox(key="sample").value == "Synthetic scene 1"  # the sidebar drew: the image is kept
    assert "settings" in at.session_state


@pytest.mark.parametrize("page", [None, "proposals.py", "detections.py"])
def test_a_refused_trace_is_one_error_line(monkeypatch, page):
    """run_trace on the Start page (page code) and in two pages' fragments."""
    at = _app(page)
    monkeypatch.setattr(Tracer, "run", _refuse)
    at.run()
    _one_refusal(at)


@pytest.mark.parametrize("page", [None, "backbone.py"])
def test_a_refusal_in_a_page_is_one_error_line(monkeypatch, page):
    """Outside run_trace: the Start page's "This model vs the paper" box (the page runner's guard) and the
    Backbone page's (inside its fragment: the fragment's own guard)."""
    monkeypatch.setattr(_shared, "departures", _refuse)
    _one_refusal(_app(page))


def test_a_refusal_in_a_fragment_rerun_is_one_error_line(monkeypatch):
    """A widget inside a fragment moved after the page drew (in a browser it reruns only the fragment, not app.py's
    page runner): the refusal is still one line."""
    at = _app("detections.py")
    monkeypatch.setattr(Tracer, "run", _refuse)
    at.slider(key="det_iou").set_value(0.6).run()
    _one_refusal(at)


def test_the_guard_goes_on_or_stops():
    def page() -> None:
        import streamlit as st

        from app_pages._shared import guard
        from frcnn import FrcnnError

        with guard("keeping the previous image", about="photo.png"):
            raise FrcnnError("not an image")
        st.write("after the first")
        with guard(stop=True):
            raise FrcnnError("stop here")
        st.write("never")

    at = AppTest.from_function(page).run()
    assert not at.exception
    assert [e.value for e in at.error] == [plain("photo.png: not an image (keeping the previous image)"),
                                           plain("stop here")]
    assert [m.value for m in at.markdown] == ["after the first"]


def test_out_of_memory_is_one_line_and_other_errors_are_not_hidden():
    def page() -> None:
        from app_pages._shared import guard

        with guard():
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        with guard():
            raise RuntimeError("a bug")

    at = AppTest.from_function(page).run()
    assert len(at.error) == 1 and at.exception and "a bug" in at.exception[0].value
