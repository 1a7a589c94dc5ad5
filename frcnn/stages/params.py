"""Each stage's own parameters: a small frozen record built from :class:`~frcnn.settings.Settings`.

A stage function receives its record and nothing else of the settings, and the tracer's cache key of the
stage hashes that record; so a stage cannot read a setting its key does not cover (the record has no such
field), and a setting outside the record never invalidates the stage. A record's fields are named as the
settings' fields they copy (``ProposalParams.nms_thresh`` is ``rpn.nms_thresh``), in one section.

The stage functions also accept a whole settings section (``RPNSettings`` ...) and pick their record out
of it (:meth:`StageParams.coerce`), so a caller with a section in hand need not build the record.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from frcnn.settings import Settings

P = TypeVar("P", bound="StageParams")


@dataclass(frozen=True)
class StageParams:
    """Base of the records: ``SECTION`` names the settings section every field is read from."""

    SECTION: ClassVar[str] = ""

    @classmethod
    def from_settings(cls: type[P], settings: Settings) -> P:
        section = getattr(settings, cls.SECTION) if cls.SECTION else None
        return cls(**{f.name: getattr(section, f.name) for f in fields(cls)})

    @classmethod
    def coerce(cls: type[P], value: Any) -> P:
        """The record itself, or the record's fields picked from ``Settings`` or from a settings section."""
        if isinstance(value, cls):
            return value
        if isinstance(value, Settings):
            return cls.from_settings(value)
        return cls(**{f.name: getattr(value, f.name) for f in fields(cls)})

    @classmethod
    def flat_keys(cls) -> tuple[str, ...]:
        """The flat settings keys the record holds (``"rpn.nms_thresh"`` ...)."""
        return tuple(f"{cls.SECTION}.{f.name}" for f in fields(cls))

    def replace(self: P, **changes: Any) -> P:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class NoParams(StageParams):
    """A stage the settings do not reach (the backbone, the RPN head: the trained module decides)."""


@dataclass(frozen=True)
class PreprocessParams(StageParams):
    SECTION: ClassVar[str] = "input"
    min_size: int  # shorter side after the resize, px
    max_size: int  # longer side at most, px


@dataclass(frozen=True)
class AnchorParams(StageParams):
    SECTION: ClassVar[str] = "anchors"
    sizes: tuple[float, ...]  # sqrt(w * h) px
    ratios: tuple[float, ...]  # h / w
    stride: int  # px between anchor centres


@dataclass(frozen=True)
class _MinibatchParams(StageParams):
    """The balanced minibatch draw both target stages make (anchors for the RPN, RoIs for the head)."""

    batch_size_per_image: int
    positive_fraction: float  # at most this share positive
    sample_seed: int


@dataclass(frozen=True)
class AnchorTargetParams(_MinibatchParams):
    """Anchor labels (positive, negative, ignored) by IoU with the ground truth, then the RPN's minibatch."""

    SECTION: ClassVar[str] = "rpn"
    fg_iou_thresh: float
    bg_iou_thresh: float
    allow_low_quality_matches: bool
    ignore_cross_boundary: bool


@dataclass(frozen=True)
class ProposalParams(StageParams):
    """The proposal layer, with the top-N counts of both modes (torchvision's ``pre_nms_top_n`` dict,
    Detectron2's ``PRE_NMS_TOPK_TRAIN`` / ``_TEST``); :meth:`top_n` picks by the train switch."""

    SECTION: ClassVar[str] = "rpn"
    pre_nms_top_n: int
    nms_thresh: float
    post_nms_top_n: int
    min_size: float
    score_thresh: float
    pre_nms_top_n_train: int
    post_nms_top_n_train: int

    def top_n(self, training: bool) -> tuple[int, int]:
        """(pre-NMS top-N per level, post-NMS top-N) for training or for test time."""
        if training:
            return self.pre_nms_top_n_train, self.post_nms_top_n_train
        return self.pre_nms_top_n, self.post_nms_top_n


@dataclass(frozen=True)
class RoITargetParams(_MinibatchParams):
    """RoI labels (a class, background, or ignored below ``bg_iou_thresh_lo``), then the head's minibatch."""

    SECTION: ClassVar[str] = "roi"
    fg_iou_thresh: float
    bg_iou_thresh_hi: float
    bg_iou_thresh_lo: float


@dataclass(frozen=True)
class HeadPoolParams(StageParams):
    """How the box head's RoIs are pooled where the head must have its trained size (the losses' RoIs)."""

    SECTION: ClassVar[str] = "roi"
    pool: str  # "roi_pool" | "roi_align"
    sampling_ratio: int  # RoIAlign's samples per bin side


@dataclass(frozen=True)
class PoolParams(HeadPoolParams):
    """RoI pooling as the pages ask for it: also the grid's size."""

    output_size: int  # S of the S x S grid


@dataclass(frozen=True)
class DetectionParams(StageParams):
    """Per-class post-processing of the box head's scores and boxes."""

    SECTION: ClassVar[str] = "roi"
    score_thresh: float  # class score at or below this: dropped
    nms_thresh: float  # per-class NMS IoU
    detections_per_img: int  # top-K kept
