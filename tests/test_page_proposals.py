"""The RPN proposals page through streamlit's AppTest: its sliders move the counts the way the proposal layer
says they must on the app's default sample, and the NMS replay steps forward and back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.figures import figures

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(scope="module")
def at():
    app = AppTest.from_file(APP, default_timeout=90).run()
    app.switch_page("app_pages/proposals.py").run()
    assert not app.exception
    return app


def _specs(at):
    return figures(at)


def _funnel(at) -> dict[str, int]:
    spec = next(s for s in _specs(at) if s["data"][0]["type"] == "funnel")
    return dict(zip(spec["data"][0]["customdata"], spec["data"][0]["x"], strict=True))


def _nms_title(at) -> str:
    return next(s["layout"]["title"]["text"] for s in _specs(at) if s["layout"]["title"]["text"].startswith("step "))


def _set(at, key, value):
    at.slider(key=key).set_value(value).run()
    assert not at.exception
    return at


def test_page_shows_its_figures_and_a_non_increasing_funnel(at):
    assert at.title[0].value == "RPN proposals"
    assert len(_specs(at)) >= 4  # objectness, funnel, proposals, NMS replay (+ recall with ground truth)
    counts = list(_funnel(at).values())
    assert all(a >= b for a, b in zip(counts, counts[1:], strict=False))


def test_raising_the_nms_threshold_never_lowers_the_proposals_kept(at):
    _set(at, "set:rpn.post_nms_top_n", 2000)
    before = None
    for thresh in (0.3, 0.5, 0.7, 0.9, 1.0):
        funnel = _funnel(_set(at, "set:rpn.nms_thresh", thresh))
        counts = list(funnel.values())
        assert all(a >= b for a, b in zip(counts, counts[1:], strict=False))
        if before is not None:
            assert funnel["nms"] >= before["nms"] and funnel["post_nms_top_n"] >= before["post_nms_top_n"]
        before = funnel
    assert before["nms"] == before["score_thresh"]  # IoU > 1 never happens: nothing suppressed
    _set(at, "set:rpn.nms_thresh", 0.7)


def test_lowering_post_nms_top_n_never_raises_the_final_count(at):
    before = None
    for top_n in (1000, 300, 100, 20, 1):
        funnel = _funnel(_set(at, "set:rpn.post_nms_top_n", top_n))
        assert funnel["post_nms_top_n"] == min(top_n, funnel["nms"])
        if before is not None:
            assert funnel["post_nms_top_n"] <= before
        before = funnel["post_nms_top_n"]
    _set(at, "set:rpn.post_nms_top_n", 300)


def test_post_nms_above_pre_nms_is_refused_with_a_message(at):
    _set(at, "set:rpn.pre_nms_top_n", 100)
    assert any("Not applied" in w.value for w in at.warning)
    assert _funnel(at)["pre_nms_top_n"] > 100  # the settings kept their old value
    assert at.slider(key="set:rpn.pre_nms_top_n").value > 100


def test_nms_replay_steps_forward_and_back(at):
    _set(at, "nms_m", 40)
    num = int(re.match(r"step 1 of (\d+)", _nms_title(at)).group(1))
    assert num >= 3
    for step in (num, 2, num // 2 + 1, 1):
        _set(at, "nms_step", step)
        assert _nms_title(at).startswith(f"step {step} of {num}:")
    at.button(key="nms_next").click().run()
    at.button(key="nms_next").click().run()
    assert not at.exception and _nms_title(at).startswith("step 3 of")
    at.button(key="nms_prev").click().run()
    assert not at.exception and _nms_title(at).startswith("step 2 of")
    _set(at, "nms_step", num)
    _set(at, "nms_m", 5)  # fewer candidates: the step is clamped to the new number of steps
    step, num = map(int, re.match(r"step (\d+) of (\d+):", _nms_title(at)).groups())
    assert step == num <= 5
