"""Ground-truth boxes from COCO JSON, Pascal VOC XML and YOLO txt files, and back.

Shapes: G is the number of ground-truth boxes of one image. Boxes leave this module as
``Tensor[G, 4]`` float32 (x1, y1, x2, y2) in the original image's pixels, with 0 <= x1 < x2 <= W and
0 <= y1 < y2 <= H (W, H = ``image_size``); labels as ``Tensor[G]`` int64.

Formats (sniffed from the content, else from the extension, or forced with ``fmt``):

- ``coco``: a JSON object with "images", "annotations" and "categories"; ``bbox`` is [x, y, w, h] in
  pixels, so x1 = x, y1 = y, x2 = x + w, y2 = y + h. Messages count annotations from 0, their index in
  the "annotations" list.
- ``voc``: Pascal VOC XML, parsed with ``defusedxml`` only (DTDs and entities are refused). VOC pixels
  are 1-based and its boxes inclusive, so x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax, and the
  writer does the inverse (xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2).
- ``yolo``: one ``class cx cy w h`` line a box, the four numbers divided by W or H; class k is named
  ``class_names[k + 1]`` when ``class_names`` is given (its index 0 is "__background__"), else
  ``f"class{k}"``. Blank lines and lines starting with "#" are skipped. An empty ``.txt`` file (or any
  empty file read with ``fmt="yolo"``) is YOLO's "no objects", and so is one of only white space; an empty
  file in any other case is refused.

Labels: with ``class_names`` (index 0 "__background__"), a box whose name is ``class_names[i]``, i >= 1,
gets label i. Names the model does not know (or every name, without ``class_names``) get labels past
the model's classes, in sorted name order: ``len(class_names)``, ``len(class_names) + 1``, ... (1, 2, ...
without ``class_names``), so they never collide with a known class; the report names them.

What can be fixed is fixed and counted in ``GroundTruth.report``: boxes with a NaN or infinite
coordinate are dropped, boxes are clipped to the image, and boxes with zero or negative width or height
(before clipping, or after it: wholly outside the image) are dropped; COCO crowd regions (``iscrowd``) are
skipped. These are the one set of rules (:func:`clean_boxes`, after :func:`coco_boxes` for COCO) for an image's
file, a dataset's boxes (:func:`load_coco_dataset_boxes`) and a training folder
(:class:`frcnn.data.dataset.CocoFolder`). Everything else wrong with the file is a one-line
:class:`~frcnn.errors.FrcnnError` (a ``category_id`` not in "categories" included).
"""

from __future__ import annotations

import io
import json
import math
import os
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, BinaryIO

import defusedxml
import defusedxml.ElementTree as DET
import numpy as np
import torch

from frcnn.data.images import _read_bytes
from frcnn.errors import FrcnnError

ANNOTATION_FORMATS: tuple[str, ...] = ("coco", "voc", "yolo")
MAX_BOXES: int = 10_000  # more boxes for one image are refused
_EXTENSIONS = {".json": "coco", ".xml": "voc", ".txt": "yolo"}
_FORMATS_TEXT = "COCO JSON, Pascal VOC XML or YOLO txt"
_SNIFF_BYTES = 4096  # how much of a file detect_format looks at

