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
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from frcnn.data.annotations import (
    MAX_DATASET_IMAGES,
    MAX_ZIP_JSON_BYTES,
    _check_count,
    _coco_bbox,
    _coco_categories,
    _coco_image_id,
    _coco_name,
    _decode,
    _is_int,
    _list_field,
    clean_boxes,
    coco_boxes,
)
from frcnn.data.images import MAX_FILE_BYTES, _read_bytes, _read_file, load_image
from frcnn.data.shapes import CLASS_NAMES, SceneConfig, make_scene
from frcnn.errors import FrcnnError

Item = tuple[Tensor, Tensor, Tensor]


class CocoFolder(Dataset):
    """A folder with ``annotations.json`` (COCO) and its images (in ``images/`` or beside the json).

    The file is checked whole when the folder is opened, and any problem is one line naming the file and the
    first bad entry: "images", "annotations" and "categories" lists; images with unique integer ids and a
    ``file_name``; annotations with integer ``id`` and ``image_id``, a ``bbox`` of 4 numbers and a
    ``category_id`` among the categories; categories with an integer id and a text name.

    An image's boxes are read by the one COCO reader, :func:`frcnn.data.annotations.coco_boxes`, and cleaned by
    the one set of rules, :func:`frcnn.data.annotations.clean_boxes` (as ``load_annotations`` reads a file):
    crowd regions, boxes with a NaN or infinite coordinate, of zero or negative width or height, or wholly
    outside the image are dropped, the rest clipped to the image.

    Confinement: every ``file_name`` must name a file inside the image folder. A path that is absolute or
    goes up (``..``) is refused when the folder is opened; when an image is loaded, a symbolic link on the
    way (the image folder ``images/`` itself, any folder below it, or the file) and anything that is not a
    regular file (a device such as ``/dev/zero``, a FIFO) are refused before a byte is read, and the file
    is read up to :data:`~frcnn.data.images.MAX_FILE_BYTES` only.
    """

    def __init__(self, root: str | Path) -> None:
        from pycocotools.coco import COCO

        self.root = Path(root)
        self.annotations_file = ann = self.root / "annotations.json"
        if not ann.is_file():
            raise FrcnnError(f"{self.root}: no annotations.json in it (a COCO folder: images/ + annotations.json)")
        doc = _read_coco_json(ann)
        self.ids, self.class_names, self._label_of = _check_coco(doc, str(ann))
        self.coco = COCO()  # pycocotools indexes the checked document (its own reader would open any path)
        self.coco.dataset = doc
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco.createIndex()
        self.image_dir = self.root / "images" if (self.root / "images").is_dir() else self.root

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Item:
        info = self.coco.imgs[self.ids[index]]
        shown = f"{self.annotations_file}: image {_cut(info['file_name'])!r}"
        image = load_image(self._image_bytes(info["file_name"], shown), name=shown).tensor
        # the one COCO reader and cleaning rules of load_annotations (frcnn.data.annotations.clean_boxes)
        kept, raw, _ = coco_boxes(list(enumerate(self.coco.imgToAnns[info["id"]])), shown)
        boxes, keep, _ = clean_boxes(raw, (int(image.shape[-1]), int(image.shape[-2])))  # (G, 4), (W, H)
        labels = torch.tensor([self._label_of[a["category_id"]] for _, a in kept], dtype=torch.int64)  # (K,)
        return image, torch.from_numpy(boxes), labels[torch.from_numpy(keep)]

    def _image_bytes(self, file_name: str, shown: str) -> bytes:
        """The bytes of an image file, confined to the image folder (no links on the way, a regular file)."""
        parts = [p for p in file_name.split("/") if p not in ("", ".")]
        steps = [self.image_dir] if self.image_dir != self.root else []
        path = self.image_dir
        for part in parts:
            path = path / part
            steps.append(path)
        for k, step in enumerate(steps):
            try:
                mode = os.lstat(step).st_mode
            except FileNotFoundError:
                raise FrcnnError(f"{shown}: no such file") from None
            except OSError as e:
                raise FrcnnError(f"{shown}: cannot read ({e.strerror or e})") from None
            if stat.S_ISLNK(mode):
                raise FrcnnError(f"{shown}: {_cut(step.name)!r} is a symbolic link, refused "
                                 "(a dataset's files must lie inside its folder)")
            last = k == len(steps) - 1
            if not last and not stat.S_ISDIR(mode):
                raise FrcnnError(f"{shown}: no such file ({_cut(step.name)!r} is not a folder)")
            if last and not stat.S_ISREG(mode):
                what = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
                raise FrcnnError(f"{shown}: {what}, refused")
        try:
            return _read_file(str(path), shown, MAX_FILE_BYTES, follow_links=False)
        except FrcnnError as e:  # swapped for a link or device since the check, or unreadable
            raise FrcnnError(f"{shown}: {str(e).removeprefix(str(path) + ': ')}") from None


