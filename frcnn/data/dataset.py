"""Datasets for training and evaluation: a COCO-format folder, or synthetic scenes made on the fly.

Each item is ``(image, boxes, labels)``: image (3, H, W) uint8 RGB, boxes (G, 4) float32
(x1, y1, x2, y2) in its pixels, labels (G,) int64 indices into ``class_names`` (0 is background).

``open_dataset(spec)`` takes a folder (``images/`` + ``annotations.json``, as ``python -m frcnn data shapes``
writes) or ``shapes:N:SEED`` (N synthetic scenes of seed SEED, drawn when asked for, nothing on disk).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.ops import box_convert, clip_boxes_to_image, remove_small_boxes

from frcnn.data.images import load_image
from frcnn.data.shapes import CLASS_NAMES, SceneConfig, make_scene
from frcnn.errors import FrcnnError

Item = tuple[Tensor, Tensor, Tensor]


class CocoFolder(Dataset):
    """A folder with ``annotations.json`` (COCO) and its images (in ``images/`` or beside the json)."""

    def __init__(self, root: str | Path) -> None:
        from pycocotools.coco import COCO

        self.root = Path(root)
        ann = self.root / "annotations.json"
        if not ann.is_file():
            raise FrcnnError(f"{self.root}: no annotations.json in it (a COCO folder: images/ + annotations.json)")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
                self.coco = COCO(str(ann))
        except (json.JSONDecodeError, KeyError, TypeError, AssertionError, UnicodeDecodeError) as exc:
            raise FrcnnError(f"{ann}: not a readable COCO file ({type(exc).__name__}: {exc})") from None
        self.image_dir = self.root / "images" if (self.root / "images").is_dir() else self.root
        self.ids = sorted(self.coco.getImgIds())
        if not self.ids:
            raise FrcnnError(f"{ann}: no images listed")
        cats = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda c: c["id"])
        self.class_names = ("__background__",) + tuple(str(c["name"]) for c in cats)
        self._label_of = {c["id"]: i + 1 for i, c in enumerate(cats)}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Item:
        info = self.coco.loadImgs(self.ids[index])[0]
        image = load_image(self.image_dir / info["file_name"]).tensor
        anns = [a for a in self.coco.loadAnns(self.coco.getAnnIds(imgIds=info["id"])) if not a.get("iscrowd", 0)]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([self._label_of[a["category_id"]] for a in anns], dtype=torch.int64)
        boxes = clip_boxes_to_image(box_convert(boxes, "xywh", "xyxy"), tuple(image.shape[-2:]))
        keep = remove_small_boxes(boxes, 1.0)
        return image, boxes[keep], labels[keep]


class ShapesScenes(Dataset):
    """``n`` synthetic scenes of one seed, made when asked for (deterministic)."""

    class_names = CLASS_NAMES

    def __init__(self, n: int, seed: int, config: SceneConfig = SceneConfig()) -> None:
        self.n, self.seed, self.config = n, seed, config

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Item:
        return scene_tensors(self.seed, index, self.config)


def scene_tensors(seed: int, index: int, config: SceneConfig = SceneConfig()) -> Item:
    """One synthetic scene as (image (3, H, W) uint8, boxes (G, 4), labels (G,)) tensors."""
    scene = make_scene(seed, index, config)
    image = torch.from_numpy(scene.image.copy()).permute(2, 0, 1).contiguous()  # (H, W, 3) -> (3, H, W)
    return image, torch.from_numpy(scene.boxes.copy()), torch.from_numpy(scene.labels.copy())


def open_dataset(spec: str | Path) -> CocoFolder | ShapesScenes:
    """A folder path, or ``shapes:N:SEED``."""
    text = str(spec)
    if text.startswith("shapes:"):
        parts = text.split(":")
        try:
            n, seed = int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            raise FrcnnError(f"{text}: expected shapes:N:SEED, e.g. shapes:200:2026") from None
        if n <= 0 or seed < 0:
            raise FrcnnError(f"{text}: N must be positive and SEED not negative")
        return ShapesScenes(n, seed)
    path = Path(text)
    if not path.is_dir():
        raise FrcnnError(f"{path}: no such folder (or use shapes:N:SEED)")
    return CocoFolder(path)