Source = str | os.PathLike | bytes | bytearray | BinaryIO


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Ground-truth boxes of one image; ``boxes``, ``labels`` and ``names`` share the length G."""

    boxes: torch.Tensor  # float32, (G, 4), (x1, y1, x2, y2) in the original image's pixels
    labels: torch.Tensor  # int64, (G,), class index (see the module docstring)
    names: tuple[str, ...]  # class name of each box, length G
    report: tuple[str, ...] = field(default=())  # what the loader fixed, one line each

    def __post_init__(self) -> None:
        g = len(self.names)
        if tuple(self.boxes.shape) != (g, 4) or tuple(self.labels.shape) != (g,):
            raise ValueError(
                f"GroundTruth: boxes {tuple(self.boxes.shape)}, labels {tuple(self.labels.shape)} "
                f"and {g} names do not agree"
            )

    @staticmethod
    def empty() -> GroundTruth:
        """No boxes: ``boxes`` is ``Tensor[0, 4]``."""
        return GroundTruth(torch.zeros((0, 4), dtype=torch.float32), torch.zeros(0, dtype=torch.int64), ())

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class _Parsed:
    """What a format parser found: raw boxes (G, 4) float64 (x1, y1, x2, y2), names, size notes."""

    boxes: np.ndarray
    names: list[str]
    notes: list[str] = field(default_factory=list)


def load_annotations(
    source: Source,
    image_size: tuple[int, int],
    image_name: str | None = None,
    fmt: str | None = None,
    class_names: Sequence[str] | None = None,
    name: str | None = None,
) -> GroundTruth:
    """Read the ground-truth boxes of one image from a COCO, VOC or YOLO file.

    Args:
        source: a path, the file's bytes, or a binary file object.
        image_size: (W, H) of the image the boxes belong to, in pixels.
        image_name: picks the image in a COCO file that holds several (matched on the base name).
        fmt: "coco", "voc" or "yolo" to skip format detection.
        class_names: the model's classes, index 0 "__background__"; sets labels and YOLO names. A box
            named ``class_names[i]`` (i >= 1) gets label i; other names get ``len(class_names)``,
            ``len(class_names) + 1``, ... in sorted name order and are named in the report. Without
            ``class_names`` the labels are 1, 2, 3, ... by sorted unique name.
        name: the file's name, used in every message and for the extension rule (an empty ``.txt`` file is
            YOLO's "no objects"); by default a path's base name, a file object's ``name``, else
            "annotations". Pass an upload's file name with its bytes.

    Returns:
        GroundTruth with ``boxes`` ``Tensor[G, 4]`` float32 (x1, y1, x2, y2) inside the image, ``labels``
        ``Tensor[G]`` int64, ``names`` and the ``report`` of what was fixed.

    Raises:
        FrcnnError: missing, empty or malformed file, missing or wrongly typed fields, unknown format,
            more than :data:`MAX_BOXES` boxes. The message is one line starting with the file's name.
    """
    data, name = _read_bytes(source, name, default_name="annotations", allow_empty=True)
    try:
        return _load(data, name, image_size, image_name, fmt, class_names)
    except MemoryError:
        raise FrcnnError(f"{name}: out of memory reading its boxes") from None


def _load(
    data: bytes,
    name: str,
    image_size: tuple[int, int],
    image_name: str | None,
    fmt: str | None,
    class_names: Sequence[str] | None,
) -> GroundTruth:
    """:func:`load_annotations` on the file's bytes."""
    width, height = _check_size(image_size)
    if fmt is not None:
        fmt = _check_format(fmt)
    if not data.removeprefix(b"\xef\xbb\xbf").strip():  # empty, or only white space (and a BOM)
        # YOLO writes an empty file for an image without objects; other formats never do
        if fmt == "yolo" or (fmt is None and os.path.splitext(name)[1].lower() == ".txt"):
            return GroundTruth.empty()
        raise FrcnnError(f"{name}: empty file ({'0 bytes' if not data else 'only white space'})")
    fmt = fmt or detect_format(_sniff_text(data), name)
    if fmt == "voc":
        parsed = _parse_voc(data, name, image_name, (width, height))
    else:
        text = _decode(data, name)
        if fmt == "coco":
            parsed = _parse_coco(text, name, image_name, (width, height))
        else:
            parsed = _parse_yolo(text, name, (width, height), class_names)
    boxes, keep, fixed = clean_boxes(parsed.boxes, (width, height))
    names = [n for n, k in zip(parsed.names, keep, strict=True) if k]
    labels, unknown = _assign_labels(names, class_names)
    report = parsed.notes + fixed + unknown
    return GroundTruth(torch.from_numpy(boxes), torch.from_numpy(labels), tuple(names), tuple(report))


def dump_annotations(
    gt: GroundTruth,
    fmt: str,
    image_size: tuple[int, int],
    image_name: str = "image.png",
    class_names: Sequence[str] | None = None,
) -> str:
    """Write ``gt`` as COCO JSON, Pascal VOC XML or YOLO txt; :func:`load_annotations` reads it back.

    Coordinates are written as the shortest decimals that give back the same float32 values, so a
    COCO or VOC round trip is exact; YOLO stores box centres and sizes divided by W and H (float64).
    YOLO files hold class numbers only: each name must be ``class_names[k + 1]`` or ``f"class{k}"``.
    COCO category ids are the names' indices in ``class_names``, other names numbered after them.
    """
    width, height = _check_size(image_size)
    fmt = _check_format(fmt)
    boxes = gt.boxes.detach().cpu().to(torch.float32).numpy()  # (G, 4)
    if fmt == "coco":
        return _dump_coco(boxes, list(gt.names), (width, height), image_name, class_names)
    if fmt == "voc":
        return _dump_voc(boxes, list(gt.names), (width, height), image_name)
    return _dump_yolo(boxes, list(gt.names), (width, height), class_names)


