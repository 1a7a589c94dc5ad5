"""The built-in lesson in a real browser: opened by its link at step 1, played to the last step with the keys a
presentation clicker sends (Right and PageDown), back with Left and PageUp, every step's page and caption checked;
a step's link opened in a new browser context shows that step; a bad lesson upload is an error and the lesson
stays, a good one starts (app_pages/_lesson.py)."""

from __future__ import annotations

import ast
import json
import re
import time
from urllib.parse import parse_qs, urlparse

import pytest

from tests.e2e.conftest import ROOT
from tests.e2e.test_browser import _settled

pytestmark = pytest.mark.e2e

LESSON = json.loads((ROOT / "frcnn" / "data" / "lessons" / "paper.json").read_text())
PANEL = ".st-key-lesson_panel"
DOCS = ROOT / "docs" / "screenshots"
IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"


def _titles() -> dict[str, str]:
    """Page file -> title, from app.py's PAGES (read from its source: importing it would run the app)."""
    tree = ast.parse((ROOT / "app.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PAGES" for t in node.targets):
            return {e.elts[0].value: e.elts[1].value for e in node.value.elts}
    raise AssertionError("no PAGES in app.py")


TITLES = _titles()


def _words(caption: str) -> str:
    """The caption's first sentence after its bold heading, as the browser shows it (Markdown's * are gone)."""
    body = re.sub(r"^\*\*[^*]+\*\*\s*", "", caption).replace("*", "")
    return body[:60]


def _on_step(page, k: int, timeout: float = 180_000) -> None:
    """Wait until the panel says step k, the page's title is step k's, and the script is idle; check the caption,
    the title and the URL."""
    step = LESSON["steps"][k - 1]
    title = TITLES[step["page"]]
    n = len(LESSON["steps"])
    page.wait_for_function(
        """([panel, text, title]) => { const p = document.querySelector(panel); const h = document.querySelector('h1');
            return p && p.innerText.includes(text) && h && h.innerText.trim().startsWith(title); }""",
        arg=[PANEL, f"Step {k} of {n}", title], timeout=timeout)
    page.wait_for_function(IDLE, timeout=timeout)
    _settled(page, timeout)
    assert page.locator("[data-testid='stException']").count() == 0
    panel = page.inner_text(PANEL)
    assert f"Step {k} of {n}" in panel and _words(step["caption"]) in panel, panel
    assert page.inner_text("h1").strip().startswith(title)
    query = parse_qs(urlparse(page.url).query)
    assert query.get("lesson") == ["paper"] and query.get("step") == [str(k)], page.url
    for key, value in step["settings"].items():
        assert query.get(key) == [value], (key, page.url)
    page.wait_for_selector(f"[data-lesson-step='{k}']", state="attached", timeout=timeout)  # the keys know step k


def _press(page, key: str) -> None:
    page.locator("h1").first.click()  # what a presenter's screen has: the focus on the page, not in a widget
    page.keyboard.press(key)


def test_the_paper_lesson_plays_with_the_keyboard_and_each_step_has_its_link(app_url, page, browser):
    n = len(LESSON["steps"])
    page.goto(f"{app_url}/?lesson=paper&step=1")
    _on_step(page, 1)
    times, links = [], {}
    for k in range(2, n + 1):
        start = time.perf_counter()
        _press(page, "ArrowRight" if k % 2 == 0 else "PageDown")
        _on_step(page, k)
        times.append(time.perf_counter() - start)
        links[k] = page.url
        if k == 2:  # the panel on a page, for the docs
            DOCS.mkdir(parents=True, exist_ok=True)
            page.evaluate("() => document.activeElement && document.activeElement.blur()")  # no focus frame
            page.screenshot(path=str(DOCS / "lesson.png"))
    print("lesson step with the keyboard, s:", [round(t, 1) for t in times])
    _press(page, "ArrowRight")  # at the last step: nothing to go to
    page.wait_for_timeout(1500)
    _on_step(page, n)
    _press(page, "ArrowLeft")
    _on_step(page, n - 1)
    _press(page, "PageUp")
    _on_step(page, n - 2)

    # a step's link, opened in a new browser context (no cookie, no session), shows that step
    for k in (7, 3):
        other = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            fresh = other.new_page()
            fresh.goto(links[k])
            _on_step(fresh, k)
            if k == 7:  # the step's setting is the slider's value, not only the URL's
                shown = fresh.inner_text("[data-testid='stSlider']:has-text('Background IoU ≥')")
                assert "0.10" in shown, shown
        finally:
            other.close()


def test_a_slider_keeps_its_arrow_keys_and_a_bad_upload_leaves_the_lesson(app_url, page, tmp_path):
    page.goto(f"{app_url}/proposals?lesson=paper&step=6")
    _on_step(page, 6)
    thumb = page.locator("[data-testid='stSlider']", has_text="NMS IoU threshold").get_by_role("slider").first
    thumb.focus()
    thumb.press("ArrowRight")  # the slider's own key
    page.wait_for_function("() => location.search.includes('rpn.nms_thresh=0.75')", timeout=120_000)
    _settled(page)
    assert "Step 6 of" in page.inner_text(PANEL)

    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps({**LESSON, "steps": [{**LESSON["steps"][0], "page": "nowhere.py"}]}))
    uploader = page.locator("[data-testid='stFileUploader']", has_text="Upload a lesson")
    uploader.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(bad))
    page.wait_for_selector("[data-testid='stAlertContentError']", timeout=60_000)
    error = page.inner_text("[data-testid='stAlertContentError']")
    assert "broken.json: step 1: page 'nowhere.py'" in error and "unchanged" in error
    _settled(page)
    assert "Step 6 of 10" in page.inner_text(PANEL)

    good = tmp_path / "mine.json"
    mine = {"format": "frcnn-lesson", "version": 1, "title": "Two views",
            "steps": [{"page": "detections.py", "image": "Synthetic scene 2", "model": "default",
                       "settings": {"roi.nms_thresh": "0.5"}, "caption": "My **first** view."},
                      {"page": "anchors.py", "image": "Synthetic scene 3", "caption": "The second."}]}
    good.write_text(json.dumps(mine))
    uploader.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(good))
    page.wait_for_function(f"() => (document.querySelector('{PANEL}') || {{}}).innerText?.includes('Step 1 of 2')",
                           timeout=180_000)
    _settled(page)
    assert page.inner_text("h1").strip().startswith("Detections") and "My first view." in page.inner_text(PANEL)
    query = parse_qs(urlparse(page.url).query)
    assert query["roi.nms_thresh"] == ["0.5"] and query["sample"] == ["Synthetic scene 2"] and query["step"] == ["1"]
    _press(page, "PageDown")
    page.wait_for_function(f"() => document.querySelector('{PANEL}').innerText.includes('Step 2 of 2')",
                           timeout=180_000)
    _settled(page)
    assert page.inner_text("h1").strip().startswith("Anchors") and "The second." in page.inner_text(PANEL)
    assert page.locator("[data-testid='stException']").count() == 0
