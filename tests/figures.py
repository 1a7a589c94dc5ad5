"""How AppTests read the figures a page shows (app_pages._chart's component: the figure JSON the browser gets)."""

from __future__ import annotations

from app_pages._chart import charts, figure_of


def figures(at) -> list[dict]:
    """Every chart's figure in an AppTest run, in page order."""
    return [figure_of(e) for e in charts(at.get("bidi_component"))]
