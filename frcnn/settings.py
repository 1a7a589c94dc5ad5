"""Every knob of Faster R-CNN, as frozen (hashable) dataclasses, with the paper's defaults.

Ren, He, Girshick, Sun, "Faster R-CNN: Towards Real-Time Object Detection with Region Proposal
Networks" (NeurIPS 2015). Field names follow torchvision's (``fg_iou_thresh``, ``batch_size_per_image``,
``positive_fraction``, ``pre_nms_top_n`` ...), so a reader of either finds the same words.

The tree has four sections; every field is addressed by a flat key ``"<section>.<field>"``
(``"rpn.nms_thresh"``, ``"anchors.sizes"``, ``"roi.score_thresh"``). Flat keys carry settings in URLs and
on the CLI (``--set rpn.nms_thresh=0.5``). A Settings object can only hold valid values: every section
checks itself when it is built and raises :class:`~frcnn.errors.FrcnnError` with a one-line message.

Units: sizes and strides are pixels of the network's input (the image after the resize of ``input``).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from frcnn.errors import FrcnnError

POOL_OPS = ("roi_pool", "roi_align")


ECHO_CHARS = 40  # characters of a value from outside (a URL, --set) repeated in a message at most


def shown(value: Any) -> str:
    """``repr`` of a value from outside, cut to :data:`ECHO_CHARS` characters: a 100 KB URL value is not echoed."""
    text = repr(value)
    return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + "...'"


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise FrcnnError(f"{key}: {message}")


def _check_range(value: float, key: str, lo: float, hi: float) -> None:
    _check(math.isfinite(value) and lo <= value <= hi, key, f"{value!r} is out of range [{lo:g}, {hi:g}]")


@dataclass(frozen=True)
class InputSettings:
    """How the image is resized before the backbone (torchvision's GeneralizedRCNNTransform)."""

    min_size: int = 600  # shorter side after resize, px (paper: 600; torchvision COCO models: 800)
    max_size: int = 1000  # longer side is capped at this, px (paper: 1000; torchvision: 1333)

    def __post_init__(self) -> None:
        _check_range(self.min_size, "input.min_size", 32, 2048)
        _check_range(self.max_size, "input.max_size", 32, 4096)
        _check(self.max_size >= self.min_size, "input.max_size",
               f"{self.max_size} is below input.min_size {self.min_size}")


@dataclass(frozen=True)
class AnchorSettings:
    """The k = len(sizes) * len(ratios) reference boxes at every feature-map location.

    ``sizes`` are sqrt(area) in px (the paper's scales 8, 16, 32 on a 16-px base = 128, 256, 512);
    ``ratios`` are height / width (torchvision's ``aspect_ratios``); ``stride`` is the distance between
    anchor centres in px. For a multi-level (FPN) model the sizes are split evenly over the levels.
    """

    sizes: tuple[float, ...] = (128.0, 256.0, 512.0)  # sqrt(w * h) px
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # h / w
    stride: int = 16  # px between anchor centres (the backbone's total stride)

    def __post_init__(self) -> None:
        _check(len(self.sizes) > 0, "anchors.sizes", "needs at least one size")
        _check(len(self.ratios) > 0, "anchors.ratios", "needs at least one ratio")
        _check(len(self.sizes) <= 16, "anchors.sizes", "at most 16 sizes")
        _check(len(self.ratios) <= 16, "anchors.ratios", "at most 16 ratios")
        for s in self.sizes:
            _check(math.isfinite(s) and 1 <= s <= 4096, "anchors.sizes", f"{s!r} must be in [1, 4096] px")
        for r in self.ratios:
            _check(math.isfinite(r) and 0.01 <= r <= 100, "anchors.ratios", f"{r!r} must be in [0.01, 100]")
        _check_range(self.stride, "anchors.stride", 1, 256)

    @property
    def num_per_location(self) -> int:
        return len(self.sizes) * len(self.ratios)


@dataclass(frozen=True)
class RPNSettings:
    """Anchor targets (labels and the balanced minibatch) and the proposal layer."""

    # anchor targets
    fg_iou_thresh: float = 0.7  # IoU >= this with some GT box: positive
    bg_iou_thresh: float = 0.3  # IoU < this with every GT box: negative; in between: ignored
    allow_low_quality_matches: bool = True  # each GT box's best anchor(s) positive even below fg_iou_thresh
    ignore_cross_boundary: bool = True  # paper: anchors crossing the image border are ignored in training
    batch_size_per_image: int = 256  # anchors in the minibatch
    positive_fraction: float = 0.5  # at most this share of the minibatch positive
    sample_seed: int = 0  # seed of the minibatch draw, so a trace is repeatable
    # proposals
    pre_nms_top_n: int = 6000  # top-scoring boxes kept before NMS (per FPN level)
    nms_thresh: float = 0.7  # NMS IoU
    post_nms_top_n: int = 300  # proposals kept after NMS (paper: 300 at test time, 2000 in training)
    min_size: float = 16.0  # proposals with a side below this (px) are dropped
    score_thresh: float = 0.0  # proposals with objectness below this are dropped
    # proposals in training (torchvision's pre/post_nms_top_n["training"]): the paper's code 12000 -> 2000
    pre_nms_top_n_train: int = 12000  # per FPN level
    post_nms_top_n_train: int = 2000

    def __post_init__(self) -> None:
        _check_range(self.fg_iou_thresh, "rpn.fg_iou_thresh", 0.0, 1.0)
        _check_range(self.bg_iou_thresh, "rpn.bg_iou_thresh", 0.0, 1.0)
        _check(self.bg_iou_thresh <= self.fg_iou_thresh, "rpn.bg_iou_thresh",
               f"{self.bg_iou_thresh} is above rpn.fg_iou_thresh {self.fg_iou_thresh}")
        _check_range(self.batch_size_per_image, "rpn.batch_size_per_image", 1, 100_000)
        _check_range(self.positive_fraction, "rpn.positive_fraction", 0.0, 1.0)
        _check_range(self.sample_seed, "rpn.sample_seed", 0, 2**31 - 1)
        _check_range(self.pre_nms_top_n, "rpn.pre_nms_top_n", 1, 200_000)
        _check_range(self.post_nms_top_n, "rpn.post_nms_top_n", 1, 200_000)
        _check(self.post_nms_top_n <= self.pre_nms_top_n, "rpn.post_nms_top_n",
               f"{self.post_nms_top_n} is above rpn.pre_nms_top_n {self.pre_nms_top_n}")
        _check_range(self.pre_nms_top_n_train, "rpn.pre_nms_top_n_train", 1, 200_000)
        _check_range(self.post_nms_top_n_train, "rpn.post_nms_top_n_train", 1, 200_000)
        _check(self.post_nms_top_n_train <= self.pre_nms_top_n_train, "rpn.post_nms_top_n_train",
               f"{self.post_nms_top_n_train} is above rpn.pre_nms_top_n_train {self.pre_nms_top_n_train}")
        _check_range(self.nms_thresh, "rpn.nms_thresh", 0.0, 1.0)
        _check_range(self.min_size, "rpn.min_size", 0.0, 4096.0)
        _check_range(self.score_thresh, "rpn.score_thresh", 0.0, 1.0)


@dataclass(frozen=True)
class RoISettings:
    """RoI sampling, RoI pooling, and the detection post-processing of the Fast R-CNN head."""

    # RoI sampling (training targets)
    fg_iou_thresh: float = 0.5  # IoU >= this with a GT box: foreground, labelled with its class
    bg_iou_thresh_hi: float = 0.5  # background IoU range is [bg_iou_thresh_lo, bg_iou_thresh_hi)
    bg_iou_thresh_lo: float = 0.1  # below it: ignored (paper / py-faster-rcnn: 0.1)
    batch_size_per_image: int = 128  # RoIs in the minibatch
    positive_fraction: float = 0.25  # at most this share foreground
    sample_seed: int = 0
    # RoI pooling
    pool: str = "roi_pool"  # "roi_pool" (the paper, quantised) or "roi_align" (Mask R-CNN, bilinear)
    output_size: int = 7  # pooled grid is output_size x output_size
    sampling_ratio: int = 2  # RoIAlign samples per bin side (<= 0: adaptive)
    # detections
    score_thresh: float = 0.05  # class score below this: dropped
    nms_thresh: float = 0.3  # per-class NMS IoU
    detections_per_img: int = 100  # top-K kept

    def __post_init__(self) -> None:
        _check_range(self.fg_iou_thresh, "roi.fg_iou_thresh", 0.0, 1.0)
        _check_range(self.bg_iou_thresh_hi, "roi.bg_iou_thresh_hi", 0.0, 1.0)
        _check_range(self.bg_iou_thresh_lo, "roi.bg_iou_thresh_lo", 0.0, 1.0)
        _check(self.bg_iou_thresh_lo <= self.bg_iou_thresh_hi, "roi.bg_iou_thresh_lo",
               f"{self.bg_iou_thresh_lo} is above roi.bg_iou_thresh_hi {self.bg_iou_thresh_hi}")
        _check(self.bg_iou_thresh_hi <= self.fg_iou_thresh, "roi.bg_iou_thresh_hi",
               f"{self.bg_iou_thresh_hi} is above roi.fg_iou_thresh {self.fg_iou_thresh}")
        _check_range(self.batch_size_per_image, "roi.batch_size_per_image", 1, 100_000)
        _check_range(self.positive_fraction, "roi.positive_fraction", 0.0, 1.0)
        _check_range(self.sample_seed, "roi.sample_seed", 0, 2**31 - 1)
        _check(self.pool in POOL_OPS, "roi.pool", f"{shown(self.pool)} is not one of {', '.join(POOL_OPS)}")
        _check_range(self.output_size, "roi.output_size", 1, 32)
        _check_range(self.sampling_ratio, "roi.sampling_ratio", -1, 16)
        _check_range(self.score_thresh, "roi.score_thresh", 0.0, 1.0)
        _check_range(self.nms_thresh, "roi.nms_thresh", 0.0, 1.0)
        _check_range(self.detections_per_img, "roi.detections_per_img", 1, 10_000)


@dataclass(frozen=True)
class Settings:
    """The whole tree. ``Settings()`` is the paper's configuration."""

    input: InputSettings = field(default_factory=InputSettings)
    anchors: AnchorSettings = field(default_factory=AnchorSettings)
    rpn: RPNSettings = field(default_factory=RPNSettings)
    roi: RoISettings = field(default_factory=RoISettings)

    def get(self, key: str) -> Any:
        section, name = _split_key(key)
        return getattr(getattr(self, section), name)

    def replace(self, values: Mapping[str, Any]) -> Settings:
        """A copy with the flat keys changed; strings are parsed by the field's type."""
        by_section: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            section, name = _split_key(key)
            by_section.setdefault(section, {})[name] = parse_value(key, value)
        changed = {s: dataclasses.replace(getattr(self, s), **u) for s, u in by_section.items()}
        return dataclasses.replace(self, **changed)

    def to_flat(self) -> dict[str, Any]:
        """``{"input.min_size": 600, ..., "anchors.sizes": (128.0, 256.0, 512.0), ...}``."""
        return {key: self.get(key) for key in flat_keys()}

    @classmethod
    def from_flat(cls, values: Mapping[str, Any], base: Settings | None = None) -> Settings:
        return (base or cls()).replace(values)

    def diff(self, other: Settings) -> dict[str, tuple[Any, Any]]:
        """Flat keys whose values differ: ``{key: (self's, other's)}``."""
        a, b = self.to_flat(), other.to_flat()
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}

    def select(self, keys: Iterable[str]) -> tuple[tuple[str, Any], ...]:
        """The values of some flat keys, as a hashable cache key."""
        return tuple((k, self.get(k)) for k in keys)


