"""The app in a real browser: it loads, traces, shows no exception, and a bad upload is an st.error."""

from __future__ import annotations

from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
pytestmark = pytest.mark.e2e


def _wait_for_trace(page):
    page.wait_for_selector("text=Pipeline", timeout=120_000)
    page.wait_for_selector("[data-testid='stDataFrame']", timeout=120_000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)


def test_overview_page_traces_in_the_browser(app_url, page):
    page.goto(app_url)
    _wait_for_trace(page)
    text = page.inner_text("body")
    assert "anchors" in text and "detections" in text
    assert page.locator("[data-testid='stException']").count() == 0
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "overview.png"), full_page=True)


def test_a_corrupt_upload_shows_an_error_and_the_page_keeps_working(app_url, page, tmp_path):
    page.goto(app_url)
    _wait_for_trace(page)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(bad))
    page.wait_for_selector("[data-testid='stAlertContentError']", timeout=60_000)
    assert "broken.png" in page.inner_text("[data-testid='stAlertContentError']")
    assert page.locator("[data-testid='stException']").count() == 0
    assert "detections" in page.inner_text("body")
