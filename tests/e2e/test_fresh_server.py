"""A shared link is the first request of a fresh server: the page it names opens with its settings, under the
app's own navigation, and no legacy multipage entry is ever shown (README, "How it is built": why the pages live
in app_pages/ and not in pages/)."""

from __future__ import annotations

import pytest

from tests.e2e.test_browser import _open

pytestmark = pytest.mark.e2e

TITLES = ["Start", "Backbone features", "Anchors", "Anchor fit (dataset)", "Anchor targets", "RPN proposals",
          "RoI sampling & pooling", "Detections", "Losses", "Compare settings", "Training"]  # app.py's PAGES


def test_a_first_deep_link_on_a_fresh_server_opens_its_page_with_its_settings(fresh_app_url, page):
    _open(page, f"{fresh_app_url}/proposals?model=default&sample=Synthetic+scene+2&rpn.nms_thresh=0.55")
    body = page.inner_text("body")
    assert "state is missing" not in body and "Page not found" not in body
    assert page.inner_text("h1") == "RPN proposals"
    assert "0.55" in page.inner_text("[data-testid='stSlider']:has-text('NMS IoU')")
    links = page.locator("[data-testid='stSidebarNavLink']")
    shown = [links.nth(i).inner_text().split("\n")[-1].strip() for i in range(links.count())]
    assert shown == TITLES  # the app's titles only: no file name of a legacy pages/ folder ("app", "overview")
