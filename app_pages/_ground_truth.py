"""The session's ground truth, one entry per image, keyed by the image's content.

What the user gives as ground truth (an annotation file, boxes drawn or edited on Start, promoted detections, a
cleared table) belongs to the image it was given for: it is stored under that image's key, so another image
never gets it and coming back to an image brings its own back. The keys are :mod:`frcnn.data.picker`'s (a
sample's is its name, an upload's the sha1 of its bytes). At most :data:`MAX_IMAGES` images' ground truth is kept
per session, the least recently shown out. Boxes are (x1, y1, x2, y2) floats in the image's pixels.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import streamlit as st
import torch
from torch import Tensor

from frcnn.data.picker import sample_key, upload_key

__all__ = ["ImageTruth", "adopt_seeded", "get", "put", "put_current", "sample_key", "upload_key"]

STORE = "gt_by_image"  # session key: OrderedDict[image key, ImageTruth]
CURRENT = "image_key"  # session key: the key of the image shown now
MAX_IMAGES = 16  # images whose ground truth a session keeps


@dataclass(frozen=True)
class ImageTruth:
    """The user's ground truth of one image (it replaces the sample's own); no boxes: none at all."""

    boxes: Tensor  # (G, 4)
    labels: Tensor  # (G,) model class indices
    report: tuple[str, ...] = ()  # what the annotation loader fixed, shown under the uploader
    annotation: str = ""  # sha1 of the annotation file they came from ("" when drawn, edited or promoted)


def _store() -> OrderedDict:
    return st.session_state.setdefault(STORE, OrderedDict())


def get(image_key: str) -> ImageTruth | None:
    store = _store()
    entry = store.get(image_key)
    if entry is not None:
        store.move_to_end(image_key)
    return entry


def put(image_key: str, boxes: Tensor, labels: Tensor, report: tuple[str, ...] = (), annotation: str = "") -> None:
    """Store ``boxes`` (G, 4) and ``labels`` (G,) as the ground truth of ``image_key``."""
    store = _store()
    store[image_key] = ImageTruth(boxes.detach().cpu().to(torch.float32).reshape(-1, 4),
                                  labels.detach().cpu().to(torch.int64).reshape(-1), tuple(report), annotation)
    store.move_to_end(image_key)
    while len(store) > MAX_IMAGES:
        store.popitem(last=False)


def put_current(boxes: Tensor, labels: Tensor) -> None:
    """The ground truth of the image shown now (drawn, edited, promoted or cleared on Start)."""
    put(st.session_state[CURRENT], boxes, labels)


def adopt_seeded() -> None:
    """A session seeded the old way (``edited_gt`` and ``gt_source=("sample", name)`` set before the first run, as
    some page tests do): its boxes become that sample's entry."""
    edited, source = st.session_state.pop("edited_gt", None), st.session_state.pop("gt_source", None)
    if edited is not None and isinstance(source, tuple) and len(source) == 2 and source[0] == "sample":
        put(sample_key(source[1]), *edited)