MAX_CATEGORIES: int = 2_000  # classes in one dataset: the model's box predictor grows with each one


def _read_coco_json(ann: Path) -> Any:
    """The parsed annotations.json, read up to MAX_ZIP_JSON_BYTES; one line on any failure."""
    data, name = _read_bytes(ann, str(ann), default_name="annotations.json", max_bytes=MAX_ZIP_JSON_BYTES)
    try:
        return json.loads(_decode(data, name))
    except json.JSONDecodeError as e:
        raise FrcnnError(f"{name}: not a readable COCO file (not valid JSON, line {e.lineno}: {e.msg})") from None
    except RecursionError:
        raise FrcnnError(f"{name}: not a readable COCO file (JSON nested too deeply)") from None
    except MemoryError:
        raise FrcnnError(f"{name}: out of memory reading it") from None


def _check_coco(doc: Any, name: str) -> tuple[list[int], tuple[str, ...], dict[int, int]]:
    """One pass over a COCO document: (sorted image ids, class names with background, category id -> label).
    Raises FrcnnError naming ``name`` and the first problem."""
    if not isinstance(doc, dict) or not all(k in doc for k in ("images", "annotations", "categories")):
        raise FrcnnError(f"{name}: not a COCO dataset (expected a JSON object with 'images', 'annotations' "
                         "and 'categories')")
    images, anns = _list_field(doc, "images", name), _list_field(doc, "annotations", name)
    if len(images) > MAX_DATASET_IMAGES:
        raise FrcnnError(f"{name}: {len(images)} images is over the limit of {MAX_DATASET_IMAGES}")
    if len(doc["categories"] if isinstance(doc["categories"], list) else ()) > MAX_CATEGORIES:
        raise FrcnnError(f"{name}: {len(doc['categories'])} categories is over the limit of {MAX_CATEGORIES}")
    categories = _coco_categories(doc, name)  # id -> name; checks each entry
    if len(categories) != len(doc["categories"]):
        raise FrcnnError(f"{name}: category ids repeat (each category needs its own 'id')")
    boxes_of: dict[int, int] = {}  # image id -> number of annotations
    for i, img in enumerate(images):
        if not isinstance(img, dict) or "id" not in img:
            raise FrcnnError(f"{name}: image {i} is not an object with an 'id'")
        if not _is_int(img["id"]):  # pycocotools sorts the ids: mixed kinds would fail there
            raise FrcnnError(f"{name}: image {i} has id {_cut(json.dumps(img['id']))}, expected an integer")
        if img["id"] in boxes_of:
            raise FrcnnError(f"{name}: image {i} repeats id {img['id']}")
        file_name = img.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise FrcnnError(f"{name}: image {i} has no 'file_name' (text)")
        problem = _file_name_problem(file_name)
        if problem:
            raise FrcnnError(f"{name}: image {i} has file_name {_cut(file_name)!r}, {problem} "
                             "(it must be a path inside the image folder)")
        boxes_of[img["id"]] = 0
    if not boxes_of:
        raise FrcnnError(f"{name}: no images listed")
    for i, ann in enumerate(anns):
        image_id = _coco_image_id(ann, i, name)  # an object with an 'image_id'
        if not _is_int(image_id) or not _is_int(ann.get("id")):
            raise FrcnnError(f"{name}: annotation {i} needs an integer 'id' and 'image_id'")
        _coco_bbox(ann, i, name)
        _coco_name(ann, i, name, categories)  # category_id among the categories
        if image_id in boxes_of:
            boxes_of[image_id] += 1
            _check_count(boxes_of[image_id], f"{name}: image id {image_id}")
    ordered = sorted(categories)  # labels follow the category ids' order, 0 is the background
    class_names = ("__background__", *(categories[c] for c in ordered))
    return sorted(boxes_of), class_names, {c: k + 1 for k, c in enumerate(ordered)}


def _file_name_problem(file_name: str) -> str | None:
    """Why ``file_name`` cannot name a file inside a folder (absolute, ``..``, a NUL), or None."""
    if "\x00" in file_name:
        return "which holds a NUL character"
    posix = file_name.replace("\\", "/")  # a Windows-made file: check its parts the same way
    if posix.startswith("/") or PureWindowsPath(file_name).drive:
        return "an absolute path"
    if ".." in posix.split("/"):
        return "which goes up a folder with '..'"
    return None


