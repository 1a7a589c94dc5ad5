"""The image picker's data logic (the app's sidebar keeps only the widgets): which image is shown, under which key
its ground truth is kept, whose ground truth it gets, and an annotation file read for it within the work budget.

An image's key is what its ground truth is stored under: a sample's is its name (its pixels are fixed by the
name), an upload's (or a camera picture's) the sha1 of its bytes. The user's ground truth of an image (an
annotation file, boxes drawn, edited or cleared) replaces the sample's own; cleared to nothing is no ground truth.

Names: G the number of ground-truth boxes; boxes are ``Tensor[G, 4]`` float32 (x1, y1, x2, y2) in the image's
pixels, labels ``Tensor[G]`` int64 model class indices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from frcnn import budget
from frcnn.data.annotations import GroundTruth, clean_boxes, load_annotations
from frcnn.data.images import LoadedImage
from frcnn.data.samples import list_samples
from frcnn.errors import FrcnnError
from frcnn.settings import Settings

IMAGE_UPLOAD_TYPES = ("png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff")  # what the uploader offers
ANNOTATION_UPLOAD_TYPES = ("json", "xml", "txt")  # COCO JSON, Pascal VOC XML, YOLO txt


def digest(data: bytes) -> str:
    """The sha1 of a file's bytes, in hex: an upload is read again only when this changes."""
    return hashlib.sha1(data).hexdigest()


def sample_key(name: str) -> str:
    return f"sample:{name}"


def upload_key(data: bytes) -> str:
    return f"sha1:{digest(data)}"


def sample_names() -> list[str]:
    """The samples in the picker's order: the synthetic scenes first (the default model knows their shapes)."""
    return [s.name for s in sorted(list_samples(), key=lambda s: s.kind != "synthetic")]


@dataclass(frozen=True)
class PickedImage:
    """The image shown: its pixels, its name, the key its ground truth is kept under, and its own ground truth
    (a sample's; None for an upload)."""

    tensor: Tensor  # (3, H, W) uint8
    name: str
    key: str
    sample_truth: GroundTruth | None
    notes: tuple[str, ...] = ()  # what the loader converted (16-bit, CMYK, alpha, EXIF rotation, first frame ...)
    own: bool = False  # an upload or a camera picture, not a sample


def pick_image(own: LoadedImage | None, own_key: str, sample: str,
               load: Callable[[str], tuple[LoadedImage, GroundTruth]]) -> PickedImage:
    """The user's own image when there is one (``own`` under ``own_key``), else the sample called ``sample``,
    read with ``load`` (only then)."""
    if own is not None:
        return PickedImage(own.tensor, own.name, own_key, None, tuple(own.notes), own=True)
    loaded, truth = load(sample)
    return PickedImage(loaded.tensor, sample, sample_key(sample), truth)


def ground_truth_of(picked: PickedImage, user: tuple[Tensor, Tensor] | None) -> tuple[Tensor | None, Tensor | None]:
    """The boxes and labels the pages trace with: the user's ``(boxes, labels)`` of this image if any (none left
    after a clear: no ground truth), else the sample's own; ``(None, None)`` when there are no boxes."""
    if user is not None:
        boxes, labels = user
    elif picked.sample_truth is not None:
        boxes, labels = picked.sample_truth.boxes, picked.sample_truth.labels
    else:
        return None, None
    return (boxes, labels) if len(boxes) else (None, None)


def clean_user_truth(boxes: Tensor, labels: Tensor, image_size: tuple[int, int]) -> tuple[Tensor, Tensor, list[str]]:
    """Boxes a user drew or typed (``boxes`` ``Tensor[G, 4]``, ``labels`` ``Tensor[G]``; ``image_size`` (width,
    height)) by the annotation files' own rules (:mod:`frcnn.data.annotations`): non-finite and degenerate boxes
    dropped, the rest clipped to the image. Returns the boxes kept (float32), their labels and the report lines
    ("1 box clipped to the image")."""
    clean, keep, report = clean_boxes(boxes.detach().cpu().double().reshape(-1, 4).numpy(), image_size)
    return torch.from_numpy(clean).float(), labels.reshape(-1)[torch.from_numpy(keep)], report


MIN_DRAWN_AREA = 1.0  # px²: a selection this small is a click, not a box


def drawn_truth(corners: Sequence[float], label: int, image_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The box a user drew (x1, y1, x2, y2 in the image's pixels) as ground truth of class ``label``, by the
    annotation files' rules (:func:`clean_user_truth`); no box (``Tensor[0, 4]``) when what is left of it inside
    the image is a click (at most :data:`MIN_DRAWN_AREA`)."""
    boxes, labels, _ = clean_user_truth(torch.tensor([list(corners)]), torch.tensor([label]), image_size)
    big = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > MIN_DRAWN_AREA  # (G,)
    return boxes[big], labels[big]


def read_ground_truth(data: bytes, file_name: str, image: Tensor, image_name: str, class_names: Sequence[str],
                      facts: budget.ModelFacts, settings: Settings) -> GroundTruth:
    """An annotation file of ``image`` (any format :func:`~frcnn.data.load_annotations` reads), refused with a
    :class:`FrcnnError` when its boxes would take the work budget over its cap with ``settings`` (anchors x boxes
    IoUs), saying how many boxes would fit."""
    parsed = load_annotations(data, (image.shape[-1], image.shape[-2]), image_name=image_name,
                              class_names=class_names, name=file_name)
    size = (int(image.shape[-2]), int(image.shape[-1]))
    if not budget.fits(facts, settings, size, len(parsed.boxes)):
        most = budget.max_boxes(facts, settings, size)
        raise FrcnnError(f"{file_name}: {len(parsed.boxes):,} boxes are over the work budget with these settings "
                         f"(at most {most:,} on this image: anchors x boxes IoUs are capped)")
    return parsed