def detect_format(text: str, filename: str | None) -> str:
    """Tell the format from the content (JSON object, XML, lines of 5 numbers), else the extension.

    Raises:
        FrcnnError: neither the content nor the extension says which format it is.
    """
    head = text.lstrip("\ufeff \t\r\n")
    if head.startswith("{"):
        return "coco"
    if head.startswith("<"):
        return "voc"
    if head and _looks_like_yolo(head):
        return "yolo"
    ext = os.path.splitext(filename or "")[1].lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    raise FrcnnError(
        f"{filename or 'annotations'}: cannot tell the annotation format (expected {_FORMATS_TEXT})"
    )


# ---- shared checks -----------------------------------------------------------------------------------


def _check_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """(W, H) as positive ints."""
    try:
        width, height = (int(v) for v in image_size)
    except (TypeError, ValueError) as e:
        raise FrcnnError(f"image size must be two numbers (width, height), got {image_size!r}") from e
    if width <= 0 or height <= 0:
        raise FrcnnError(f"image size must be positive, got {width}x{height}")
    return width, height


def _check_format(fmt: str) -> str:
    """A known format name, lower case."""
    low = str(fmt).strip().lower()
    if low not in ANNOTATION_FORMATS:
        raise FrcnnError(
            f"unknown annotation format {fmt!r} (expected one of {', '.join(ANNOTATION_FORMATS)})"
        )
    return low


def _sniff_text(data: bytes) -> str:
    """The first whole lines of the file as text, for :func:`detect_format` (bad bytes replaced)."""
    text = data[:_SNIFF_BYTES].decode("utf-8", errors="replace")
    if len(data) > _SNIFF_BYTES and "\n" in text:
        text = text.rsplit("\n", 1)[0]  # the last line may be cut off
    return text


def _decode(data: bytes, name: str) -> str:
    """The file as UTF-8 text (a BOM is skipped)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FrcnnError(f"{name}: not UTF-8 text (byte {e.start})") from e


def _looks_like_yolo(text: str) -> bool:
    """Every non-blank, non-comment line of ``text`` is 5 numbers."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return False
    for line in lines:
        parts = line.split()
        if len(parts) != 5:
            return False
        try:
            [float(p) for p in parts]
        except ValueError:
            return False
    return True


def _check_count(count: int, name: str) -> None:
    if count > MAX_BOXES:
        raise FrcnnError(f"{name}: {count} boxes for one image is over the limit of {MAX_BOXES}")


def _size_note(file_size: tuple[Any, Any], image_size: tuple[int, int]) -> list[str]:
    """A report line when the file's recorded image size differs from the image's."""
    try:
        fw, fh = (int(float(v)) for v in file_size)
    except (TypeError, ValueError, OverflowError):
        return []
    if (fw, fh) == tuple(image_size) or fw <= 0 or fh <= 0:
        return []
    w, h = image_size
    return [f"the file gives the image size as {fw}x{fh} but the image is {w}x{h}"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}es" if word.endswith("x") else f"{n} {word}s"


# ---- fixing and labelling ----------------------------------------------------------------------------