def _cut(text: str, limit: int = 40) -> str:
    """User text for a message: at most ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


ZIP_MAX_BYTES: int = 256 * 2**20  # uncompressed, all members together, counted as they are written
ZIP_MAX_MEMBERS: int = 50_000
ZIP_MAX_RATIO: int = 200  # uncompressed : compressed of one member; past it (and past ZIP_RATIO_FREE_BYTES) refused
ZIP_RATIO_FREE_BYTES: int = 2**20  # members up to this size are not ratio-checked (a blank BMP packs 1000:1)
_ZIP_SUFFIXES = {".json", ".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
_ZIP_CHUNK = 2**20  # bytes read from a member at a time
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError,
               zlib.error, ValueError, OSError)  # RuntimeError: an encrypted member; OSError: a path clash


def extract_coco_zip(data: bytes, dest: str | Path, name: str = "dataset.zip",
                     max_bytes: int = ZIP_MAX_BYTES) -> Path:
    """Unpack a zip of a COCO folder (annotations.json + images) into a new folder inside ``dest``, safely:
    only plain relative paths (no absolute paths, no ``..``, no links), only JSON and image files, at most
    :data:`ZIP_MAX_MEMBERS` files and ``max_bytes`` uncompressed, counted on the bytes actually written
    (a zip's declared sizes can lie), each member at most :data:`ZIP_MAX_RATIO`:1 compressed.

    On any refusal or error everything this call wrote is removed again (``dest`` too when this call
    created it). Returns the folder that holds annotations.json."""
    dest = Path(dest)
    top = dest  # the highest folder this call creates, removed on failure
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    created = not top.exists()
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="zip-", dir=dest))
    try:
        return _extract(data, work, name, max_bytes)
    except BaseException as exc:
        shutil.rmtree(top if created else work, ignore_errors=True)
        if isinstance(exc, FrcnnError):  # a refusal (FrcnnError is a ValueError: tested first)
            raise
        if isinstance(exc, MemoryError):
            raise FrcnnError(f"{name}: out of memory extracting it") from None
        if isinstance(exc, _ZIP_ERRORS):
            raise FrcnnError(f"{name}: not a readable zip ({type(exc).__name__}: {exc})") from None
        raise


def _extract(data: bytes, work: Path, name: str, max_bytes: int) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = [m for m in z.infolist() if not m.is_dir()]
        if len(members) > ZIP_MAX_MEMBERS:
            raise FrcnnError(f"{name}: {len(members)} files is over the limit of {ZIP_MAX_MEMBERS}")
        declared = sum(m.file_size for m in members)
        if declared > max_bytes:
            raise FrcnnError(f"{name}: {declared} bytes uncompressed is over the limit of {max_bytes} bytes "
                             f"({max_bytes >> 20} MB)")
        for m in members:  # every path and ratio checked before anything is written
            path = PurePosixPath(m.filename)
            if path.is_absolute() or ".." in path.parts or m.filename.startswith(("/", "\\")):
                raise FrcnnError(f"{name}: refused, it holds an unsafe path {_cut(m.filename)!r}")
            if (m.external_attr >> 16) & 0o170000 == 0o120000:  # a symbolic link
                raise FrcnnError(f"{name}: refused, it holds a link {_cut(m.filename)!r}")
            _check_ratio(name, m, m.file_size)
        wanted = [m for m in members if PurePosixPath(m.filename).suffix.lower() in _ZIP_SUFFIXES]
        roots, written = [], 0
        for m in wanted:
            target = work.joinpath(*PurePosixPath(m.filename).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            member_bytes = 0
            with z.open(m) as src, open(target, "wb") as out:
                while chunk := src.read(_ZIP_CHUNK):
                    member_bytes += len(chunk)
                    written += len(chunk)
                    if written > max_bytes:
                        raise FrcnnError(f"{name}: over the limit of {max_bytes} bytes uncompressed, counted "
                                         f"while extracting (it declared {declared})")
                    _check_ratio(name, m, member_bytes)
                    out.write(chunk)
            if target.name == "annotations.json":
                roots.append(target.parent)
    if not roots:
        raise FrcnnError(f"{name}: no annotations.json in the zip (a COCO folder: images/ + annotations.json)")
    return min(roots, key=lambda p: len(p.parts))


def _check_ratio(name: str, member: zipfile.ZipInfo, size: int) -> None:
    """Refuse a member that expands ``size`` bytes out of its compressed size past ZIP_MAX_RATIO."""
    if size > ZIP_RATIO_FREE_BYTES and size > ZIP_MAX_RATIO * max(member.compress_size, 1):
        raise FrcnnError(f"{name}: refused, {_cut(member.filename)!r} expands {size} bytes out of "
                         f"{member.compress_size}, over {ZIP_MAX_RATIO}:1 (a zip bomb?)")
