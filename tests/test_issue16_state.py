"""Issue 16, items 1, 2, 5, 7 and 13: ground truth belongs to its image, the link says an upload is not in it,
"Time per stage" keeps the real times of cached stages, display-only widgets survive a page switch, and the Start
page names the weights file without its server path."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from frcnn.models.registry import DEFAULT_CHECKPOINT
from frcnn.viz.common import KEPT, POSITIVE
from tests.figures import figures

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SCENE = "Synthetic scene 1"


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=120).run()


def _png(width: int = 96, height: int = 80) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _uploader(at: AppTest, label: str):
    return next(u for u in at.get("file_uploader") if u.label.startswith(label))


def _gt(at: AppTest) -> torch.Tensor | None:
    return at.session_state["context"].gt_boxes


def _sample_gt() -> torch.Tensor:
    from frcnn.data import load_sample
    from frcnn.models.registry import REGISTRY

    _, gt = load_sample(SCENE, class_names=REGISTRY["default"].class_names())
    return gt.boxes


# ---------------------------------------------------------------------------- 1: ground truth per image
def test_promoted_ground_truth_stays_with_its_image():
    at = _app()
    at.slider(key="promote_thresh").set_value(0.0).run()
    at.button(key="gt_promote").click().run()
    promoted = _gt(at)
    assert promoted is not None and len(promoted) > 0 and not at.exception
    _uploader(at, "Upload an image").set_value(("photo.png", _png(), "image/png")).run()
    assert not at.exception and at.session_state["context"].image_name == "photo.png"
    assert _gt(at) is None  # the scene's boxes are not carried over to the photo
    at.button(key="gt_clear").click().run()  # the photo's own (empty) ground truth
    _uploader(at, "Upload an image").set_value(None).run()
    assert at.session_state["context"].image_name == SCENE
    assert torch.equal(_gt(at), promoted)  # back on the scene: its promoted boxes, not the photo's cleared ones


def test_an_annotation_file_belongs_to_the_image_it_was_given_for():
    at = _app()
    own = _sample_gt()
    assert torch.equal(_gt(at), own)
    _uploader(at, "Upload an image").set_value(("photo.png", _png(), "image/png")).run()
    coco = {"images": [{"id": 1, "file_name": "photo.png", "width": 96, "height": 80}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 40]}],
            "categories": [{"id": 1, "name": "ellipse"}]}
    _uploader(at, "Annotation file").set_value(("photo.json", json.dumps(coco).encode(), "application/json")).run()
    assert not at.exception and _gt(at).tolist() == [[10.0, 10.0, 60.0, 50.0]]
    _uploader(at, "Upload an image").set_value(None).run()
    assert torch.equal(_gt(at), own)  # the scene is scored against its own boxes, not the photo's
    assert _uploader(at, "Annotation file").value is None  # the scene's own annotation uploader is empty
    _uploader(at, "Upload an image").set_value(("photo.png", _png(), "image/png")).run()
    assert _gt(at).tolist() == [[10.0, 10.0, 60.0, 50.0]]  # and the photo gets its own back


def test_the_ground_truth_store_keeps_the_last_images_only(monkeypatch):
    from app_pages import _ground_truth as ground_truth

    monkeypatch.setattr(ground_truth, "st", SimpleNamespace(session_state={}))
    for i in range(ground_truth.MAX_IMAGES + 1):
        ground_truth.put(f"sample:{i}", torch.tensor([[0.0, 0.0, i + 1.0, i + 1.0]]), torch.tensor([1]))
    assert ground_truth.get("sample:0") is None  # the oldest went
    assert ground_truth.get("sample:1").boxes.tolist() == [[0.0, 0.0, 2.0, 2.0]]
    assert ground_truth.upload_key(b"a") != ground_truth.upload_key(b"b") == ground_truth.upload_key(b"b")


# ----------------------------------------------------------------------------- 2: the link and an upload
def test_an_active_upload_says_the_link_does_not_hold_it():
    at = _app()
    note = "not this uploaded image"
    assert not any(note in c.value for c in at.sidebar.caption)
    _uploader(at, "Upload an image").set_value(("photo.png", _png(), "image/png")).run()
    assert any(note in c.value for c in at.sidebar.caption)
    assert at.query_params["sample"] == SCENE  # the link still names the sample: hence the note


# --------------------------------------------------------------------------------- 5: time per stage
def _times_spec(at: AppTest) -> dict:
    specs = figures(at)
    return next(s for s in specs if "ms" in str(s["layout"].get("title", {}).get("text", "")))


def test_time_per_stage_keeps_the_computed_times_after_a_rerun():
    at = _app()
    first = _times_spec(at)
    at.run()  # every stage from the cache now
    again = _times_spec(at)
    assert "every stage from the cache" in again["layout"]["title"]["text"]
    texts = again["data"][0]["text"]
    assert all(t.startswith("cached (took ") for t in texts), texts
    assert again["data"][0]["marker"]["color"] == [POSITIVE] * len(texts)
    if all(t.startswith("cached") for t in first["data"][0]["text"]):  # a test before traced this image
        return
    assert [t.split()[0] for t in first["data"][0]["text"]] == [t.split()[2] for t in texts]  # the same ms


def test_cached_stages_carry_the_time_they_took_and_the_legend_is_in_their_colours():
    from frcnn import StageCache, Tracer, load_model
    from frcnn.viz.overview import stage_times_figure

    tracer = Tracer(load_model("default", device="cpu"), StageCache())
    image = torch.zeros(3, 64, 80, dtype=torch.uint8)
    first, again = tracer.run(image), tracer.run(image)
    assert first.cached == () and set(again.cached) == set(again.timings_ms)
    assert again.timings_ms == first.timings_ms and any(again.timings_ms.values())
    legend = stage_times_figure(again).layout.annotations[0].text
    assert f"color:{POSITIVE}'>■ green: from the cache" in legend and f"color:{KEPT}'>■ blue" in legend


# ---------------------------------------------------------------------- 7: display-only widgets persist
def test_display_widgets_keep_their_values_across_page_switches():
    at = _app()
    at.switch_page("app_pages/backbone.py").run()
    at.slider(key="bb_opacity").set_value(0.3).run()
    at.toggle(key="bb_grid").set_value(False).run()
    at.switch_page("app_pages/overview.py").run()  # the Start page's buttons and uploads are not touched
    assert not at.exception, at.exception
    at.switch_page("app_pages/backbone.py").run()
    assert not at.exception, at.exception
    assert at.slider(key="bb_opacity").value == pytest.approx(0.3)
    assert at.toggle(key="bb_grid").value is False


# ------------------------------------------------------------------------- 13: no server path shown
def test_the_start_page_names_the_weights_file_not_its_server_path():
    at = _app()
    subtitle = next(c.value for c in at.caption if c.value.startswith("Model **default**"))
    assert "default.pt" in subtitle and "model card: docs/model" in subtitle
    assert str(DEFAULT_CHECKPOINT.parent) not in subtitle and "models/weights" not in subtitle

