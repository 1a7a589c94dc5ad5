"""The Compare page through AppTest: A against B on the default sample, what differs highlighted, a bad change
refused in one line, and a sweep whose recall never grows with the score threshold."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from app_pages._shared import plain  # user text is shown escaped
from tests.figures import figures

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _table(at: AppTest, column: str):
    """The first dataframe on the page with this column (dataframes have no key to find them by)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    return at.switch_page("app_pages/compare.py").run()


def test_two_settings_side_by_side():
    at = _page()
    assert not at.exception, at.exception
    assert len(figures(at)) == 2
    diff = _table(at, "setting")
    assert set(diff["setting"]) == {"rpn.nms_thresh", "roi.score_thresh"}
    counts = _table(at, "B - A")
    assert (counts["B - A"] == counts["B"] - counts["A"]).all()
    a, b = counts.loc["proposals", "A"], counts.loc["proposals", "B"]
    assert b <= a  # B's RPN NMS IoU 0.5 is below A's 0.7: never more proposals survive
    at.text_area(key="compare_b").set_value("rpn.nms_thresh=7").run()
    assert not at.exception and plain("rpn.nms_thresh") in at.error[0].value
    at.text_area(key="compare_b").set_value("no equals sign").run()
    assert not at.exception and plain("expected KEY=VALUE") in at.error[0].value


def test_a_sweep_over_the_image():
    at = _page()
    at.selectbox(key="sweep_kind").select("detections vs score threshold").run()
    at.button(key="sweep_run").click().run()
    assert not at.exception, at.exception
    table = _table(at, "roi.score_thresh")
    recall = list(table["recall"])
    assert len(recall) == 8 and recall == sorted(recall, reverse=True)
    assert len(figures(at)) == 3
