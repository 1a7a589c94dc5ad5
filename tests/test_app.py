"""The app through streamlit's AppTest: the start page traces a sample, pages switch, settings reach the URL,
a crafted URL cannot crash it, and ground truth can be edited."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.figures import figures

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _app(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at.run()


def test_start_page_traces_the_sample_and_draws_the_pipeline():
    at = _app()
    assert not at.exception and not at.error
    dot = at.get("graphviz_chart")[0].proto.spec
    for word in ("anchors", "inside the image", "proposals after NMS", "detections", "positive"):
        assert word in dot
    assert len(figures(at)) == 2


def test_backbone_page():
    at = _app()
    at.switch_page("app_pages/backbone.py").run()
    assert not at.exception
    assert at.metric[2].value.endswith("×128")  # the default model's 128 channels


def test_url_params_round_trip():
    from app_pages._shared import url_params
    from frcnn.settings import Settings

    base = Settings()
    changed = base.replace({"rpn.nms_thresh": 0.5, "anchors.sizes": (64, 128), "rpn.allow_low_quality_matches": False})
    params = url_params(changed, base, model="default")
    assert params == {"model": "default", "rpn.nms_thresh": "0.5", "anchors.sizes": "64,128",
                      "rpn.allow_low_quality_matches": "False"}
    assert base.replace({k: v for k, v in params.items() if k != "model"}) == changed


def test_settings_come_back_from_a_shared_url():
    again = _app({"rpn.nms_thresh": "0.55", "model": "default", "sample": "Synthetic scene 2"})
    assert again.session_state["settings"].rpn.nms_thresh == 0.55
    assert again.session_state["sample"] == "Synthetic scene 2"


def test_a_crafted_url_is_refused_with_a_message_not_an_exception():
    at = _app({"rpn.nms_thresh": "7", "anchors.ratios": "0", "evil": "<script>", "model": "nope"})
    assert not at.exception
    messages = " ".join(w.value for w in at.warning)
    assert "not applied" in messages.lower() and "evil" in messages
    assert at.session_state["settings"].rpn.nms_thresh == 0.7


CRAFTED = {"rpn.post_nms_top_n": "99999", "rpn.pre_nms_top_n": "10", "anchors.ratios": "", "rpn.bg_iou_thresh": "0.9",
           "roi.score_thresh": "nan", "input.min_size": "1e12", "anchors.sizes": "16," * 40, "roi.pool": "__import__",
           "sample": "../../etc/passwd", "device": "cuda:7", "rpn.nms_thresh": "0.6"}


@pytest.mark.parametrize("page", sorted(p.name for p in (Path(APP).parent / "app_pages").glob("[!_]*.py")))
def test_a_crafted_url_cannot_crash_any_page(page):
    """Inconsistent, out-of-range, wrong-type and hostile values: every page runs, the valid key applies."""
    at = _app(CRAFTED)
    assert "not applied" in " ".join(w.value for w in at.warning).lower()  # said once, where the link lands
    at.switch_page(f"app_pages/{page}").run()
    assert not at.exception, at.exception
    assert at.session_state["settings"].rpn.nms_thresh == 0.6  # the one valid setting
    s = at.session_state["settings"]
    assert s.rpn.post_nms_top_n <= s.rpn.pre_nms_top_n and s.anchors.ratios and s.input.min_size <= 4096


def test_promote_and_clear_ground_truth():
    at = _app()
    at.slider(key="promote_thresh").set_value(0.0).run()
    at.button(key="gt_promote").click().run()
    assert not at.exception
    ctx = at.session_state["context"]
    assert len(ctx.gt_boxes) == len(ctx.gt_labels) > 0
    at.button(key="gt_clear").click().run()
    assert at.session_state["context"].gt_boxes is None and not at.exception
