"""Every figure the pages draw stays under 1 MB of JSON (issue 17, item 2: a figure carries what a person can see,
and the whole figure is sent again on every redraw): built as the pages build them, from a real trace of the
default model on the app's default sample at the widgets' defaults, and with the dense layers asked for (Anchor
targets' "Draw every ... as a box" toggles, every anchor of every location on Anchors)."""

from __future__ import annotations

import json

import pytest

from benchmarks.figure_sizes import BUDGET, default_sample, figure_builders
from frcnn import Tracer, load_model
from tests.figures import box_layers

PAGES = ("Start", "Backbone", "Anchors", "Anchor targets", "RPN proposals", "RoI", "Detections", "Losses",
         "Compare")


@pytest.fixture(scope="module")
def figures():
    tracer = Tracer(load_model("default", "auto", "cpu"))
    return {name: build() for name, build in figure_builders(tracer).items()}


def test_the_default_sample_is_the_apps_first_synthetic_scene():
    assert default_sample() == "Synthetic scene 1"


def test_every_page_and_toggle_is_measured(figures):
    assert {name.split(": ")[0] for name in figures} == set(PAGES)
    for name in ("Anchor targets: targets", "Anchor targets: negatives as boxes", "Anchor targets: ignored as boxes",
                 "Anchor targets: both as boxes", "Anchors: every location, all anchors", "RoI: roi_pool bins",
                 "RoI: roi_align output", "Losses: sweep", "Compare: sweep"):
        assert name in figures


def test_every_figure_is_under_a_megabyte(figures):
    sizes = {name: len(fig.to_json()) for name, fig in figures.items()}
    over = {name: size for name, size in sizes.items() if size >= BUDGET}
    assert not over, f"over {BUDGET:,} bytes of JSON: {over}"
    assert BUDGET == 1_000_000


def test_the_dense_layers_are_bounded_not_dropped(figures):
    """The toggles draw boxes (a stated share of them), over rasters that still count every anchor."""
    both = json.loads(figures["Anchor targets: both as boxes"].to_json())
    names = [t.get("name", "") for t in both["data"]] + [b.name for b in box_layers(both)]
    assert any(n.startswith("negative, not sampled (") and " drawn)" in n for n in names)
    assert any(n.startswith("ignored (") for n in names)
    assert sum(t["type"] == "heatmap" for t in both["data"]) == 2
    assert "boxes drawn:" in both["layout"]["title"]["text"]
    plain = json.loads(figures["Anchor targets: targets"].to_json())
    assert not any(b.name.startswith(("negative, not sampled", "ignored")) for b in box_layers(plain))
    every = figures["Anchors: every location, all anchors"]
    assert "thinned to every" in every.layout.title.text
