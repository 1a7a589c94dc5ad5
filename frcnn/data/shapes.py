"""Synthetic scenes of coloured shapes: the built-in data set the default detector is trained on.

Every scene is a pure function of ``(seed, index, config)``: one ``numpy.random.Generator(PCG64)`` seeded
from ``(seed, index)`` drives every choice, pictures are drawn with PIL and integer or basic IEEE float
arithmetic only (no global RNG, no trigonometry), so the same arguments give the same bytes anywhere.

A scene holds G objects, each one of the classes in :data:`CLASS_NAMES` stretched into its own box:

- sizes from ``min_box`` px to ``max_box_frac`` of the image's shorter side (longer side log-uniform),
  aspect ratios w/h log-uniform in ``[1 / max_aspect, max_aspect]``;
- colours chosen to stand out from what lies under the object (background or earlier objects), with an
  occasional weak contrast, fills that are solid, striped, shaded or speckled, sometimes an outline;
- partial occlusion: later objects are drawn over earlier ones, but a placement that would leave an earlier
  object with less than ``1 - _MAX_COVERED`` of its pixels visible is resampled, so every labelled object
  stays visible;
- clutter that is never labelled: thin lines and scribbles (some over the objects), specks and blobs smaller
  than ``min_box``;
- backgrounds that vary per scene: flat, gradients, stripes (hard or soft), checkers, blotches, plus noise.

Names: H, W the image size; G the number of objects; boxes are (x1, y1, x2, y2) float pixels with x2, y2
exclusive: the tight bounds of the object's full drawn mask (before occlusion, as annotators draw them),
``x1 = min column``, ``x2 = max column + 1``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from frcnn.errors import FrcnnError

CLASS_NAMES: tuple[str, ...] = ("__background__", "ellipse", "rectangle", "triangle", "cross", "ring")

_MAX_COVERED = 0.6  # a later object may hide at most this fraction of an earlier object's pixels
_SHAPE_TRIES = 4  # new shapes tried for one object slot before the slot is given up
_PLACEMENT_TRIES = 25  # positions tried for one shape
_COLOUR_TRIES = 12  # colours tried when looking for contrast
_PIXELS_PER_CLUTTER = 20_000  # one clutter mark per this many pixels on average (about 13 at 512x512)
_DIRECTIONS = ((1, 0), (0, 1), (1, 1), (1, -1), (2, 1), (1, 2), (2, -1), (1, -2), (3, 1), (1, 3))


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn; hashable, so it can key a cache."""

    min_side: int = 320  # image width and height are each drawn from [min_side, max_side]
    max_side: int = 640
    min_objects: int = 2  # objects per scene, drawn from [min_objects, max_objects]
    max_objects: int = 8
    min_box: int = 16  # smallest object side in px
    max_box_frac: float = 0.8  # largest object side as a fraction of the image's shorter side
    max_aspect: float = 3.0  # object w/h lies in [1 / max_aspect, max_aspect]
    occlusion: bool = True  # objects may partly cover earlier ones (else they never overlap)
    clutter: bool = True  # unlabelled distractor marks
    texture: bool = True  # textured, noisy backgrounds and patterned fills (else flat colours)

    def __post_init__(self) -> None:
        if not 16 <= self.min_side <= self.max_side:
            raise FrcnnError(f"need 16 <= min_side <= max_side, got {self.min_side}, {self.max_side}")
        if not 1 <= self.min_objects <= self.max_objects:
            got = f"{self.min_objects}, {self.max_objects}"
            raise FrcnnError(f"need 1 <= min_objects <= max_objects, got {got}")
        if not 0 < self.max_box_frac <= 1:
            raise FrcnnError(f"max_box_frac must be in (0, 1], got {self.max_box_frac}")
        if not 4 <= self.min_box <= self.max_box_frac * self.min_side:
            raise FrcnnError(f"need 4 <= min_box <= max_box_frac * min_side, got min_box={self.min_box}")
        if self.max_aspect < 1:
            raise FrcnnError(f"max_aspect must be >= 1, got {self.max_aspect}")


