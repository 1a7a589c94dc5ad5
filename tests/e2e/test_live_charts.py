"""The charts in a real browser: a slider move keeps the user's zoom and the legend entries they hid, a box selection
on Start adds a ground-truth box, and the PNG download holds the figure with its whole legend (app_pages/_chart.py)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.e2e

RANGES = """(key) => { const d = document.querySelector(`div.frcnn-chart[data-key="${key}"]`);
    return d && d._fullLayout ? [d._fullLayout.xaxis.range.slice(), d._fullLayout.yaxis.range.slice()] : null; }"""
REVISION = """(key) => { const d = document.querySelector(`div.frcnn-chart[data-key="${key}"]`);
    return d ? Number(d.dataset.revision || 0) : 0; }"""
FIGURE_HASH = """d => { const s = d.__frcnn.data.figure; let h = 0;
    for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0; return h; }"""
IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"


def _chart(page, key: str):
    page.wait_for_function(f"({REVISION})('{key}') > 0", timeout=180_000)
    page.wait_for_function(IDLE, timeout=180_000)
    page.wait_for_timeout(500)
    return page.locator(f"div.frcnn-chart[data-key='{key}']")


def _zoom_in(page, chart) -> None:
    """What a user does: the mouse wheel over the plot (scrollZoom is on), four notches."""
    drag = chart.locator(".nsewdrag").first
    drag.scroll_into_view_if_needed()
    box = drag.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.45)
    for _ in range(4):
        page.mouse.wheel(0, -240)
        page.wait_for_timeout(300)


def _move_slider(page, label: str) -> None:
    box = page.locator("[data-testid='stMain'] [data-testid='stSlider']", has_text=label).first
    thumb = box.get_by_role("slider").first
    now, hi = thumb.evaluate(
        "t => [Number(t.getAttribute('aria-valuenow')), Number(t.getAttribute('aria-valuemax'))]")
    thumb.focus()
    thumb.press("ArrowLeft" if now >= hi else "ArrowRight")


@pytest.mark.parametrize("path, key, label", [
    ("anchors", "anchors_image", "Stride (px between centres)"),
    ("anchor_targets", "targets_image", "Positive IoU"),
    ("proposals", "prop_boxes", "NMS IoU threshold"),
    ("detections", "det_figure", "Score threshold"),
])
def test_a_slider_move_keeps_the_users_zoom(app_url, page, path, key, label):
    page.goto(f"{app_url}/{path}")
    chart = _chart(page, key)
    whole = page.evaluate(RANGES, key)
    _zoom_in(page, chart)
    zoomed = page.evaluate(RANGES, key)
    width = lambda r: abs(r[0][1] - r[0][0])  # noqa: E731
    assert width(zoomed) < 0.75 * width(whole), (whole, zoomed)  # the wheel zoomed in
    before = page.evaluate(REVISION, key)
    signature = chart.evaluate(FIGURE_HASH)
    _move_slider(page, label)
    page.wait_for_function(f"({REVISION})('{key}') > {before}", timeout=120_000)  # the new figure is drawn
    page.wait_for_function(IDLE, timeout=120_000)
    assert chart.evaluate(FIGURE_HASH) != signature  # a new figure came (not only a redraw)
    after = page.evaluate(RANGES, key)
    # the view stayed where the user put it
    assert sum(after, []) == pytest.approx(sum(zoomed, []), abs=1e-6), (zoomed, after)
    assert page.locator("[data-testid='stException']").count() == 0


HIDDEN = """(key) => { const d = document.querySelector(`div.frcnn-chart[data-key="${key}"]`);
    return [(d._fullLayout.shapes || []).filter(s => s.visible === 'legendonly').map(s => s.legendgroup),
            d._fullData.filter(t => t.visible === 'legendonly').map(t => t.legendgroup)]; }"""


def _click_legend_entry(page, chart, text: str) -> None:
    """A single click on the legend entry holding ``text`` (on its toggle, not on the toolbar that a hover shows)."""
    entry = chart.locator("g.legend g.traces", has_text=text).first
    entry.scroll_into_view_if_needed()
    box = entry.bounding_box()
    x, y = box["x"] + 15, box["y"] + box["height"] / 2
    assert page.evaluate(f"() => document.elementFromPoint({x}, {y}).classList.contains('legendtoggle')"), text
    page.mouse.click(x, y)


def test_a_slider_move_keeps_the_legend_entries_the_user_hid(app_url, page):
    """A layer of boxes is a path shape with its hover points a trace in its legend group: hiding it from the legend
    hides both, and a new figure (another stride) keeps both hidden (uirevision keeps traces, _chart.js shapes)."""
    page.goto(f"{app_url}/anchors")
    key = "anchors_image"
    chart = _chart(page, key)
    assert page.evaluate(HIDDEN, key) == [[], []]
    _click_legend_entry(page, chart, "size 16 (")
    page.wait_for_function(f"({HIDDEN})('{key}')[0].length > 0", timeout=10_000)
    hidden = page.evaluate(HIDDEN, key)
    assert set(hidden[0]) == {"size 16"} and set(hidden[1]) == {"size 16"}, hidden  # the layer and its hover points
    assert len(hidden[0]) == 2  # the layer's boxes and those of the chosen cell
    before = page.evaluate(REVISION, key)
    _move_slider(page, "Stride (px between centres)")
    page.wait_for_function(f"({REVISION})('{key}') > {before}", timeout=120_000)
    page.wait_for_function(IDLE, timeout=120_000)
    assert page.evaluate(HIDDEN, key) == hidden
    _click_legend_entry(page, chart, "size 16 (")  # a click shows it again
    page.wait_for_function(f"({HIDDEN})('{key}')[0].length == 0", timeout=10_000)
    assert page.locator("[data-testid='stException']").count() == 0


def _gt_count(page) -> int:
    text = page.inner_text("[data-testid='stCaptionContainer']:has-text('ground-truth boxes')")
    return int(text.split("·")[-1].split()[0])


def test_a_box_selection_on_start_adds_a_ground_truth_box(app_url, page):
    page.goto(app_url)
    chart = _chart(page, "overview_image")
    before = _gt_count(page)
    chart.scroll_into_view_if_needed()
    chart.hover()
    chart.locator("[data-title='Box Select']").click()
    plot = chart.locator(".nsewdrag").first.bounding_box()
    x0, y0 = plot["x"] + plot["width"] * 0.05, plot["y"] + plot["height"] * 0.05
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 60, y0 + 40, steps=8)
    page.mouse.move(x0 + 120, y0 + 80, steps=8)
    page.mouse.up()
    page.wait_for_function(f"""() => {{
        const c = document.querySelector("[data-testid='stCaptionContainer']");
        return c && !c.innerText.includes(' {before} ground-truth boxes'); }}""", timeout=120_000)
    assert _gt_count(page) == before + 1
    assert page.locator("[data-testid='stException']").count() == 0


def test_the_png_download_holds_the_figure_and_its_whole_legend(app_url, page, tmp_path):
    page.goto(f"{app_url}/detections")
    chart = _chart(page, "det_figure")
    chart.scroll_into_view_if_needed()
    size = chart.evaluate("d => [d.clientWidth, d.clientHeight]")
    legend = chart.locator("g.legend").first.bounding_box()
    frame = chart.bounding_box()
    assert legend["x"] >= frame["x"] - 1 and legend["x"] + legend["width"] <= frame["x"] + frame["width"] + 1
    assert legend["y"] >= frame["y"] - 1  # the legend is inside the chart on screen: nothing of it clipped
    chart.hover()
    with page.expect_download(timeout=60_000) as download:
        chart.locator("[data-title='Download plot as a png'], [data-title^='Download plot']").first.click()
    path = tmp_path / "figure.png"
    download.value.save_as(path)
    image = Image.open(io.BytesIO(path.read_bytes())).convert("L")
    assert image.size == (size[0] * 2, size[1] * 2)  # the whole figure, at the toolbar's scale 2
    left = int((legend["x"] - frame["x"]) * 2)
    top = int((legend["y"] - frame["y"]) * 2)
    crop = image.crop((left, top, left + int(legend["width"] * 2), top + int(legend["height"] * 2)))
    dark = int((np.asarray(crop) < 128).sum())
    assert dark > 200, "the legend's entries are in the PNG"  # its text and line samples
    if os.environ.get("FRCNN_KEEP_PNG"):
        path.replace(os.environ["FRCNN_KEEP_PNG"])
