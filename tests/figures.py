"""How AppTests read the figures a page shows (app_pages._chart's component: the figure JSON the browser gets)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np

from app_pages._chart import charts, figure_of


def figures(at) -> list[dict]:
    """Every chart's figure in an AppTest run, in page order."""
    return [figure_of(e) for e in charts(at.get("bidi_component"))]


_BOX = re.compile(r"M([^,HVLZM]+),([^,HVLZM]+)H([^,HVLZM]+)V([^,HVLZM]+)H([^,HVLZM]+)Z")


def path_boxes(path: str) -> np.ndarray:
    """(N, 4) boxes back from an outline path "M x1,y1H x2V y2H x1Z..." (frcnn.viz.common.box_path)."""
    found = _BOX.findall(path or "")
    assert "".join(f"M{a},{b}H{c}V{d}H{e}Z" for a, b, c, d, e in found) == (path or ""), "not a path of boxes"
    assert all(a == e for a, _, _, _, e in found), "an outline that does not close"
    return np.array([[float(v) for v in f[:4]] for f in found], dtype=float).reshape(-1, 4)


def box_layers(fig) -> list[SimpleNamespace]:
    """The box layers of a figure (a go.Figure or its JSON as a dict): its path shapes (add_boxes draws a layer as
    one), each with name, legendgroup, showlegend, visible, color, width, dash, opacity, boxes (N, 4), mode "lines"
    and x, y (the closed outlines, NaN between boxes, for the tests that read outlines)."""
    layout = fig["layout"] if isinstance(fig, dict) else fig.layout.to_plotly_json()
    out = []
    for s in layout.get("shapes", []):
        path = s.get("path") or ""
        if s.get("type") != "path" or (path and not _BOX.match(path)):  # not a layer of boxes (a grid's lines)
            continue
        b = path_boxes(path)
        gap = np.full(len(b), np.nan)
        x = np.stack([b[:, 0], b[:, 2], b[:, 2], b[:, 0], b[:, 0], gap], 1).reshape(-1)
        y = np.stack([b[:, 1], b[:, 1], b[:, 3], b[:, 3], b[:, 1], gap], 1).reshape(-1)
        line = {"color": None, "width": None, "dash": None, **s.get("line", {})}
        out.append(SimpleNamespace(name=s.get("name"), legendgroup=s.get("legendgroup"),
                                   showlegend=s.get("showlegend", True), visible=s.get("visible", True),
                                   color=line.get("color"), width=line.get("width"), dash=line.get("dash"),
                                   line=SimpleNamespace(**line), opacity=s.get("opacity", 1), boxes=b, mode="lines",
                                   type="shape", x=x, y=y))
    return out
