"""The model's story on screen: what the model knows, said where a visitor would otherwise learn it wrong.

- The ``default`` model was trained on the built-in synthetic scenes only: on any other image (a photo sample, an
  upload, the camera) it finds its five shapes in everything ("ring 0.9999" on a coffee cup). A banner above the
  page says so, lists the shapes from the model's class names, and gives the way to a COCO model: online, pick
  it in the sidebar (its weights download on first use); offline, the server's operator puts torchvision's file
  in torchvision's cache or in ``$FRCNN_WEIGHTS_DIR`` (:mod:`frcnn.models.weights_folder`), as the registry's
  note on missing weights says.
- A model running with random weights (a COCO model offline with no file, ``weights="random"``) draws confident
  random boxes: every figure's title says so (:data:`RANDOM_SUFFIX`; a figure without a title gets one), added in
  ``show_figure`` by :func:`mark_weights`. The figure cache keys on the detector's key, which holds where its
  weights came from ("random" for random weights), so a marked figure never serves a trained model or back.

app.py calls :func:`show_banner` once a run, after the page's Context is stored; this module never imports
``app_pages._shared`` (which imports it).
"""

from __future__ import annotations

import os
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st
import torch

from app_pages import _ground_truth as ground_truth
from frcnn.data.samples import list_samples
from frcnn.data.shapes import CLASS_NAMES as SHAPE_CLASSES
from frcnn.models.registry import OFFLINE_ENV, REGISTRY
from frcnn.models.weights_folder import WEIGHTS_DIR_ENV, published_name

RANDOM_SUFFIX = " — random weights"  # every figure's title, when the whole detector is random
HEADS_SUFFIX = " — random RPN and head"  # vgg16 with only its ImageNet backbone: the RPN and box head are random
COCO_MODELS = tuple(name for name, spec in REGISTRY.items() if spec.coco_weights is not None)
TITLE_MARGIN = 40  # px above the plot a title added to an untitled figure needs


def weights_suffix(weights: str) -> str:
    """The title suffix for a detector whose weights came from ``weights`` (:attr:`frcnn.Detector.weights`): "" for
    trained weights."""
    if weights == "random":
        return RANDOM_SUFFIX
    if weights.startswith("backbone "):  # the registry's "backbone <ImageNet weights>": box predictor and RPN random
        return HEADS_SUFFIX
    return ""


def mark_weights(figure: go.Figure, weights: str) -> go.Figure:
    """Say in ``figure``'s title that its model runs with random weights (in place; also returned). A figure without
    a title gets the words as its title, with room above the plot for them; a title already marked is left."""
    suffix = weights_suffix(weights)
    if not suffix:
        return figure
    title = figure.layout.title.text
    if title:
        if not title.endswith(suffix):
            figure.update_layout(title_text=title + suffix)
        return figure
    words = suffix.removeprefix(" — ")
    figure.update_layout(title_text=words[0].upper() + words[1:])
    top = figure.layout.margin.t
    if top is not None and top < TITLE_MARGIN:
        figure.update_layout(margin_t=TITLE_MARGIN)
    return figure


def is_synthetic_scene(image_key: str | None) -> bool:
    """Whether the image shown (its ground-truth key, :mod:`app_pages._ground_truth`) is a synthetic sample: an
    upload or a camera photo is keyed by its content, a sample by its name."""
    return image_key in {ground_truth.sample_key(s.name) for s in list_samples() if s.kind == "synthetic"}


def knows_only_shapes(model_name: str, class_names: tuple[str, ...]) -> bool:
    """The ``default`` model with the synthetic scenes' classes (a checkpoint trained on other classes is not)."""
    return model_name == "default" and tuple(class_names) == tuple(SHAPE_CLASSES)


def _coco_way() -> str:
    """How to get a COCO model, online and offline, with torchvision's file names (never a server path: the cache's
    default place)."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    cached = [m for m in COCO_MODELS if (hub / str(published_name(m))).is_file()]
    models = " or ".join(f"**{m}**" for m in COCO_MODELS)
    files = " or ".join(f"`{published_name(m)}`" for m in COCO_MODELS)
    if cached:
        online = f"pick {' or '.join(f'**{m}**' for m in cached)} under *Model* (its COCO weights are on this server)"
    else:
        online = f"pick {models} under *Model* (online, COCO weights download on first use)"
    offline = "this server is offline: " if os.environ.get(OFFLINE_ENV) == "1" else "offline, "
    return (f"For real objects {online}; {offline}put {files} in `~/.cache/torch/hub/checkpoints/` or "
            f"`${WEIGHTS_DIR_ENV}` on the server and pick it under *Weights on the server*.")


def banner_text(model_name: str, class_names: tuple[str, ...], image_key: str | None) -> str | None:
    """The banner for this model on this image, or None when it needs none (another model, a synthetic scene)."""
    if not knows_only_shapes(model_name, class_names) or is_synthetic_scene(image_key):
        return None
    shapes = list(class_names[1:])
    listed = ", ".join(shapes[:-1]) + f" and {shapes[-1]}" if len(shapes) > 1 else shapes[0]
    return (f"The **default** model knows only {len(shapes)} synthetic shapes ({listed}): on this image it finds "
            f"them in everything, and its boxes say nothing about the image's objects. {_coco_way()}")


def show_banner() -> None:
    """The banner above the page, when :func:`banner_text` has one for the session's model and image."""
    ctx = st.session_state.get("context")
    if ctx is None:
        return
    text = banner_text(ctx.tracer.detector.name, ctx.class_names, st.session_state.get(ground_truth.CURRENT))
    if text:
        st.warning(text, icon=":material/info:")
