"""The figures' cache (app_pages._shared.FigureCache, show_figure's ``trace``/``stages``/``params``): a figure is
built again exactly when what it shows changed, and the cache holds its bounds."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_pages._shared import FigureCache
from tests.figures import figures

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_the_cache_is_bounded_by_entries_and_bytes():
    cache = FigureCache(max_entries=3, max_bytes=100)
    for i in range(5):
        cache.put(("k", i), "x" * 10)
    assert cache.get(("k", 0)) is None and cache.get(("k", 1)) is None and cache.get(("k", 4)) == "x" * 10
    cache.put(("big",), "y" * 75)  # the bytes bound (105 > 100): the oldest goes first
    assert cache.get(("big",)) == "y" * 75 and cache.get(("k", 2)) is None and cache.get(("k", 3)) == "x" * 10
    cache.put(("big",), "z" * 20)  # a new value for a key replaces it, and its bytes
    cache.put(("k", 5), "x" * 10)
    assert cache.get(("big",)) == "z" * 20 and cache.get(("k", 3)) == "x" * 10


@pytest.fixture(scope="module")
def detections():
    at = AppTest.from_file(APP, default_timeout=90).run()
    assert not at.exception
    return at.switch_page("app_pages/detections.py").run()


def _count_builds(monkeypatch) -> list:
    import frcnn.viz.detections as viz

    calls = []
    real = viz.detections_figure

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(viz, "detections_figure", counted)
    return calls


def test_a_figure_is_rebuilt_only_when_what_it_shows_changes(detections, monkeypatch):
    at = detections
    first = figures(at)[0]
    calls = _count_builds(monkeypatch)
    at.run()  # nothing changed: the figure's JSON comes from the cache
    assert figures(at)[0] == first and not calls
    at.slider(key="det_min_score").set_value(0.3).run()  # a display widget the figure shows: built again
    drawn_from_03 = figures(at)[0]
    assert drawn_from_03 != first and len(calls) == 1
    at.slider(key="det_min_score").set_value(0.5).run()  # back: the first figure, from the cache
    assert figures(at)[0] == first and len(calls) == 1
    at.slider(key="set:roi.score_thresh").set_value(0.5).run()  # a setting: the trace's keys change
    assert len(calls) == 2 and figures(at)[0] != first
    assert not at.exception


@pytest.mark.parametrize("text", ["a/b", "x\\u002fy", "data:image/jpeg;base64,ab/c", "\\\\/", "\\u002f/\\"])
def test_the_figure_json_keeps_every_string_with_slashes_unescaped(text):
    import json

    import plotly.graph_objects as go

    from app_pages._chart import figure_json

    out = figure_json(go.Figure(go.Scatter(x=[0], y=[0], name=text)), "slot")
    assert json.loads(out)["data"][0]["name"] == text and "\\u002f" not in out.replace("\\\\u002f", "")
