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


class Subset(Dataset):
    """Some items of a dataset, keeping its ``class_names``."""

    def __init__(self, dataset: Dataset, indices: list[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)
        self.class_names = dataset.class_names

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Item:
        return self.dataset[self.indices[index]]


def split_held_out(dataset: Dataset, fraction: float = 0.1) -> tuple[Subset, Subset]:
    """(training, held-out): the last ``fraction`` of the items (at least one) are held out."""
    n = len(dataset)
    if n < 2:
        raise FrcnnError(f"a dataset of {n} image(s) cannot be split into training and held-out parts")
    held = max(1, round(n * fraction))
    return Subset(dataset, list(range(n - held))), Subset(dataset, list(range(n - held, n)))


ZIP_MAX_BYTES = 1 << 30  # uncompressed, all members together
ZIP_MAX_MEMBERS = 50_000
_ZIP_SUFFIXES = {".json", ".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def extract_coco_zip(data: bytes, dest: str | Path, name: str = "dataset.zip") -> Path:
    """Unpack a zip of a COCO folder (annotations.json + images) into ``dest`` safely: only plain relative
    paths (no absolute paths, no ``..``, no links), only JSON and image files, bounded in size and count.
    Returns the folder that holds annotations.json."""
    import zipfile
    from pathlib import PurePosixPath

    dest = Path(dest)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            members = [m for m in z.infolist() if not m.is_dir()]
            if len(members) > ZIP_MAX_MEMBERS:
                raise FrcnnError(f"{name}: {len(members)} files is over the limit of {ZIP_MAX_MEMBERS}")
            if sum(m.file_size for m in members) > ZIP_MAX_BYTES:
                raise FrcnnError(f"{name}: over {ZIP_MAX_BYTES >> 20} MB uncompressed")
            roots = []
            for m in members:
                path = PurePosixPath(m.filename)
                if path.is_absolute() or ".." in path.parts or m.filename.startswith(("/", "\\")):
                    raise FrcnnError(f"{name}: refused, it holds an unsafe path {m.filename[:80]!r}")
                if (m.external_attr >> 16) & 0o170000 == 0o120000:  # a symbolic link
                    raise FrcnnError(f"{name}: refused, it holds a link {m.filename[:80]!r}")
                if path.suffix.lower() not in _ZIP_SUFFIXES:
                    continue
                target = dest.joinpath(*path.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(m) as src, open(target, "wb") as out:
                    out.write(src.read(ZIP_MAX_BYTES + 1))
                if path.name == "annotations.json":
                    roots.append(target.parent)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise FrcnnError(f"{name}: not a readable zip ({exc})") from None
    if not roots:
        raise FrcnnError(f"{name}: no annotations.json in the zip (a COCO folder: images/ + annotations.json)")
    return min(roots, key=lambda p: len(p.parts))
