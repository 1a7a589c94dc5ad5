"""Presentation mode without a browser (issue 18, item 1): "class score" box labels on the detection and proposal
figures, read back from the figure against the trace; the presentation styling of every figure (every font at
least the sizes a room reads, titles wrapped); the payload of labels; the pages' "Label boxes" toggle and layout
through AppTest. The browser measures the rest (tests/e2e/test_presentation.py)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from streamlit.testing.v1 import AppTest

from app_pages._chart import figure_json
from frcnn import Settings, Tracer, load_model
from frcnn.analysis.matching import match_detections
from frcnn.data.shapes import make_scene
from frcnn.viz.common import (
    LABEL_FONT_SIZE,
    PRESENTATION_LABEL_SIZE,
    add_box_labels,
    image_figure,
    short_legend,
    styled,
    text_colour,
    wrap_title,
)
from frcnn.viz.detections import detections_figure
from frcnn.viz.proposals import proposals_figure
from tests.figures import figures

APP = str(Path(__file__).resolve().parents[1] / "app.py")
LABEL = re.compile(r"^(.+) (\d\.\d\d)$")  # "ring 0.97"


@pytest.fixture(scope="module")
def scene():
    return make_scene(3, 0)


@pytest.fixture(scope="module")
def trace(scene):
    tracer = Tracer(load_model("default", "auto", "cpu"))  # the shipped weights: real detections of the shapes
    image = torch.from_numpy(scene.image).permute(2, 0, 1).contiguous()
    return tracer.run(image, Settings(), torch.as_tensor(scene.boxes), torch.as_tensor(scene.labels))


def _labels(fig, name: str | None = None) -> list:
    return [a for a in fig.layout.annotations if name is None or a.name == name]


def _read(annotations) -> list[tuple[str, float, float, float]]:
    """(class, score, x, y) of each label, parsed from its text."""
    out = []
    for a in annotations:
        m = LABEL.match(a.text)
        assert m, a.text
        out.append((m.group(1), float(m.group(2)), float(a.x), float(a.y)))
    return sorted(out)


@pytest.mark.parametrize("with_gt", [True, False])
def test_detection_labels_name_each_drawn_box_by_class_and_score(scene, trace, with_gt):
    d = trace.detections
    if not with_gt:  # no ground truth: the boxes coloured by class, labelled all the same
        trace = dataclasses.replace(trace, gt_boxes=torch.zeros(0, 4), gt_labels=torch.zeros(0, dtype=torch.int64))
    min_score = 0.3
    keep = d.scores >= min_score
    assert 0 < int(keep.sum()) < len(d.boxes)  # some drawn, some not: the labels follow the drawn ones
    fig = detections_figure(scene.image, trace, min_score=min_score, label_boxes=True)
    names = trace.class_names
    expected = sorted((names[int(c)], round(float(s), 2), float(b[0]), float(b[1]))
                      for b, c, s in zip(d.boxes[keep], d.labels[keep], d.scores[keep], strict=True))
    got = _read(_labels(fig, "box label"))
    assert [g[0] for g in got] == [e[0] for e in expected]
    np.testing.assert_allclose([g[1:] for g in got], [e[1:] for e in expected], atol=5e-3)
    for a in _labels(fig, "box label"):
        assert a.font.size >= LABEL_FONT_SIZE and a.bgcolor and a.font.color in ("#000000", "#ffffff")
        assert a.xref == "x" and a.yref == "y" and a.showarrow is False  # on the box, in the image's pixels
    if with_gt:  # a label has its box's colour: true positives green, false positives vermilion
        m = match_detections(d.boxes[keep], d.scores[keep], d.labels[keep], trace.gt_boxes, trace.gt_labels, 0.5)
        colours = {(round(float(b[0]), 3), round(float(b[1]), 3)): "#009E73" if t else "#D55E00"
                   for b, t in zip(d.boxes[keep], m.true_positive, strict=True)}
        for a in _labels(fig, "box label"):
            assert a.bgcolor == colours[(round(float(a.x), 3), round(float(a.y), 3))]
    plain = detections_figure(scene.image, trace, min_score=min_score)
    assert not _labels(plain, "box label")  # the toggle off: no labels


def test_proposal_labels_carry_the_objectness_of_each_drawn_proposal(scene, trace):
    top_n = 12
    fig = proposals_figure(scene.image, trace, top_n=top_n, label_boxes=True)
    p = trace.proposals
    got = _read(_labels(fig, "proposal label"))
    assert len(got) == top_n and {g[0] for g in got} == {"object"}
    expected = sorted(("object", round(float(s), 2), float(b[0]), float(b[1]))
                      for b, s in zip(p.boxes[:top_n], p.scores[:top_n], strict=True))
    np.testing.assert_allclose([g[1:] for g in got], [e[1:] for e in expected], atol=5e-3)
    assert not _labels(proposals_figure(scene.image, trace, top_n=top_n), "proposal label")


def test_three_hundred_labels_stay_far_under_the_payload_budget():
    image = np.zeros((600, 800, 3), dtype=np.uint8)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 700, (300, 2))
    boxes = np.concatenate([xy, xy + 50], axis=1)
    fig = add_box_labels(image_figure(image), boxes, [f"parking meter {i / 300:.2f}" for i in range(300)],
                         "#0072B2")
    size = len(figure_json(styled(fig, True), "k"))
    assert len(fig.layout.annotations) == 300 and size < 200_000  # the figure budget is 1 MB


def test_label_text_reads_on_its_background():
    """WCAG contrast: the text colour chosen is the one with the higher contrast ratio on the background."""
    def luminance(hex_colour: str) -> float:
        c = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
        c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return float(c @ [0.2126, 0.7152, 0.0722])

    for bg in ("#009E73", "#D55E00", "#0072B2", "#F0E442", "#000000", "#ffffff", "#CC79A7", "#56B4E9"):
        lb = luminance(bg)
        on_black, on_white = (lb + 0.05) / 0.05, 1.05 / (lb + 0.05)
        assert text_colour(bg) == ("#000000" if on_black >= on_white else "#ffffff"), bg


def test_wrap_title_breaks_at_separators_and_keeps_every_word():
    title = "all 12 detections (score ≥ 0.05): precision 0.92 · recall 0.88 at IoU 0.5 — random weights"
    wrapped = wrap_title(title, 40)
    lines = wrapped.split("<br>")
    assert len(lines) > 1 and all(len(line) <= 40 or " " not in line for line in lines[:-1])
    assert " ".join(lines).split() == title.split()
    assert wrap_title("short", 40) == "short"


def _font_sizes(layout: dict, path: str = "") -> list[tuple[str, float]]:
    """Every font size in a figure's layout JSON, with where it is (not the template's defaults: the figure's own
    sizes, checked here to be set, override them)."""
    out = []
    if isinstance(layout, dict):
        for k, v in layout.items():
            if k == "template":
                continue
            if k == "font" and isinstance(v, dict) and "size" in v:
                out.append((path, v["size"]))
            out += _font_sizes(v, f"{path}.{k}")
    elif isinstance(layout, list):
        for i, v in enumerate(layout):
            out += _font_sizes(v, f"{path}[{i}]")
    return out


def test_presentation_styling_sets_every_font_a_room_reads(scene, trace):
    figs = [detections_figure(scene.image, trace, label_boxes=True, title="a title " * 12),
            proposals_figure(scene.image, trace, label_boxes=True)]
    for fig in figs:
        data = json.loads(figure_json(styled(fig, True), "k"))
        sizes = _font_sizes(data["layout"])
        assert sizes and min(s for _, s in sizes) >= 18, sorted(sizes, key=lambda x: x[1])[:3]
        for axis in ("xaxis", "yaxis"):
            assert data["layout"][axis]["tickfont"]["size"] >= 18
        assert data["layout"]["hoverlabel"]["font"]["size"] >= 18
        assert all(a["font"]["size"] >= PRESENTATION_LABEL_SIZE for a in data["layout"]["annotations"])
        assert data["layout"]["title"]["automargin"] is True
    assert "<br>" in figs[0].layout.title.text  # the long title wrapped


def _presenting(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.toggle(key="presentation").set_value(True).run()
    at.switch_page(f"app_pages/{page}").run()
    assert not at.exception
    return at


def test_detections_page_in_presentation_mode_labels_boxes_and_folds_its_controls():
    at = _presenting("detections.py")
    assert at.toggle(key="det_labels:presentation").value is True  # on by default when presenting
    assert "Controls" in [e.label for e in at.expander]
    det = next(f for f in figures(at) if any(a.get("name") == "box label" for a in f["layout"].get("annotations", [])))
    assert det["layout"].get("height") is None  # sized to the screen by the page's CSS
    at.toggle(key="det_labels:presentation").set_value(False).run()
    assert not any(a.get("name") == "box label" for f in figures(at) for a in f["layout"].get("annotations", []))


def test_without_presentation_mode_the_labels_are_off_and_controls_stay_a_row():
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("app_pages/detections.py").run()
    assert not at.exception
    assert at.toggle(key="det_labels:plain").value is False
    assert "Controls" not in [e.label for e in at.expander]
    assert not any(a.get("name") == "box label" for f in figures(at) for a in f["layout"].get("annotations", []))


def test_presentation_legends_drop_their_asides_in_words_and_keep_counts():
    assert short_legend("negative, not sampled: 181,063 (cells shaded by count)") == "negative, not sampled: 181,063"
    assert short_legend("ignored (IoU below bg_iou_thresh_lo or between thresholds) (0)") == "ignored (0)"
    assert short_legend("anchor centres (6,336; 1 in 16 drawn): click one") == "anchor centres: click one"
    for kept in ("size 16 (72)", "ground truth (5)", "proposals (IoU 0.5)", "scoring under 0.5 (19)"):
        assert short_legend(kept) == kept
    fig = go.Figure(go.Scatter(x=[0], y=[0], name="negative in the minibatch: 203 (a dot per cell)"))
    fig.add_shape(type="path", path="M0,0L1,1", name="boxes (drawn as outlines)", showlegend=True)
    styled(fig, presentation=True)
    assert fig.data[0].name == "negative in the minibatch: 203" and fig.layout.shapes[0].name == "boxes"
    plain = styled(go.Figure(go.Scatter(x=[0], y=[0], name="a (cells shaded by count)")))
    assert plain.data[0].name == "a (cells shaded by count)"  # only a room's figures are shortened