@dataclass(frozen=True, eq=False)  # eq=False: numpy arrays have no single truth value
class Scene:
    """One synthetic picture and its ground truth; ``boxes`` and ``labels`` share their length G."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray  # (G, 4) float32 (x1, y1, x2, y2) pixels, x2/y2 exclusive
    labels: np.ndarray  # (G,) int64 indices into CLASS_NAMES, >= 1


@dataclass(frozen=True, eq=False)
class _Placed:
    """An object as drawn: its full mask in its own (h, w) crop, whose top-left corner is (x, y)."""

    label: int
    x: int
    y: int
    mask: np.ndarray  # (h, w) bool


def make_scene(seed: int, index: int, config: SceneConfig = SceneConfig()) -> Scene:
    """Draw scene ``index`` of the series ``seed``; the same arguments always give the same bytes.

    Returns:
        Scene with image (H, W, 3) uint8, boxes (G, 4) float32 (x1, y1, x2, y2), labels (G,).
    """
    return _render(seed, index, config)[0]


def write_coco_dataset(
    out_dir: str | Path, n: int, seed: int, config: SceneConfig = SceneConfig()
) -> Path:
    """Write scenes 0..n-1 of series ``seed`` as ``out_dir/images/NNNNNN.png`` plus ``annotations.json``.

    The json is COCO: image ids and annotation ids start at 1 (COCOeval treats id 0 as "unmatched"),
    ``file_name`` is the bare name inside ``images/``, ``bbox`` is [x, y, w, h] floats, category ids are the
    indices into :data:`CLASS_NAMES`. Returns the json's path.
    """
    if n < 0:
        raise FrcnnError(f"number of scenes must be >= 0, got {n}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n):
        scene = make_scene(seed, i, config)
        name = f"{i:06d}.png"
        Image.fromarray(scene.image).save(out / "images" / name)
        height, width = scene.image.shape[:2]
        images.append({"id": i + 1, "file_name": name, "width": width, "height": height})
        for box, label in zip(scene.boxes.tolist(), scene.labels.tolist(), strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": label,
                "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0,
            })
    categories = [{"id": k, "name": name} for k, name in enumerate(CLASS_NAMES) if k > 0]
    info = {"description": "frcnn synthetic shapes", "seed": seed, "config": asdict(config)}
    path = out / "annotations.json"
    coco = {"info": info, "images": images, "annotations": annotations, "categories": categories}
    path.write_text(json.dumps(coco, indent=1))
    return path


def _rng(seed: int, index: int) -> np.random.Generator:
    if seed < 0 or index < 0:
        raise FrcnnError(f"scene seed and index must be >= 0, got seed={seed}, index={index}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index])))


def _render(seed: int, index: int, config: SceneConfig) -> tuple[Scene, list[_Placed], np.ndarray]:
    """Draw one scene; also return its objects as placed and the owner map (H, W) int (-1 = no object)."""
    rng = _rng(seed, index)
    width, height = (int(v) for v in rng.integers(config.min_side, config.max_side + 1, 2))
    image = _background(rng, height, width, config.texture)
    mean_clutter = width * height // _PIXELS_PER_CLUTTER
    n_clutter = int(rng.integers(mean_clutter // 2, mean_clutter * 3 // 2 + 1)) if config.clutter else 0
    image = _draw_clutter(rng, image, n_clutter, config.min_box, lines_only=False)
    owner = np.full((height, width), -1, np.int16)
    placed: list[_Placed] = []
    for _ in range(int(rng.integers(config.min_objects, config.max_objects + 1))):
        obj = _place_object(rng, owner, placed, config)
        if obj is not None:
            _paint_object(rng, image, obj, config.texture)
            h, w = obj.mask.shape
            owner[obj.y : obj.y + h, obj.x : obj.x + w][obj.mask] = len(placed)
            placed.append(obj)
    if config.clutter:  # a few thin lines across everything
        image = _draw_clutter(rng, image, int(rng.integers(0, 4)), config.min_box, lines_only=True)
    boxes = np.array([_tight_box(obj) for obj in placed], np.float32).reshape(-1, 4)  # (G, 4)
    labels = np.array([obj.label for obj in placed], np.int64)  # (G,)
    return Scene(image=image, boxes=boxes, labels=labels), placed, owner


def _object_masks(seed: int, index: int, config: SceneConfig = SceneConfig()) -> np.ndarray:
    """The scene's objects' full masks (G, H, W) bool, re-rendered; for checking boxes."""
    scene, placed, _ = _render(seed, index, config)
    masks = np.zeros((len(placed), *scene.image.shape[:2]), bool)  # (G, H, W)
    for g, obj in enumerate(placed):
        masks[g, obj.y : obj.y + obj.mask.shape[0], obj.x : obj.x + obj.mask.shape[1]] = obj.mask
    return masks


def _visible_fractions(seed: int, index: int, config: SceneConfig = SceneConfig()) -> np.ndarray:
    """Per object (G,) float: the fraction of its pixels not covered by later objects."""
    _, placed, owner = _render(seed, index, config)
    visible = np.bincount(owner[owner >= 0], minlength=len(placed))
    return visible / np.array([obj.mask.sum() for obj in placed]).clip(min=1)


def _tight_box(obj: _Placed) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(obj.mask)
    return obj.x + int(xs.min()), obj.y + int(ys.min()), obj.x + int(xs.max()) + 1, obj.y + int(ys.max()) + 1


# ---- objects -------------------------------------------------------------------------------------------


def _place_object(
    rng: np.random.Generator, owner: np.ndarray, placed: list[_Placed], config: SceneConfig
) -> _Placed | None:
    """Pick a shape and a position that leaves every earlier object visible enough; None if none found."""
    height, width = owner.shape
    full = np.array([obj.mask.sum() for obj in placed], np.int64)  # (G',)
    visible = np.bincount(owner[owner >= 0], minlength=len(placed))  # (G',)
    max_covered = _MAX_COVERED if config.occlusion else 0.0
    for _ in range(_SHAPE_TRIES):
        label = int(rng.integers(1, len(CLASS_NAMES)))
        w, h = _sample_size(rng, config, min(width, height))
        mask = _shape_mask(rng, label, w, h)
        for _ in range(_PLACEMENT_TRIES):
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            under = owner[y : y + h, x : x + w][mask]
            covered = np.bincount(under[under >= 0], minlength=len(placed))
            if np.all(visible - covered >= (1.0 - max_covered) * full):
                return _Placed(label=label, x=x, y=y, mask=mask)
    return None


def _sample_size(rng: np.random.Generator, config: SceneConfig, shorter: int) -> tuple[int, int]:
    """(w, h): longer side log-uniform in [min_box * ratio, largest], w/h log-uniform in the aspect range."""
    largest = max(config.min_box, int(config.max_box_frac * shorter))
    log_aspect = rng.uniform(-math.log(config.max_aspect), math.log(config.max_aspect))
    ratio = min(math.exp(abs(log_aspect)), largest / config.min_box)
    longer = math.exp(rng.uniform(math.log(config.min_box * ratio), math.log(largest)))
    long_px = min(largest, round(longer))
    short_px = max(config.min_box, round(longer / ratio))
    return (long_px, short_px) if log_aspect >= 0 else (short_px, long_px)


def _shape_mask(rng: np.random.Generator, label: int, w: int, h: int) -> np.ndarray:
    """The shape of class ``label`` stretched into a (h, w) crop, drawn without antialiasing: (h, w) bool."""
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    name = CLASS_NAMES[label]
    if name == "ellipse":
        draw.ellipse((0, 0, w - 1, h - 1), fill=255)
    elif name == "rectangle":
        draw.rectangle((0, 0, w - 1, h - 1), fill=255)
    elif name == "triangle":
        draw.polygon(_triangle(rng, w, h), fill=255)
    elif name == "cross":
        tx, ty = (max(2, round(side * rng.uniform(0.22, 0.4))) for side in (w, h))
        cx, cy = round((w - tx) * rng.uniform(0.3, 0.7)), round((h - ty) * rng.uniform(0.3, 0.7))
        draw.rectangle((cx, 0, cx + tx - 1, h - 1), fill=255)
        draw.rectangle((0, cy, w - 1, cy + ty - 1), fill=255)
    elif name == "ring":
        f = rng.uniform(0.12, 0.28)
        tx, ty = max(2, round(w * f)), max(2, round(h * f))
        draw.ellipse((0, 0, w - 1, h - 1), fill=255)
        draw.ellipse((tx, ty, w - 1 - tx, h - 1 - ty), fill=0)
    else:  # pragma: no cover - CLASS_NAMES and this function change together
        raise AssertionError(name)
    return np.asarray(canvas) > 0


def _triangle(rng: np.random.Generator, w: int, h: int) -> list[tuple[int, int]]:
    """A triangle with its base on one side of the crop and its apex anywhere on the opposite side."""
    side = int(rng.integers(0, 4))  # apex up, down, left, right
    along = rng.uniform(0.0, 1.0)
    ax, ay = round(along * (w - 1)), round(along * (h - 1))
    if side == 0:
        return [(ax, 0), (0, h - 1), (w - 1, h - 1)]
    if side == 1:
        return [(ax, h - 1), (0, 0), (w - 1, 0)]
    if side == 2:
        return [(0, ay), (w - 1, 0), (w - 1, h - 1)]
    return [(w - 1, ay), (0, 0), (0, h - 1)]


def _paint_object(rng: np.random.Generator, image: np.ndarray, obj: _Placed, texture: bool) -> None:
    """Fill the object's pixels in ``image`` (in place) with a colour that contrasts with what lies under."""
    h, w = obj.mask.shape
    crop = image[obj.y : obj.y + h, obj.x : obj.x + w]  # (h, w, 3) view
    under = crop[obj.mask].astype(np.int64).sum(0) // int(obj.mask.sum())  # mean colour under the object
    min_contrast = 150 if rng.uniform() < 0.9 else 60  # L1 over RGB; now and then a faint object
    colour = _contrasting_colour(rng, under, min_contrast).astype(np.int16)
    fill = np.broadcast_to(colour, (h, w, 3))  # (h, w, 3) int16
    if texture:
        kind = int(rng.integers(0, 6))  # half solid; stripes, shading, speckle
        if kind == 3:
            other = np.clip(colour + rng.integers(-70, 71, 3, dtype=np.int16), 0, 255)
            fill = np.where(_stripe_field(rng, h, w, 3, 12)[..., None] > 0.5, other, fill)
        elif kind == 4:
            shade = (0.6 + 0.4 * _gradient_field(rng, h, w)).astype(np.float32)
            fill = (fill * shade[..., None]).astype(np.int16)
        elif kind == 5:
            fill = fill + rng.integers(-25, 26, (h, w, 1), dtype=np.int16)
        if rng.uniform() < 0.3:
            fill = np.where(_edge(obj.mask)[..., None], fill // 3, fill)
    crop[obj.mask] = np.clip(fill[obj.mask], 0, 255).astype(np.uint8)


def _contrasting_colour(rng: np.random.Generator, under: np.ndarray, min_contrast: int) -> np.ndarray:
    """A random RGB colour at least ``min_contrast`` (L1) from ``under``, or the farthest of a few tries."""
    best, best_distance = under, -1
    for _ in range(_COLOUR_TRIES):
        colour = rng.integers(0, 256, 3)
        distance = int(np.abs(colour - under).sum())
        if distance > best_distance:
            best, best_distance = colour, distance
        if distance >= min_contrast:
            break
    return best


def _edge(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` (h, w) with a 4-neighbour outside it (the crop's border counts as outside)."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


# ---- backgrounds and clutter ---------------------------------------------------------------------------


def _background(rng: np.random.Generator, height: int, width: int, texture: bool) -> np.ndarray:
    """A (H, W, 3) uint8 background: a pattern between two colours of random contrast, plus noise."""
    c0 = rng.integers(0, 256, 3)
    if not texture:
        return np.broadcast_to(c0, (height, width, 3)).astype(np.uint8)
    c1 = c0 + (rng.integers(0, 256, 3) - c0) * rng.uniform(0.15, 1.0)
    c0, c1 = c0.astype(np.float32), c1.astype(np.float32)
    kind = int(rng.integers(0, 5))
    if kind == 0:
        field = _gradient_field(rng, height, width)
    elif kind == 1:
        field = _stripe_field(rng, height, width, 6, 48)
    elif kind == 2:
        field = _blotch_field(rng, height, width)
    elif kind == 3:
        cell = int(rng.integers(8, 64))
        field = (np.arange(height)[:, None] // cell + np.arange(width)[None, :] // cell) % 2
    else:
        field = np.zeros((height, width))
    field = field.astype(np.float32)  # (H, W)
    image = np.rint(c0 + field[..., None] * (c1 - c0)).astype(np.int16)  # (H, W, 3)
    amplitude = int(rng.integers(0, 31))
    if amplitude:
        channels = 3 if rng.uniform() < 0.5 else 1
        image += rng.integers(-amplitude, amplitude + 1, (height, width, channels), dtype=np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def _gradient_field(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W) float in [0, 1], linear along a random integer direction."""
    dx, dy = _DIRECTIONS[int(rng.integers(0, len(_DIRECTIONS)))]
    sign = 1 if rng.uniform() < 0.5 else -1
    v = sign * (np.arange(width)[None, :] * dx + np.arange(height)[:, None] * dy)  # (H, W) int
    return (v - v.min()) / max(1, int(v.max() - v.min()))


def _stripe_field(rng: np.random.Generator, height: int, width: int, lo: int, hi: int) -> np.ndarray:
    """(H, W) float in [0, 1]: hard or soft (triangle-wave) stripes with a period in [lo, hi)."""
    dx, dy = _DIRECTIONS[int(rng.integers(0, len(_DIRECTIONS)))]
    period = int(rng.integers(lo, hi))
    phase = (np.arange(width)[None, :] * dx + np.arange(height)[:, None] * dy + int(rng.integers(0, period)))
    phase = phase % period  # (H, W) int in [0, period)
    if rng.uniform() < 0.5:
        return (phase < period * rng.uniform(0.3, 0.7)).astype(float)
    return np.abs(2.0 * phase / period - 1.0)


def _blotch_field(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W) float in [0, 1]: a coarse random grid smoothly upsampled (soft blotches)."""
    grid = rng.integers(0, 256, (int(rng.integers(2, 9)), int(rng.integers(2, 9)))).astype(np.uint8)
    smooth = Image.fromarray(grid, "L").resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(smooth) / 255.0


def _draw_clutter(
    rng: np.random.Generator, image: np.ndarray, count: int, min_box: int, lines_only: bool
) -> np.ndarray:
    """Draw ``count`` unlabelled marks: thin lines and scribbles, and unless ``lines_only`` specks and blobs
    smaller than ``min_box``. Returns a new (H, W, 3) uint8 array."""
    if count == 0:
        return image
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    height, width = image.shape[:2]
    small = max(2, int(0.6 * min_box))  # specks and blobs stay well under an object's size
    for _ in range(count):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = 0 if lines_only else int(rng.integers(0, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if kind == 0:  # a line or a scribble of 2-4 points, 1-3 px wide
            points = [(x, y)]
            for _ in range(int(rng.integers(1, 4))):
                step = rng.integers(-min(width, height) // 3, min(width, height) // 3 + 1, 2)
                points.append((points[-1][0] + int(step[0]), points[-1][1] + int(step[1])))
            draw.line(points, fill=colour, width=int(rng.integers(1, 4)))
        elif kind == 1:  # a speck
            dx, dy = (int(v) for v in rng.integers(1, small + 1, 2))
            draw.ellipse((x, y, x + dx, y + dy), fill=colour)
        else:  # an irregular blob
            offsets = rng.integers(-small // 2, small // 2 + 1, (int(rng.integers(4, 8)), 2))
            draw.polygon([(x + int(a), y + int(b)) for a, b in offsets], fill=colour)
    return np.asarray(canvas).copy()
