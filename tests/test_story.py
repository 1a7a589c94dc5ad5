"""The model's story on screen (app_pages/_story.py): the default model on an image that is not one of its synthetic
scenes shows a banner (its five shapes, the way to a COCO model), and with random weights every figure's title says
so."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from app_pages import _story as story
from app_pages._ground_truth import sample_key, upload_key
from frcnn.data.samples import list_samples
from frcnn.data.shapes import CLASS_NAMES
from frcnn.models.registry import OFFLINE_ENV
from frcnn.models.weights_folder import published_name
from tests.figures import figures

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["overview.py", "backbone.py", "anchors.py", "anchor_targets.py", "proposals.py", "roi.py", "detections.py",
         "losses.py"]
SYNTHETIC = [s.name for s in list_samples() if s.kind == "synthetic"]
PHOTOS = [s.name for s in list_samples() if s.kind == "photo"]


def _banners(at) -> list[str]:
    return [w.value for w in at.warning if "synthetic shapes" in w.value]


def _app(**query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


# ------------------------------------------------------------------------------------------------ banner
def test_banner_text_says_when_and_what(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no COCO file in the cache: both ways are given
    assert story.banner_text("default", CLASS_NAMES, sample_key(SYNTHETIC[0])) is None
    assert story.banner_text("mobilenet_v3_fpn", ("__background__", "person"), sample_key(PHOTOS[0])) is None
    assert story.banner_text("default", ("__background__", "cat", "dog"), sample_key(PHOTOS[0])) is None  # retrained
    for key in (sample_key(PHOTOS[0]), upload_key(b"any uploaded bytes"), None):  # a photo, an upload / camera
        text = story.banner_text("default", CLASS_NAMES, key)
        assert text is not None and f"only {len(CLASS_NAMES) - 1} synthetic shapes" in text
        assert "ellipse, rectangle, triangle, cross and ring" in text  # from the class names, in order
        for model in ("resnet50_fpn_v2", "mobilenet_v3_fpn"):
            assert f"**{model}**" in text and published_name(model) in text  # online: pick it; offline: its file
        assert "FRCNN_WEIGHTS_DIR" in text and "hub/checkpoints" in text
    checkpoints = tmp_path / "hub" / "checkpoints"  # torch.hub.get_dir() is $TORCH_HOME/hub
    checkpoints.mkdir(parents=True)
    (checkpoints / published_name("mobilenet_v3_fpn")).write_bytes(b"")
    text = story.banner_text("default", CLASS_NAMES, sample_key(PHOTOS[0]))
    assert "pick **mobilenet_v3_fpn** under *Model* (its COCO weights are on this server)" in text
    assert "**resnet50_fpn_v2**" not in text


def test_no_banner_on_a_synthetic_scene():
    at = _app(sample=SYNTHETIC[0])
    assert not at.exception
    assert at.session_state["context"].tracer.detector.name == "default"
    assert _banners(at) == []


def test_banner_on_a_photo_on_every_page():
    at = _app(sample="Coffee (photo)")
    assert not at.exception
    (text,) = _banners(at)
    assert "ellipse, rectangle, triangle, cross and ring" in text and "resnet50_fpn_v2" in text
    at.switch_page("app_pages/detections.py").run()
    assert not at.exception and len(_banners(at)) == 1  # drawn by app.py above whichever page
    at.query_params["sample"] = SYNTHETIC[1]
    at.selectbox(key="sample").set_value(SYNTHETIC[1]).run()
    assert not at.exception and _banners(at) == []


def test_no_banner_for_a_coco_model_on_a_photo(monkeypatch, tmp_path):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: random weights, never a download
    at = _app(model="mobilenet_v3_fpn", sample="Cat (photo)", **{"input.min_size": "320"})
    assert not at.exception
    assert _banners(at) == []


# ---------------------------------------------------------------------------------------- random weights
def test_mark_weights_on_titles():
    titled = story.mark_weights(go.Figure(layout=dict(title_text="Anchors")), "random")
    assert titled.layout.title.text == "Anchors — random weights"
    assert story.mark_weights(titled, "random").layout.title.text == "Anchors — random weights"  # once
    untitled = story.mark_weights(go.Figure(layout=dict(margin=dict(t=10))), "random")
    assert untitled.layout.title.text == "Random weights" and untitled.layout.margin.t == story.TITLE_MARGIN
    trained = story.mark_weights(go.Figure(layout=dict(title_text="Anchors")), "/models/default.pt")
    assert trained.layout.title.text == "Anchors"
    heads = story.mark_weights(go.Figure(), "backbone VGG16_Weights.IMAGENET1K_V1")  # vgg16's ImageNet backbone
    assert heads.layout.title.text == "Random RPN and head"


def _titles(at) -> list[str]:
    return [(f["layout"].get("title") or {}).get("text") or "" for f in figures(at)]


@pytest.fixture(scope="module")
def offline_coco():
    """mobilenet_v3_fpn offline with an empty torch cache: the registry falls back to random weights."""
    import os
    import tempfile

    saved = {k: os.environ.get(k) for k in (OFFLINE_ENV, "TORCH_HOME")}
    with tempfile.TemporaryDirectory() as home:
        os.environ[OFFLINE_ENV], os.environ["TORCH_HOME"] = "1", home
        at = AppTest.from_file(APP, default_timeout=180)
        at.query_params.update({"model": "mobilenet_v3_fpn", "sample": "Cat (photo)", "input.min_size": "320"})
        yield at.run()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.mark.parametrize("page", PAGES)
def test_every_figure_says_random_weights(offline_coco, page):
    at = offline_coco.switch_page(f"app_pages/{page}").run()
    assert not at.exception, at.exception
    detector = at.session_state["context"].tracer.detector
    assert detector.weights == "random", "this test needs the COCO weights missing (offline, empty cache)"
    titles = _titles(at)
    assert titles and all(t.endswith(story.RANDOM_SUFFIX) or t == "Random weights" for t in titles), titles


def test_trained_weights_say_nothing_and_the_figure_cache_tells_them_apart():
    """The same page, image and slot with the shipped weights and then random ones: the random figures are not the
    cached trained ones (the cache key holds the detector's key, which holds where the weights came from)."""
    at = _app(sample=SYNTHETIC[0])
    trained = at.session_state["context"].tracer.detector
    assert trained.weights != "random" and "random" not in trained.key
    assert not any(story.RANDOM_SUFFIX in t or t == "Random weights" for t in _titles(at))
    # the Training page's "trained in this session" list is how the sidebar picks other weights for a model
    at.session_state["trained_models"] = {"random init": ("default", "random")}
    at.run()
    at.selectbox(key="trained_weights").set_value("random init").run()
    assert not at.exception
    detector = at.session_state["context"].tracer.detector
    assert detector.weights == "random" and detector.key != trained.key
    titles = _titles(at)
    assert titles and all(t.endswith(story.RANDOM_SUFFIX) or t == "Random weights" for t in titles), titles
