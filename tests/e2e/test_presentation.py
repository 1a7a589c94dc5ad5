"""Presentation mode in a real browser (issue 18, item 1): what a room sees at 1280x720 and 1920x1080 with the
sidebar collapsed, measured on every page.

One browser context a viewport: open the app, turn on the sidebar's "Presentation mode", collapse the sidebar, then
visit every page through the app's own navigation (the session, and so the mode, is kept). On each page:

- the page's main figure (app_pages/_presentation.MAIN_FIGURES) lies inside the viewport, without scrolling;
- the visible title and every metric value have a computed font size of at least 40 px, and the title starts
  right below Streamlit's header (no blank band above it);
- every text of the main figure's SVG (ticks, legend, title, annotations) is at least 18 px, and so is its
  hover label's font; no text runs out of the figure; the page's other figures' text is at least 18 px too;
- no widget or metric label is cut (its box, and each box inside it, holds its text: scrollWidth <= clientWidth
  where the overflow is hidden), with the controls' expanders opened.

A screenshot of every page at 1280x720 goes to docs/screenshots/presentation/<page>.png (what the room sees).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from app_pages._presentation import MAIN_FIGURES

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots" / "presentation"
pytestmark = pytest.mark.e2e

TITLE_PX, METRIC_PX, FIGURE_TEXT_PX, HOVER_PX = 40, 40, 18, 18
TITLE_TOP_PX = 100  # the title's top edge at most this far from the viewport's (Streamlit's header is 60 px)

# (navigation title in app.py, screenshot name, the main figure's chart key)
PAGES = [("Start", "start", "overview_image"), ("Backbone features", "backbone", "bb_figure"),
         ("Anchors", "anchors", "anchors_image"), ("Anchor fit (dataset)", "anchor_fit", "fit_figure"),
         ("Anchor targets", "anchor_targets", "targets_image"), ("RPN proposals", "proposals", "prop_objectness"),
         ("RoI sampling & pooling", "roi", "roi_chart"), ("Detections", "detections", "det_figure"),
         ("Losses", "losses", "loss_terms"), ("Compare settings", "compare", "compare_fig_A"),
         ("Training", "training", "train_curves")]
VIEWPORTS = [(1280, 720), (1920, 1080)]

IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
DRAWN = """(key) => { const d = document.querySelector(`div.frcnn-chart[data-key="${key}"]`);
    return !!d && Number(d.dataset.revision || 0) > 0 && !!d._fullLayout; }"""
GO = """(title) => { const a = Array.from(document.querySelectorAll('[data-testid="stSidebarNavLink"]'))
    .find(e => e.textContent.trim().endsWith(title)); if (a) a.click(); return !!a; }"""  # after its icon's name
MEASURE = """(key) => {
  const px = (e) => parseFloat(getComputedStyle(e).fontSize);
  const shown = (e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const main = document.querySelector('[data-testid="stMain"]');
  const h1 = Array.from(main.querySelectorAll('h1')).find(shown);
  const div = document.querySelector(`div.frcnn-chart[data-key="${key}"]`);
  const box = div.getBoundingClientRect();
  const texts = Array.from(div.querySelectorAll('svg text')).filter(t => t.textContent.trim() && shown(t))
    .map(t => { const r = t.getBoundingClientRect(); const legend = t.closest('g.legend');
      const scrolls = !!legend && !!legend.querySelector('.scrollbar') &&
        legend.querySelector('.scrollbar').getBoundingClientRect().height > 0;
      return {text: t.textContent.slice(0, 60), px: px(t), left: r.left - box.left, right: r.right - box.left,
              top: r.top - box.top, bottom: r.bottom - box.top, scrolled: scrolls}; });
  const others = Array.from(document.querySelectorAll('div.frcnn-chart')).filter(d => d !== div && d._fullLayout)
    .flatMap(d => Array.from(d.querySelectorAll('svg text')).filter(t => t.textContent.trim() && shown(t))
      .map(t => ({chart: d.dataset.key, text: t.textContent.slice(0, 60), px: px(t)})));
  const hovers = [div._fullLayout.hoverlabel.font.size,
                  ...div._fullData.map(t => t.hoverlabel && t.hoverlabel.font && t.hoverlabel.font.size)
                    .filter(s => typeof s === 'number')];
  return {title: h1 ? {text: h1.textContent, px: px(h1), top: h1.getBoundingClientRect().top} : null,
          metrics: Array.from(main.querySelectorAll('[data-testid="stMetricValue"]')).filter(shown)
            .map(e => ({text: e.textContent, px: px(e)})),
          figure: {top: box.top, bottom: box.bottom, left: box.left, right: box.right, width: box.width,
                   height: box.height},
          viewport: {width: innerWidth, height: innerHeight, scrollY: scrollY,
                     scrolled: document.querySelector('[data-testid="stMain"]').scrollTop || 0},
          texts: texts, others: others, hovers: hovers};
}"""
CUT = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const out = [];
  for (const label of main.querySelectorAll('[data-testid="stWidgetLabel"], [data-testid="stMetricLabel"]')) {
    const r = label.getBoundingClientRect();
    if (!r.width || !r.height || !label.textContent.trim()) continue;
    for (const e of [label, ...label.querySelectorAll('*')]) {
      const s = getComputedStyle(e);
      const hidesX = s.overflowX !== 'visible' || s.textOverflow === 'ellipsis';
      const hidesY = s.overflowY !== 'visible';
      if ((hidesX && e.scrollWidth > e.clientWidth + 1) || (hidesY && e.scrollHeight > e.clientHeight + 1)) {
        out.push({text: label.textContent.trim().slice(0, 60), scrollWidth: e.scrollWidth, clientWidth: e.clientWidth,
                  scrollHeight: e.scrollHeight, clientHeight: e.clientHeight});
        break;
      }
    }
  }
  return out;
}"""
OPEN_EXPANDERS = """() => { let n = 0;
  for (const d of document.querySelectorAll('[data-testid="stMain"] [data-testid="stExpander"] details')) {
    if (!d.open) { d.querySelector('summary').click(); n++; } } return n; }"""


def _settled(page, timeout=180_000):
    page.wait_for_selector("[data-testid='stMain']", timeout=timeout)
    page.wait_for_function(IDLE, timeout=timeout)
    page.wait_for_timeout(400)
    page.wait_for_function(IDLE, timeout=timeout)


def _train_two_steps(page) -> None:
    """The Training page has a figure once a job has run: two steps of the default model."""
    steps = page.locator("[data-testid='stNumberInput']", has_text="Steps").locator("input")
    steps.fill("2")
    page.get_by_role("button", name="Start training").click()
    page.wait_for_selector("text=done: step 2 of 2", timeout=300_000)
    _settled(page)


@pytest.fixture(scope="module", params=VIEWPORTS, ids=lambda v: f"{v[0]}x{v[1]}")
def presenter(browser, app_url, request):
    """A page in presentation mode with the sidebar collapsed, at the viewport ``request.param``."""
    width, height = request.param
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(app_url)
    _present(page)
    yield page, (width, height)
    context.close()


def _present(page) -> None:
    """Presentation mode on (the sidebar's toggle), then the sidebar collapsed, as a presenter does."""
    _settled(page)
    page.locator("[data-testid='stSidebar'] [data-testid='stCheckbox']", has_text="Presentation mode").locator(
        "label").click()
    _settled(page)
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.hover()
    page.locator("[data-testid='stSidebarCollapseButton'] button").click()
    page.wait_for_function("() => document.querySelector('[data-testid=\"stSidebar\"]').dataset.collapsed === 'true'"
                           " && document.querySelector('[data-testid=\"stSidebar\"]').getBoundingClientRect().right"
                           " <= 0", timeout=10_000)
    page.wait_for_timeout(600)  # the sidebar's slide


def _visit(page, title: str, name: str, key: str) -> dict:
    assert page.evaluate(GO, title), f"no navigation link {title!r}"
    _settled(page)
    if name == "training" and not page.locator("div.frcnn-chart[data-key='train_curves']").count():
        _train_two_steps(page)
    page.wait_for_function(f"({DRAWN})('{key}')", timeout=300_000)  # anchor fit: its background job
    _settled(page)
    page.wait_for_timeout(700)  # plotly's responsive relayout to the div's CSS height
    assert page.locator("[data-testid='stException']").count() == 0, page.inner_text("[data-testid='stException']")
    return page.evaluate(MEASURE, key)


@pytest.mark.parametrize("title, name, key", PAGES, ids=[p[1] for p in PAGES])
def test_a_room_can_read_every_page(presenter, title, name, key):
    page, (width, height) = presenter
    assert key in MAIN_FIGURES
    m = _visit(page, title, name, key)
    if width == 1280:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"))
    print(name, f"{width}x{height}", {k: m[k] for k in ("title", "figure", "viewport")},
          "metrics", [x["px"] for x in m["metrics"]])
    fig, view = m["figure"], m["viewport"]
    # the main figure is on screen, whole, without scrolling
    assert fig["top"] >= 0 and fig["left"] >= 0, fig
    assert fig["bottom"] <= view["height"] and fig["right"] <= view["width"], (fig, view)
    assert fig["height"] >= 0.4 * view["height"], fig  # and is not shrunk to a strip
    # the title and the numbers
    assert m["title"] is not None and m["title"]["px"] >= TITLE_PX, m["title"]
    assert m["title"]["top"] <= TITLE_TOP_PX, m["title"]
    small = [x for x in m["metrics"] if x["px"] < METRIC_PX]
    assert not small, small
    # the figure's own text
    assert m["texts"], "no text drawn in the figure"
    tiny = [t for t in m["texts"] + m["others"] if t["px"] < FIGURE_TEXT_PX]  # every figure of the page
    assert not tiny, tiny[:5]
    out = [t for t in m["texts"] if t["left"] < -2 or t["right"] > fig["width"] + 2
           or not t["scrolled"] and (t["top"] < -2 or t["bottom"] > fig["height"] + 2)]  # a long legend scrolls
    assert not out, out[:5]
    assert min(m["hovers"]) >= HOVER_PX, m["hovers"]
    # no label cut, with every expander (the controls) open
    page.evaluate(OPEN_EXPANDERS)
    page.wait_for_timeout(500)
    cut = page.evaluate(CUT)
    assert not cut, cut[:5]
    page.evaluate(OPEN_EXPANDERS.replace("!d.open", "d.open"))  # closed again: the next page starts as a room sees it


LESSON = json.loads((ROOT / "frcnn" / "data" / "lessons" / "paper.json").read_text())["steps"]
ON_SCREEN = """(key) => { const d = document.querySelector(`div.frcnn-chart[data-key="${key}"]`);
    if (!d) return false; const r = d.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight + 1; }"""
STEP = """([k, n]) => { const p = document.querySelector('.st-key-lesson_panel');
    return !!p && p.innerText.includes(`Step ${k} of ${n}`); }"""


def test_a_lesson_in_presentation_mode_shows_each_steps_figure(browser, app_url):
    """A teacher plays the built-in lesson in presentation mode at 1280x720: on every step the figure the step
    highlights is on screen, whole (the stage's two boxes give the caption their room; a figure further down the
    page is scrolled to), the main figure at least the presentation minimum, the caption at least 17 px."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    try:
        page = context.new_page()
        page.goto(f"{app_url}/?lesson=paper&step=1")
        _present(page)
        n = len(LESSON)
        for k, step in enumerate(LESSON, 1):
            if k > 1:
                page.locator("[data-testid='stMain'] h1").first.click()  # the focus on the page, as a clicker's
                page.keyboard.press("PageDown")
            page.wait_for_function(STEP, arg=[k, n], timeout=180_000)
            key = step["highlight"]
            page.wait_for_function(f"({DRAWN})('{key}')", timeout=180_000)
            _settled(page)
            with contextlib.suppress(PlaywrightTimeout):  # plotly's relayout, and the scroll to the figure once the
                page.wait_for_function(ON_SCREEN, arg=key, timeout=15_000)  # page has settled: asserted below
            m = page.evaluate(MEASURE, key)
            fig, view = m["figure"], m["viewport"]
            print("lesson step", k, key, fig)
            assert fig["top"] >= 0 and fig["bottom"] <= view["height"] + 1, (k, key, fig, view)
            if key in MAIN_FIGURES:
                assert fig["height"] >= 290, (k, key, fig)
            caption = page.evaluate("() => parseFloat(getComputedStyle(document.querySelector("
                                    "'.st-key-lesson_caption p')).fontSize)")
            assert caption >= 17, caption
            if k == 3:
                SHOTS.mkdir(parents=True, exist_ok=True)
                page.evaluate("() => document.activeElement && document.activeElement.blur()")
                page.screenshot(path=str(SHOTS / "lesson_step.png"))
    finally:
        context.close()