_SECTION_TYPES = {"input": InputSettings, "anchors": AnchorSettings, "rpn": RPNSettings, "roi": RoISettings}


def flat_keys() -> list[str]:
    """Every flat key, in tree order."""
    return [f"{s}.{f.name}" for s, cls in _SECTION_TYPES.items() for f in fields(cls)]


def _split_key(key: str) -> tuple[str, str]:
    section, _, name = str(key).partition(".")
    cls = _SECTION_TYPES.get(section)
    if cls is None or name not in {f.name for f in fields(cls)}:
        raise FrcnnError(f"unknown setting {shown(key)} (keys look like rpn.nms_thresh; "
                         "`python -m frcnn keys` lists them)")
    return section, name


def field_type(key: str) -> Any:
    section, name = _split_key(key)
    hints = typing.get_type_hints(_SECTION_TYPES[section])
    return hints[name]


def parse_assignments(items: Iterable[str], where: str) -> dict[str, str]:
    """``["rpn.nms_thresh=0.5", ...]`` -> ``{"rpn.nms_thresh": "0.5", ...}`` (the CLI's --set, the Compare
    page's lines); values stay text for :meth:`Settings.replace` to parse. ``where`` starts the error line."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FrcnnError(f"{where} {shown(item)}: expected KEY=VALUE, e.g. rpn.nms_thresh=0.5")
        out[key.strip()] = value.strip()
    return out


def parse_value(key: str, value: Any) -> Any:
    """Convert ``value`` (a string from a URL or the CLI, or a Python value) to ``key``'s type.

    Tuples accept "128,256,512" or a sequence; bools accept true/false/1/0/yes/no/on/off.
    """
    kind = field_type(key)
    try:
        if kind is bool:
            return _parse_bool(value)
        if kind is int:
            return _parse_int(value)
        if kind is float:
            return _parse_float(value)
        if kind is str:
            if not isinstance(value, str):
                raise ValueError("expected text")
            return value.strip()
        # tuple[float, ...]
        items = value.replace(" ", "").strip("()[]").split(",") if isinstance(value, str) else list(value)
        items = [i for i in items if i != ""]
        return tuple(_parse_float(i) for i in items)
    except (TypeError, ValueError) as exc:
        reason = str(exc) if len(str(exc)) <= 60 else type(exc).__name__
        raise FrcnnError(f"{key}: cannot read {shown(value)} ({reason})") from None


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    if isinstance(value, int):
        return value
    number = float(value)
    if not math.isfinite(number) or number != int(number):
        raise ValueError("expected a whole number")
    return int(number)


def _parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


PAPER = Settings()
"""The paper's configuration (VGG-16, shorter side 600)."""

TORCHVISION_COCO = Settings(
    input=InputSettings(min_size=800, max_size=1333),
    anchors=AnchorSettings(sizes=(32.0, 64.0, 128.0, 256.0, 512.0), ratios=(0.5, 1.0, 2.0), stride=16),
    rpn=RPNSettings(ignore_cross_boundary=False, pre_nms_top_n=1000, post_nms_top_n=1000, min_size=1e-3,
                    pre_nms_top_n_train=2000, post_nms_top_n_train=2000),
    roi=RoISettings(bg_iou_thresh_lo=0.0, pool="roi_align", score_thresh=0.05, nms_thresh=0.5),
)
"""torchvision's COCO detectors' own test-time configuration (one anchor size per FPN level)."""
