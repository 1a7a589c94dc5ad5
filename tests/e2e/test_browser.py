"""The app in a real browser (Debian's chromium, headless, driven by Playwright).

Every page is visited and rendered without a Streamlit exception, a screenshot of each goes to docs/,
slider moves change the figures (and their latency is printed), settings reach the URL, and a corrupt
upload shows an error while the page keeps working.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "screenshots"
pytestmark = pytest.mark.e2e

PAGES = [("", "start"), ("backbone", "backbone"), ("anchors", "anchors"), ("anchor_targets", "anchor_targets"),
         ("proposals", "proposals"), ("roi", "roi"), ("detections", "detections"), ("losses", "losses"),
         ("anchor_fit", "anchor_fit"), ("compare", "compare"), ("training", "training")]

NO_FIGURE_YET = ("", "training")  # the start page draws its figures lower down; training has none until a run

# what every figure shows (x and y may be plain arrays or base64 {dtype, bdata} objects; boxes are path shapes)
FIGURE_SIGNATURE = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd =>
    JSON.stringify((gd.data || []).map(t => [t.name, JSON.stringify(t.x || []).slice(0, 400),
                                             JSON.stringify(t.y || []).slice(0, 400)]))
    + JSON.stringify(((gd.layout || {}).shapes || []).map(s => [s.name, (s.path || '').slice(0, 400)]))).join('|')"""
# every figure drawn: a new chart has its data at once, its SVG traces and background image only once plotly has
# drawn them (the image loads asynchronously), so a changed signature alone would time less than the user waits
FIGURES_DRAWN = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).every(gd => gd._fullData &&
    gd.querySelectorAll('.scatterlayer .trace').length ===
        gd._fullData.filter(t => t.type === 'scatter' && t.visible === true).length &&
    gd.querySelectorAll('g.im image').length === gd._fullData.filter(t => t.type === 'image').length)"""


def _settled(page, timeout=180_000):
    """Wait until the script has finished: no running indicator, and at least one element rendered."""
    page.wait_for_selector("[data-testid='stMain']", timeout=timeout)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]') && "
        "document.querySelectorAll('[data-testid=\"stElementContainer\"]').length > 3", timeout=timeout)
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)


def _open(page, url):
    page.goto(url)
    _settled(page)
    assert page.locator("[data-testid='stException']").count() == 0, page.inner_text("[data-testid='stException']")


@pytest.mark.parametrize("path, name", PAGES)
def test_every_page_renders_without_exception(app_url, page, path, name):
    _open(page, f"{app_url}/{path}")
    if path not in NO_FIGURE_YET:
        page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    assert page.locator("h1").count() >= 1
    DOCS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("path, name", PAGES)
def test_every_page_on_a_torchvision_fpn_model(app_url, page, path, name):
    """torchvision's MobileNetV3 FPN, random weights offline (FRCNN_OFFLINE=1 in CI), through every page."""
    _open(page, f"{app_url}/{path}?model=mobilenet_v3_fpn&sample=Cat+%28photo%29&input.min_size=320")
    if path not in NO_FIGURE_YET:
        page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    page.wait_for_function("() => document.querySelector(\"[data-testid='stSidebar']\").innerText"  # its offline
                           ".includes('fasterrcnn_mobilenet_v3_large_fpn')", timeout=120_000)  # note, once drawn


def _slider(page, label: str):
    box = page.locator("[data-testid='stSlider']", has_text=label).first
    return box.get_by_role("slider").first


def _time_slider_moves(page, label: str, moves: int = 10, key: str = "ArrowRight") -> list[float]:
    """Press the slider's arrow key and time until some plotly figure's data has changed and every figure is drawn,
    ``moves`` times."""
    thumb = _slider(page, label)
    times = []
    for i in range(moves):
        before = page.evaluate(FIGURE_SIGNATURE)
        thumb.focus()
        start = time.perf_counter()
        thumb.press(key if i % 2 == 0 else ("ArrowLeft" if key == "ArrowRight" else "ArrowRight"))
        page.wait_for_function(f"(before) => ({FIGURE_SIGNATURE})() !== before && ({FIGURES_DRAWN})()", arg=before,
                               timeout=60_000)
        times.append((time.perf_counter() - start) * 1000)
        _settled(page)
    thumb.focus()
    thumb.press(key)  # end one step away from where it started, so the URL carries a changed value
    _settled(page)
    page.wait_for_timeout(500)
    return times


def test_slider_moves_update_the_figures_and_the_url(app_url, page):
    results = {}
    _open(page, f"{app_url}/proposals")
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    results["proposals: NMS IoU"] = _time_slider_moves(page, "NMS IoU")
    assert "rpn.nms_thresh" in page.url
    _open(page, f"{app_url}/anchors")
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    results["anchors: stride"] = _time_slider_moves(page, "Stride (px between centres)")
    assert "anchors.stride" in page.url or "rpn.nms_thresh" in page.url
    assert page.locator("[data-testid='stException']").count() == 0
    summary = {k: {"median_ms": round(statistics.median(v), 1), "all_ms": [round(x, 1) for x in v]}
               for k, v in results.items()}
    print("slider -> updated figure:", json.dumps(summary))  # the benchmark is benchmarks/browser.py


def test_a_shared_url_reopens_the_same_state(app_url, page):
    _open(page, f"{app_url}/proposals?model=default&sample=Synthetic+scene+2&rpn.nms_thresh=0.55")
    assert "0.55" in page.inner_text("[data-testid='stSlider']:has-text('NMS IoU')")


def test_a_corrupt_upload_shows_an_error_and_the_page_keeps_working(app_url, page, tmp_path):
    _open(page, app_url)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    uploader = page.locator("[data-testid='stFileUploader']", has_text="Upload an image")
    uploader.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(bad))
    page.wait_for_selector("[data-testid='stAlertContentError']", timeout=60_000)
    assert "broken.png" in page.inner_text("[data-testid='stAlertContentError']")
    _settled(page)
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.locator(".js-plotly-plot").count() >= 1


def test_training_page_runs_a_few_steps_and_the_model_is_selectable(app_url, page):
    _open(page, f"{app_url}/training")
    steps = page.locator("[data-testid='stNumberInput']", has_text="Steps").locator("input")
    steps.fill("3")  # inside a form: the value is taken when the form is submitted
    page.get_by_role("button", name="Start training").click()
    page.wait_for_selector("text=done: step 3 of 3", timeout=300_000)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    box = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']", has_text="Trained in this session")
    box.click()
    page.get_by_role("option", name="default-").first.click()
    page.wait_for_selector("[data-testid='stSidebar'] >> text=trained on the Training page", timeout=60_000)
    _settled(page)
    assert "Weights: default-" in page.inner_text("[data-testid='stSidebar']")
    assert page.locator("[data-testid='stException']").count() == 0
