"""Every page on a torchvision FPN architecture (random weights offline: nothing is downloaded in tests),
and presentation mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.figures import figures

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["overview.py", "backbone.py", "anchors.py", "anchor_targets.py", "proposals.py", "roi.py", "detections.py",
         "losses.py"]


@pytest.fixture(scope="module")
def fpn_app():
    before = os.environ.get("FRCNN_OFFLINE")
    os.environ["FRCNN_OFFLINE"] = "1"  # offline: random weights with a note, never a download attempt
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["model"] = "mobilenet_v3_fpn"
    at.query_params["sample"] = "Cat (photo)"
    at.query_params["input.min_size"] = "320"
    yield at.run()
    if before is None:
        os.environ.pop("FRCNN_OFFLINE", None)
    else:
        os.environ["FRCNN_OFFLINE"] = before


@pytest.mark.parametrize("page", PAGES)
def test_every_page_on_mobilenet_fpn(fpn_app, page):
    at = fpn_app.switch_page(f"app_pages/{page}").run()
    assert not at.exception, at.exception
    assert at.session_state["context"].tracer.detector.name == "mobilenet_v3_fpn"
    assert at.title and figures(at) or page == "overview.py"


def test_presentation_mode_enlarges_the_figures():
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("app_pages/backbone.py").run()

    normal = figures(at)[0]["layout"]["font"]["size"]
    at.toggle(key="presentation").set_value(True).run()
    assert not at.exception
    big = figures(at)[0]["layout"]["font"]["size"]
    assert big > normal