def clean_boxes(raw: np.ndarray, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The one set of cleaning rules for ground truth of every format and reader (an image's file, a COCO
    dataset's boxes, a training folder): drop boxes with a NaN or infinite coordinate, drop boxes of zero or
    negative width or height, clip the rest to the image (W, H) = ``image_size``, and drop those left with no
    area (wholly outside the image). (COCO crowd regions are left out before, by :func:`coco_boxes`.)

    Returns:
        (boxes ``[K, 4]`` float32, keep mask ``[G]`` bool, report lines).
    """
    width, height = image_size
    with np.errstate(over="ignore", invalid="ignore"):
        boxes = np.asarray(raw, dtype=np.float64).reshape(-1, 4).astype(np.float32)  # (G, 4)
    finite = np.isfinite(boxes).all(axis=1)  # (G,)
    positive = finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    limits = np.array([width, height, width, height], dtype=np.float32)
    clipped = np.clip(np.where(finite[:, None], boxes, 0), 0, limits)  # (G, 4)
    inside = positive & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    changed = inside & (clipped != boxes).any(axis=1)
    report = []
    for count, text in (
        (int(changed.sum()), "clipped to the image"),
        (int((~finite).sum()), "dropped: NaN or infinite coordinate"),
        (int((finite & ~positive).sum()), "dropped: zero or negative width/height"),
        (int((positive & ~inside).sum()), "dropped: wholly outside the image"),
    ):
        if count:
            report.append(f"{_plural(count, 'box')} {text}")
    return np.ascontiguousarray(clipped[inside]), inside, report




def _assign_labels(names: list[str], class_names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """Labels (G,) int64 by the rule in the module docstring, and the report line for unknown names."""
    known = {n: i for i, n in reversed(list(enumerate(class_names or ()))) if i >= 1}
    unknown = sorted({n for n in names if n not in known})
    first = len(class_names) if class_names else 1
    extra = {n: first + i for i, n in enumerate(unknown)}
    labels = np.array([known.get(n, extra.get(n, 0)) for n in names], dtype=np.int64)  # (G,)
    report = [f"classes not known to the model: {', '.join(unknown)}"] if class_names and unknown else []
    return labels, report


def _category_ids(names: list[str], class_names: Sequence[str] | None) -> dict[str, int]:
    """Name -> id for writing: the same numbering as :func:`_assign_labels`."""
    unique = sorted(set(names))
    labels, _ = _assign_labels(unique, class_names)
    return dict(zip(unique, labels.tolist(), strict=True))


def _short(value: float) -> float | int:
    """The shortest decimal that gives back the same float32 (an int when whole), for writing."""
    text = str(np.float32(value))
    number = float(text)
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _exact_diff(a: float, b: float) -> float | int:
    """``_short(a) - _short(b)`` computed in decimal, so ``b + result`` gives back ``a`` as float32."""
    diff = Decimal(str(np.float32(a))) - Decimal(str(np.float32(b)))
    number = float(diff)
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


# ---- COCO --------------------------------------------------------------------------------------------


def _parse_coco(text: str, name: str, image_name: str | None, image_size: tuple[int, int]) -> _Parsed:
    """Boxes of the selected image of a COCO JSON file."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise FrcnnError(f"{name}: not valid JSON (line {e.lineno}: {e.msg})") from e
    except RecursionError as e:
        raise FrcnnError(f"{name}: not valid JSON (nested too deeply)") from e
    if not isinstance(doc, dict) or "annotations" not in doc:
        raise FrcnnError(f"{name}: not a COCO file (expected a JSON object with 'annotations')")
    anns = _list_field(doc, "annotations", name)
    images = _list_field(doc, "images", name) if "images" in doc else []
    categories = _coco_categories(doc, name)
    image = _coco_image(images, name, image_name)
    if image is None:
        selected = _coco_without_images(anns, name)
    else:
        image_id = image.get("id")
        selected = [(i, a) for i, a in enumerate(anns) if _coco_image_id(a, i, name) == image_id]
    _check_count(len(selected), name)
    kept, boxes, crowd = coco_boxes(selected, name)
    named = {i: _coco_name(ann, i, name, categories) for i, ann in selected}  # every category checked
    names = [named[i] for i, _ in kept]
    notes = _size_note((image.get("width"), image.get("height")), image_size) if image else []
    if image is not None and anns and not selected:
        notes.append(f"none of the {len(anns)} annotations belong to image id {image.get('id')!r}")
    if crowd:
        notes.append(f"{_plural(crowd, 'crowd region')} skipped")
    return _Parsed(boxes, names, notes)


def _list_field(doc: dict, key: str, name: str) -> list:
    value = doc.get(key)
    if not isinstance(value, list):
        raise FrcnnError(f"{name}: '{key}' must be a list, got {type(value).__name__}")
    return value


def _coco_categories(doc: dict, name: str) -> dict[Any, str] | None:
    """category id -> name, or None when the file has no "categories"."""
    if "categories" not in doc:
        return None
    result = {}
    for i, cat in enumerate(_list_field(doc, "categories", name)):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise FrcnnError(f"{name}: category {i} needs an 'id' and a 'name'")
        if not isinstance(cat["name"], str) or not _is_int(cat["id"]):
            raise FrcnnError(f"{name}: category {i} must have an integer 'id' and a text 'name'")
        result[cat["id"]] = cat["name"]
    return result


def _coco_image(images: list, name: str, image_name: str | None) -> dict | None:
    """The image entry to use: the only one, or the one named ``image_name``; None when there are none."""
    for i, img in enumerate(images):
        if not isinstance(img, dict) or "id" not in img:
            raise FrcnnError(f"{name}: image {i} is not an object with an 'id'")
    if len(images) <= 1:
        return images[0] if images else None
    if not image_name:
        raise FrcnnError(f"{name}: it has {len(images)} images; say which one (no image name given)")
    wanted = _basename(image_name)
    matches = [img for img in images if _basename(str(img.get("file_name", ""))) == wanted]
    if not matches:
        raise FrcnnError(f"{name}: no image named {wanted!r} in it (it has {len(images)} images)")
    if len(matches) > 1:
        exact = [img for img in matches if str(img.get("file_name", "")) == image_name]
        if len(exact) != 1:
            raise FrcnnError(f"{name}: {len(matches)} images are named {wanted!r} in it")
        matches = exact
    return matches[0]


def _coco_without_images(anns: list, name: str) -> list[tuple[int, Any]]:
    """No "images" list: take every annotation, if they all belong to one image."""
    ids = {json.dumps(a.get("image_id"), sort_keys=True) for a in anns if isinstance(a, dict)}
    if len(ids) > 1:
        raise FrcnnError(f"{name}: annotations for {len(ids)} images but no 'images' list to choose from")
    return list(enumerate(anns))


def _coco_image_id(ann: Any, i: int, name: str) -> Any:
    if not isinstance(ann, dict):
        raise FrcnnError(f"{name}: annotation {i} is not an object")
    if "image_id" not in ann:
        raise FrcnnError(f"{name}: annotation {i} has no 'image_id'")
    return ann["image_id"]


def _coco_bbox(ann: Any, i: int, name: str) -> tuple[float, float, float, float]:
    if not isinstance(ann, dict):
        raise FrcnnError(f"{name}: annotation {i} is not an object")
    if "bbox" not in ann:
        raise FrcnnError(f"{name}: annotation {i} has no 'bbox'")
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise FrcnnError(f"{name}: annotation {i} has a 'bbox' that is not 4 numbers [x, y, w, h]")
    x, y, w, h = (_to_float(v) for v in bbox)
    return x, y, w, h


def coco_boxes(selected: Sequence[tuple[int, Any]], name: str) -> tuple[list[tuple[int, dict]], np.ndarray, int]:
    """The one COCO box reader (one image, one file or a training folder): of ``selected`` (index in the file's
    "annotations", annotation), crowd regions (``iscrowd`` set) are left out; the others come back with their
    raw boxes ``[G, 4]`` float64 (x1, y1, x2, y2) = (x, y, x + w, y + h), for :func:`clean_boxes`, and the
    number of crowd regions left out. Every annotation's ``bbox`` is checked, a crowd region's too."""
    rows = [_coco_bbox(ann, i, name) for i, ann in selected]  # (x, y, w, h) each
    crowd = [bool(ann.get("iscrowd")) for _, ann in selected]
    kept = [item for item, c in zip(selected, crowd, strict=True) if not c]
    boxes = np.array([(x, y, x + w, y + h) for (x, y, w, h), c in zip(rows, crowd, strict=True) if not c],
                     dtype=np.float64).reshape(-1, 4)  # (G, 4)
    return kept, boxes, sum(crowd)


def _to_float(v: int | float) -> float:
    """A JSON number as a float; integers too large for a float become +-inf (and are dropped later)."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _coco_name(ann: dict, i: int, name: str, categories: dict[Any, str] | None) -> str:
    if "category_id" not in ann:
        raise FrcnnError(f"{name}: annotation {i} has no 'category_id'")
    cat = ann["category_id"]
    if not _is_int(cat):
        raise FrcnnError(f"{name}: annotation {i} has a 'category_id' that is not an integer")
    if categories is None:
        return f"class{cat}"
    if cat not in categories:
        raise FrcnnError(f"{name}: annotation {i} has category_id {cat}, which is not in 'categories'")
    return categories[cat]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _dump_coco(
    boxes: np.ndarray,
    names: list[str],
    image_size: tuple[int, int],
    image_name: str,
    class_names: Sequence[str] | None,
) -> str:
    ids = _category_ids(names, class_names)
    anns = []
    for k, ((x1, y1, x2, y2), cls) in enumerate(zip(boxes.tolist(), names, strict=True)):
        w, h = _exact_diff(x2, x1), _exact_diff(y2, y1)
        bbox = [_short(x1), _short(y1), w, h]
        anns.append(
            {"id": k + 1, "image_id": 1, "category_id": ids[cls], "bbox": bbox, "area": w * h, "iscrowd": 0}
        )
    doc = {
        "images": [{"id": 1, "file_name": image_name, "width": image_size[0], "height": image_size[1]}],
        "annotations": anns,
        "categories": [{"id": i, "name": n} for n, i in sorted(ids.items(), key=lambda kv: kv[1])],
    }
    return json.dumps(doc, indent=1) + "\n"


# ---- Pascal VOC --------------------------------------------------------------------------------------


def _parse_voc(data: bytes, name: str, image_name: str | None, image_size: tuple[int, int]) -> _Parsed:
    """Boxes of a Pascal VOC XML file (1-based inclusive pixels -> (x1, y1, x2, y2))."""
    try:
        root = DET.fromstring(data)
    except defusedxml.DefusedXmlException as e:
        raise FrcnnError(
            f"{name}: XML with a DTD or entities is refused (possible entity-expansion attack)"
        ) from e
    except ET.ParseError as e:
        raise FrcnnError(f"{name}: not valid XML ({e})") from e
    if root.tag != "annotation":
        raise FrcnnError(f"{name}: not a Pascal VOC file (root element <{root.tag}>, expected <annotation>)")
    objects = root.findall("object")
    _check_count(len(objects), name)
    boxes = np.zeros((len(objects), 4), dtype=np.float64)  # (G, 4)
    names = []
    for k, obj in enumerate(objects, start=1):
        label = (obj.findtext("name") or "").strip()
        if not label:
            raise FrcnnError(f"{name}: object {k} has no <name>")
        box = obj.find("bndbox")
        if box is None:
            raise FrcnnError(f"{name}: object {k} has no <bndbox>")
        xmin, ymin, xmax, ymax = (_voc_number(box, tag, k, name) for tag in ("xmin", "ymin", "xmax", "ymax"))
        boxes[k - 1] = (xmin - 1, ymin - 1, xmax, ymax)
        names.append(label)
    size = root.find("size")
    notes = (
        _size_note((size.findtext("width"), size.findtext("height")), image_size) if size is not None else []
    )
    written_for = os.path.basename((root.findtext("filename") or "").strip())
    if image_name and written_for and written_for.lower() != os.path.basename(image_name).lower():
        notes.append(f"written for {written_for[:80]!r}, not {os.path.basename(image_name)!r}: check it is this "
                     "image's file")
    return _Parsed(boxes, names, notes)


def _voc_number(box: ET.Element, tag: str, k: int, name: str) -> float:
    text = box.findtext(tag)
    if text is None:
        raise FrcnnError(f"{name}: object {k} has no <{tag}> in its <bndbox>")
    try:
        return float(text.strip())
    except ValueError as e:
        raise FrcnnError(
            f"{name}: object {k} has <{tag}> {text.strip()[:20]!r}, which is not a number"
        ) from e


def _dump_voc(boxes: np.ndarray, names: list[str], image_size: tuple[int, int], image_name: str) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = image_name
    size = ET.SubElement(root, "size")
    for tag, value in (("width", image_size[0]), ("height", image_size[1]), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for (x1, y1, x2, y2), cls in zip(boxes.tolist(), names, strict=True):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = cls
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        values = (_exact_diff(x1, -1.0), _exact_diff(y1, -1.0), _short(x2), _short(y2))  # 1-based
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), values, strict=True):
            ET.SubElement(box, tag).text = repr(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


# ---- YOLO --------------------------------------------------------------------------------------------


def _parse_yolo(
    text: str, name: str, image_size: tuple[int, int], class_names: Sequence[str] | None
) -> _Parsed:
    """Boxes of a YOLO txt file: ``class cx cy w h`` normalised by (W, H)."""
    rows = [(n, ln.split()) for n, ln in enumerate(text.splitlines(), start=1)]
    rows = [(n, parts) for n, parts in rows if parts and not parts[0].startswith("#")]
    _check_count(len(rows), name)
    width, height = image_size
    boxes = np.zeros((len(rows), 4), dtype=np.float64)  # (G, 4)
    names = []
    for row, (n, parts) in enumerate(rows):
        if len(parts) != 5:
            raise FrcnnError(f"{name}: line {n} has {len(parts)} values, expected 5 (class cx cy w h)")
        k = _yolo_class(parts[0], n, name)
        try:
            cx, cy, w, h = (float(p) for p in parts[1:])
        except ValueError as e:
            raise FrcnnError(f"{name}: line {n} has a value that is not a number") from e
        boxes[row] = (
            (cx - w / 2) * width,
            (cy - h / 2) * height,
            (cx + w / 2) * width,
            (cy + h / 2) * height,
        )
        in_model = class_names is not None and 0 <= k + 1 < len(class_names)
        names.append(class_names[k + 1] if in_model else f"class{k}")
    return _Parsed(boxes, names)


def _yolo_class(text: str, n: int, name: str) -> int:
    try:
        value = int(text) if text.lstrip("+-").isdigit() else float(text)  # some tools write "3.0"
    except ValueError as e:
        raise FrcnnError(f"{name}: line {n} has class {text[:20]!r}, which is not a number") from e
    if (isinstance(value, float) and not value.is_integer()) or value < 0:
        raise FrcnnError(f"{name}: line {n} has class {text[:20]!r}, expected a whole number >= 0")
    return int(value)


def _dump_yolo(
    boxes: np.ndarray, names: list[str], image_size: tuple[int, int], class_names: Sequence[str] | None
) -> str:
    width, height = image_size
    lines = []
    for (x1, y1, x2, y2), cls in zip(boxes.astype(np.float64).tolist(), names, strict=True):
        k = _yolo_id(cls, class_names)
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        w, h = (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"{k} {cx!r} {cy!r} {w!r} {h!r}")
    return "".join(line + "\n" for line in lines)


def _yolo_id(cls: str, class_names: Sequence[str] | None) -> int:
    """The YOLO class number of a name: ``class_names.index(cls) - 1``, or k for ``f"class{k}"``."""
    names = list(class_names or ())
    if cls in names[1:]:
        return names.index(cls, 1) - 1
    digits = cls[5:] if cls.startswith("class") else ""
    if digits.isdigit() and str(int(digits)) == digits and int(digits) + 1 >= len(names):
        return int(digits)  # "class{k}" where class_names (if any) gives k no other name
    raise FrcnnError(
        f"cannot write class {cls!r} to YOLO: it is not in the class names given (YOLO stores numbers)"
    )


MAX_DATASET_IMAGES: int = 100_000  # images in one dataset file for the anchor fit
MAX_ZIP_JSON_BYTES: int = 200 * 2**20  # annotations.json inside a zip, uncompressed


@dataclass(frozen=True, eq=False)
class DatasetBoxes:
    """Every image of a COCO dataset file by its recorded size, with its boxes (no pixels are read)."""

    items: list[tuple[tuple[int, int], torch.Tensor]]  # ((H, W), boxes (G, 4) x1 y1 x2 y2) per image
    report: tuple[str, ...]  # what was fixed or skipped, one line each

    @property
    def num_boxes(self) -> int:
        return sum(len(b) for _, b in self.items)


def load_coco_dataset_boxes(source: Source, name: str | None = None) -> DatasetBoxes:
    """Boxes and image sizes of a whole COCO file (``annotations.json``, or a zip holding one), for the anchor
    fit. Sizes come from the images' ``width``/``height``; crowd regions are skipped; boxes are cleaned as for
    one image. Bad files are refused with one line."""
    data, name = _read_bytes(source, name, default_name="annotations.json", max_bytes=MAX_ZIP_JSON_BYTES)
    try:
        return _dataset_boxes(data, name)
    except MemoryError:
        raise FrcnnError(f"{name}: out of memory reading its boxes") from None


def _dataset_boxes(data: bytes, name: str) -> DatasetBoxes:
    """:func:`load_coco_dataset_boxes` on the file's bytes."""
    if data[:4] == b"PK\x03\x04":
        data, name = _json_from_zip(data, name)
    try:
        doc = json.loads(_decode(data, name))
    except json.JSONDecodeError as e:
        raise FrcnnError(f"{name}: not valid JSON (line {e.lineno}: {e.msg})") from e
    except RecursionError as e:
        raise FrcnnError(f"{name}: not valid JSON (nested too deeply)") from e
    if not isinstance(doc, dict) or "annotations" not in doc or "images" not in doc:
        raise FrcnnError(f"{name}: not a COCO dataset (expected a JSON object with 'images' and 'annotations')")
    images = _list_field(doc, "images", name)
    anns = _list_field(doc, "annotations", name)
    if len(images) > MAX_DATASET_IMAGES:
        raise FrcnnError(f"{name}: {len(images)} images is over the limit of {MAX_DATASET_IMAGES}")
    sizes: dict[Any, tuple[int, int]] = {}
    for i, img in enumerate(images):
        if not isinstance(img, dict) or "id" not in img:
            raise FrcnnError(f"{name}: image {i} is not an object with an 'id'")
        w, h = img.get("width"), img.get("height")
        if not (_is_int(w) and _is_int(h) and 0 < w <= 100_000 and 0 < h <= 100_000):
            raise FrcnnError(f"{name}: image {i} needs a positive whole 'width' and 'height' (got {w!r}, {h!r})")
        sizes[json.dumps(img["id"], sort_keys=True)] = (int(h), int(w))
    per_image: dict[str, list[tuple[int, Any]]] = {k: [] for k in sizes}
    unknown = crowd = 0
    for i, ann in enumerate(anns):
        key = json.dumps(_coco_image_id(ann, i, name), sort_keys=True)
        if key not in per_image:
            unknown += 1
            continue
        per_image[key].append((i, ann))
    items = []
    fixed: dict[str, int] = {}  # what clean_boxes did, over all images: "clipped to the image" -> count
    for key, selected in per_image.items():
        _, rows, crowded = coco_boxes(selected, name)
        crowd += crowded
        _check_count(len(rows), name)
        h, w = sizes[key]
        boxes, _, lines = clean_boxes(rows, (w, h))
        for line in lines:  # "<n> box(es) <what>"
            count, _, what = line.split(" ", 2)
            fixed[what] = fixed.get(what, 0) + int(count)
        items.append(((h, w), torch.from_numpy(boxes)))
    report = [f"{_plural(n, 'box')} {what}" for what, n in fixed.items()]
    if unknown:
        report.append(f"{_plural(unknown, 'annotation')} skipped: for an image not in 'images'")
    if crowd:
        report.append(f"{_plural(crowd, 'crowd region')} skipped")
    return DatasetBoxes(items, tuple(report))


def _json_from_zip(data: bytes, name: str) -> tuple[bytes, str]:
    """The ``annotations.json`` inside a zip (the shallowest one), read without extracting anything else."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            found = sorted((i for i in z.infolist() if os.path.basename(i.filename) == "annotations.json"),
                           key=lambda i: i.filename.count("/"))
            if not found:
                raise FrcnnError(f"{name}: no annotations.json in the zip")
            info = found[0]
            if info.file_size > MAX_ZIP_JSON_BYTES:
                raise FrcnnError(f"{name}: annotations.json is {info.file_size} bytes, over the limit of "
                                 f"{MAX_ZIP_JSON_BYTES}")
            with z.open(info) as f:
                content = f.read(MAX_ZIP_JSON_BYTES + 1)
            if len(content) > MAX_ZIP_JSON_BYTES:
                raise FrcnnError(f"{name}: annotations.json is over the limit of {MAX_ZIP_JSON_BYTES} bytes")
            return content, f"{name}/{info.filename}"
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError) as e:
        raise FrcnnError(f"{name}: not a readable zip ({e})") from e
