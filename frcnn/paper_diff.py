"""This model against the paper: one table of every place where a model's defaults, or torchvision's conventions
that every model here follows, depart from Ren et al. 2015 (Faster R-CNN), each with its reason.

:data:`TABLE` holds one :class:`Departure` per place: the stage (page) it concerns, the flat settings key (as in
:func:`frcnn.settings.flat_keys`) or the name of a convention, the paper's value, a function giving this model's
value from the settings and the model's facts (:class:`PaperFacts`), and the reason. :func:`departures` turns it
into the rows that differ for one model with its current settings; nothing is written per page, and a setting
equal to the paper's makes no row. The paper's values of settings are :data:`frcnn.settings.PAPER`'s, never a
second copy. A setting the table has no entry for still makes a row when it differs from the paper (a user's
change, or a model default without a recorded reason): it is generated from the settings too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from frcnn.settings import PAPER, Settings, flat_keys
from frcnn.stages.anchors import make_anchors
from frcnn.stages.losses import SMOOTH_L1_BETA
from frcnn.stages.preprocess import SIZE_DIVISIBLE

# the stages as the pages name them
BACKBONE, ANCHORS, ANCHOR_TARGETS, PROPOSALS, ROI, DETECTIONS, LOSSES = (
    "Backbone", "Anchors", "Anchor targets", "RPN proposals", "RoI", "Detections", "Losses")
STAGES = (BACKBONE, ANCHORS, ANCHOR_TARGETS, PROPOSALS, ROI, DETECTIONS, LOSSES)

PAPER_STRIDE = 16  # VGG-16 conv5_3, the paper's one feature map
PAPER_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)  # eq. 2's t, unscaled
PAPER_TARGET_STDS = (0.1, 0.1, 0.2, 0.2)  # py-faster-rcnn's BBOX_NORMALIZE_STDS for the head's targets
PAPER_SMOOTH_L1_BETA = 1.0  # Fast R-CNN's smooth L1: quadratic for |x| < 1
PAPER_LAMBDA, PAPER_N_CLS, PAPER_N_REG = 10.0, 256, 2400  # eq. 1: lambda, minibatch size, ~anchor locations


@dataclass(frozen=True)
class PaperFacts:
    """What the table needs of a model besides its settings (``facts_of`` reads them from a loaded Detector)."""

    name: str
    defaults: Settings  # the model's own settings
    strides: tuple[int, ...]  # of the feature maps the RPN uses, one per level
    head_box_weights: tuple[float, ...]  # the Fast R-CNN head's BoxCoder weights
    rpn_box_weights: tuple[float, ...]  # the RPN's BoxCoder weights (as this project's anchor targets encode)
    size_divisible: int = SIZE_DIVISIBLE
    smooth_l1_beta: float = SMOOTH_L1_BETA


def facts_of(detector) -> PaperFacts:  # noqa: ANN001 - a frcnn.models.Detector (imported lazily: no cycle)
    """The facts of a loaded model: its strides (one small pass of its backbone, cached per model), and the box
    coders' weights the stages encode and decode with (torchvision's, as the model's own ``box_coder`` holds)."""
    from frcnn import budget
    from frcnn.stages.anchor_targets import RPN_BOX_WEIGHTS
    from frcnn.stages.roi_targets import ROI_BOX_WEIGHTS

    return PaperFacts(detector.name, detector.defaults, budget.facts_of(detector).strides,
                      tuple(float(w) for w in ROI_BOX_WEIGHTS), tuple(float(w) for w in RPN_BOX_WEIGHTS))


def shown(value: Any) -> str:
    """A value for a reader: bools as on / off, floats without trailing zeros, tuples comma-separated."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ", ".join(shown(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class Departure:
    """One place where a model may depart from the paper. ``paper`` and ``this`` give the two values (compared to
    decide whether the place makes a row), ``show`` writes a value for a reader; ``why`` gives a model's own
    reason (by model name) where it has one, else ``reason`` holds."""

    stage: str
    key: str  # a flat settings key, or a convention's name ("convention.anchor_centre")
    paper: Callable[[Settings, PaperFacts], Any]
    this: Callable[[Settings, PaperFacts], Any]
    reason: str
    why: tuple[tuple[str, str], ...] = ()
    show: Callable[[Any], str] = shown

    @property
    def is_setting(self) -> bool:
        return self.key in _KEYS


@dataclass(frozen=True)
class Row:
    """One departure of one model with its settings, as a page shows it."""

    stage: str
    key: str
    paper: str
    this: str
    reason: str
    is_setting: bool


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9)
    return a == b


_KEYS = frozenset(flat_keys())
_COCO = ("resnet50_fpn_v2", "mobilenet_v3_fpn")


def _for_coco(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, text) for name in _COCO)


def _setting(stage: str, key: str, reason: str, why: tuple[tuple[str, str], ...] = (),
             show: Callable[[Any], str] = shown) -> Departure:
    return Departure(stage, key, lambda s, f: PAPER.get(key), lambda s, f: s.get(key), reason, why, show)


def _sizes(value: tuple[float, ...]) -> str:
    return f"{shown(value)} px ({len(value)} sizes)"


def _centre_offset(stride: int) -> float:
    """Where this project's anchors (torchvision's AnchorGenerator) centre the location (0, 0): the centre of its
    first anchor, in network-input px."""
    a = make_anchors(((float(stride),),), (1.0,), ((1, 1),), (stride,), (stride, stride))
    box = a.boxes[0]
    return float((box[0] + box[2]) / 2)


def _stride_of(s: Settings, f: PaperFacts) -> int:
    """The anchors' stride: the settings' on a single map (the Anchors page draws any), the finest level's on a
    pyramid (whose levels keep the backbone's strides)."""
    return int(s.anchors.stride) if len(f.strides) == 1 else f.strides[0]


def _centres(offset: float, stride: int) -> str:
    return f"({offset:g} + {stride} j, {offset:g} + {stride} i) px" if offset else f"({stride} j, {stride} i) px"


def _strides(value: tuple[int, ...]) -> str:
    if len(value) == 1:
        return f"{value[0]} px (one feature map)"
    return f"{shown(value)} px (a feature pyramid of {len(value)} levels)"


DEFAULT_INPUT = ("default", "The synthetic scenes are 320-640 px a side: the model trained with the shorter side "
                            "drawn from 448-576 px, and the shipped checkpoint tests at 576 (longer side at most "
                            "1152), chosen on 100 validation scenes (docs/model_card.md).")
COCO_INPUT = ("torchvision's COCO detectors train and test with the shorter side at 800 px, the longer at most "
              "1333 (Detectron's sizes for COCO).")

TABLE: tuple[Departure, ...] = (
    # ------------------------------------------------------------------------------------------- backbone
    Departure(BACKBONE, "convention.stride", lambda s, f: (PAPER_STRIDE,), lambda s, f: f.strides,
              "The paper's one feature map is VGG-16's conv5_3, 16 input px between neighbouring cells.",
              (("default", "The synthetic scenes hold objects down to 16 px, which at stride 16 cover one or two "
                           "cells; the light trunk stops at stride 8 (dilated convs widen its receptive field "
                           "instead)."),
               *_for_coco("A feature pyramid (FPN, Lin et al. 2017), not this paper: one map per scale, small "
                          "anchors on the fine levels, large ones on the coarse.")), _strides),
    Departure(BACKBONE, "convention.size_divisible", lambda s, f: 1, lambda s, f: f.size_divisible,
              "torchvision pads every input to a multiple of 32 px (size_divisible) before the backbone, so a map "
              "has ceil(32 ceil(W/32) / s) cells along a W-px side, not ceil(W / s): a 690-px side is padded to 704 "
              "and gives 88 columns at stride 8, not 87. The paper's Caffe code does not pad.",
              show=lambda v: "no padding" if v == 1 else f"padded to a multiple of {v} px"),
    _setting(BACKBONE, "input.min_size", "The shorter side the image is resized to (the paper: 600 px).",
             (DEFAULT_INPUT, *_for_coco(COCO_INPUT)), lambda v: f"{v} px"),
    _setting(BACKBONE, "input.max_size", "The longer side's cap after the resize (the paper: 1000 px).",
             (DEFAULT_INPUT, *_for_coco(COCO_INPUT)), lambda v: f"{v} px"),
    # -------------------------------------------------------------------------------------------- anchors
    _setting(ANCHORS, "anchors.sizes", "The anchors' sizes sqrt(w h) (the paper: 128, 256, 512 px, k = 9 with 3 "
                                       "ratios).",
             (("default", "10 sizes about a factor sqrt(2) apart, 16 to 362 px, times 3 ratios = 30 anchors a "
                          "location: 87% of the synthetic scenes' boxes reach IoU 0.7 with some anchor, against 47% "
                          "with the paper's factor 2 (python -m frcnn anchors)."),
              *_for_coco("torchvision's COCO sizes 32-512 px, shared over the pyramid's levels: COCO has many objects "
                         "under 128 px, which the paper's 128-512 px anchors barely overlap.")), _sizes),
    _setting(ANCHORS, "anchors.stride", "Anchors are centred on the feature map's cells: their stride is the "
                                        "backbone's.",
             (("default", "The light trunk's stride is 8 (see the Backbone row): an anchor location per cell."),)),
    Departure(ANCHORS, "convention.anchor_centre",
              lambda s, f: ((_stride_of(s, f) - 1) / 2, _stride_of(s, f)),
              lambda s, f: (_centre_offset(_stride_of(s, f)), _stride_of(s, f)),
              "The paper's code (py-faster-rcnn's generate_anchors) centres the anchors of cell (i, j) at "
              "((s-1)/2 + j s, (s-1)/2 + i s), the middle of the cell's s x s pixels; torchvision's AnchorGenerator, "
              "which every model here uses, centres them at (j s, i s), the cell's top-left corner. The two grids "
              "are (s-1)/2 px apart; a trained RPN's regression absorbs the offset, and a model must be used with "
              "the convention it was trained with.",
              show=lambda v: _centres(*v)),
    # ------------------------------------------------------------------------------------- anchor targets
    _setting(ANCHOR_TARGETS, "rpn.ignore_cross_boundary",
             "The paper ignores anchors that cross the image border in training (about 6,000 of 20,000 are left).",
             (("default", "Cross-boundary anchors are kept, as torchvision does: with the largest anchors on a "
                          "576-px image the paper's rule would leave the largest objects almost no anchor to learn "
                          "from."),
              *_for_coco("torchvision never ignores cross-boundary anchors."))),
    Departure(ANCHOR_TARGETS, "convention.rpn_box_weights", lambda s, f: PAPER_BOX_WEIGHTS,
              lambda s, f: f.rpn_box_weights, "The RPN's regression targets are eq. 2's t, unscaled."),
    # ------------------------------------------------------------------------------------------ proposals
    _setting(PROPOSALS, "rpn.pre_nms_top_n", "Boxes kept by objectness before NMS (the paper's code: 6000).",
             _for_coco("torchvision's test-time 1000 per pyramid level (up to 5 levels: at most 5000 in all).")),
    _setting(PROPOSALS, "rpn.post_nms_top_n", "Proposals kept after NMS (the paper: 300 at test time, 2000 in "
                                              "training).",
             (("default", "1000, torchvision's number: on the synthetic scenes the paper's 300 are spent on large "
                          "objects' near duplicates before the small ones come."),
              *_for_coco("torchvision's test-time 1000."))),
    _setting(PROPOSALS, "rpn.pre_nms_top_n_train", "Boxes kept by objectness before NMS in training (the paper's "
                                                   "code: 12000).",
             (("default", "2000, torchvision's number: the shipped checkpoint was trained so, and NMS over 12,000 "
                          "boxes a step cost the 2-core training machine time for no more distinct proposals."),
              *_for_coco("torchvision's 2000 per pyramid level in training."))),
    _setting(PROPOSALS, "rpn.post_nms_top_n_train", "Proposals kept after NMS in training (the paper: 2000).",
             (("default", "512: the shipped checkpoint was trained so; the RoI head samples 128 of them an image, and "
                          "on the synthetic scenes 512 proposals already hold every object many times over."),)),
    _setting(PROPOSALS, "rpn.min_size", "Proposals with a side under this are dropped (the paper's code: 16 px).",
             (("default", "8 px: the synthetic scenes hold objects from 13 px at the network's scale, whose "
                          "proposals the paper's 16 px would drop."),
              *_for_coco("torchvision's 0.001 px: only empty boxes are dropped.")), lambda v: f"{v:g} px"),
    _setting(PROPOSALS, "rpn.score_thresh", "Proposals under this objectness are dropped (the paper: none).",
             (("mobilenet_v3_fpn", "torchvision's MobileNet detector drops proposals under 0.05 objectness (fewer "
                                   "boxes through its head)."),)),
    # ------------------------------------------------------------------------------------------------ RoI
    _setting(ROI, "roi.bg_iou_thresh_lo", "Background RoIs are drawn from IoU [lo, 0.5) (the paper, as Fast "
                                          "R-CNN: [0.1, 0.5)).",
             (("default", "Background from IoU 0, as torchvision and Detectron do: the paper's [0.1, 0.5) never "
                          "shows the head the clutter far from every object, which it then has to classify at test "
                          "time."),
              *_for_coco("torchvision draws background from IoU 0 (Detectron's choice)."))),
    _setting(ROI, "roi.batch_size_per_image", "RoIs a minibatch (the paper: 128).",
             _for_coco("torchvision's 512 RoIs an image (Detectron's).")),
    _setting(ROI, "roi.pool", "RoIAlign comes from Mask R-CNN (He et al. 2017), not this paper, which pools with "
                              "RoIPool (Fast R-CNN): RoIAlign averages bilinear samples at exact positions instead "
                              "of rounding the RoI and its bins to whole cells.",
             (("default", "RoIAlign (Mask R-CNN, 2017): a 16-px object covers two stride-8 cells, which RoIPool's "
                          "rounding would quantise away."),
              *_for_coco("RoIAlign (Mask R-CNN, 2017), as every torchvision detector (MultiScaleRoIAlign)."))),
    # ----------------------------------------------------------------------------------------- detections
    Departure(DETECTIONS, "convention.head_box_weights", lambda s, f: PAPER_BOX_WEIGHTS,
              lambda s, f: f.head_box_weights,
              "torchvision's BoxCoder scales the head's targets by (10, 10, 5, 5), so the decoding divides the "
              "predicted deltas by 10 and 5. It is Fast R-CNN's normalisation of the regression targets (the "
              "paper's code divides them by their std 0.1, 0.1, 0.2, 0.2) as fixed weights: the same model, "
              "written differently.",
              show=lambda v: "(1, 1, 1, 1): eq. 2's t (targets divided by their std 0.1, 0.1, 0.2, 0.2 in the "
                             "paper's code)" if _close(v, PAPER_BOX_WEIGHTS) else f"({shown(v)})"),
    _setting(DETECTIONS, "roi.nms_thresh", "Per-class NMS IoU of the detections (the paper: 0.3).",
             _for_coco("torchvision's 0.5 for COCO.")),
    # --------------------------------------------------------------------------------------------- losses
    Departure(LOSSES, "convention.smooth_l1_beta", lambda s, f: PAPER_SMOOTH_L1_BETA,
              lambda s, f: f.smooth_l1_beta,
              "Smooth L1 is quadratic for |x| < beta and linear beyond: the paper (as Fast R-CNN) uses beta = 1; "
              "torchvision's RPN and head losses (rpn.py, roi_heads.fastrcnn_loss) use beta = 1/9, which this "
              "project's losses follow: "
              "errors above 1/9 already get the constant gradient of the L1 part.",
              show=lambda v: "1/9" if math.isclose(v, 1 / 9) else f"{v:g}"),
    Departure(LOSSES, "convention.rpn_loss_weight",
              lambda s, f: PAPER_LAMBDA / PAPER_N_REG, lambda s, f: 1.0 / s.rpn.batch_size_per_image,
              "Equation 1 is the RPN's loss: the paper divides the box term by N_reg ~ 2400 (the anchor locations of "
              "a 1000x600 image at stride 16) and weights it by lambda = 10, so that both terms weigh about the "
              "same. torchvision sums the box loss over the positives and divides it by the minibatch size "
              "(N_cls = 256) with lambda = 1: a weight of 1/256 against the paper's 10/2400 = 1/240, about 6% "
              "less, so lambda = 1 plays roughly (not exactly) the paper's lambda = 10; the paper's Table 9 finds "
              "mAP within about 1 point for lambda from 1 to 100.",
              show=lambda v: f"lambda / N_reg = {PAPER_LAMBDA:g} / {PAPER_N_REG} = {v:.5f}"
              if math.isclose(v, PAPER_LAMBDA / PAPER_N_REG) else f"lambda / N_cls = 1 / {round(1 / v)} = {v:.5f}"),
    Departure(LOSSES, "convention.head_loss",
              lambda s, f: ("Fast R-CNN's", PAPER_SMOOTH_L1_BETA), lambda s, f: ("Fast R-CNN's", f.smooth_l1_beta),
              "Equation 1 is the RPN's loss. The Fast R-CNN head is trained with Fast R-CNN's loss: L_cls(p, u) + "
              "lambda [u >= 1] L_loc(t^u, v), the log loss over K + 1 classes plus the box loss of the true class u "
              "only (none for background, u = 0), lambda = 1, averaged over the sampled RoIs. torchvision's "
              "fastrcnn_loss is that loss (the box term summed over foreground RoIs, divided by all sampled RoIs) "
              "with smooth-L1 beta = 1/9.",
              show=lambda v: f"{v[0]}: lambda = 1, [u >= 1], smooth-L1 beta = "
                             + ("1/9" if math.isclose(v[1], 1 / 9) else f"{v[1]:g}")),
)

_STAGE_OF_SECTION = {"input": BACKBONE, "anchors": ANCHORS, "roi": ROI}
_PROPOSAL_FIELDS = ("pre_nms_top_n", "nms_thresh", "post_nms_top_n", "min_size", "score_thresh",
                    "pre_nms_top_n_train", "post_nms_top_n_train")
_DETECTION_FIELDS = ("score_thresh", "nms_thresh", "detections_per_img")


def stage_of(key: str) -> str:
    """The stage (page) a flat settings key belongs to."""
    section, _, name = key.partition(".")
    if section == "rpn":
        return PROPOSALS if name in _PROPOSAL_FIELDS else ANCHOR_TARGETS
    if section == "roi" and name in _DETECTION_FIELDS:
        return DETECTIONS
    return _STAGE_OF_SECTION[section]


UNLISTED = "This model's own default; the table records no reason for it."


def _row(d: Departure, settings: Settings, facts: PaperFacts) -> Row | None:
    paper, this = d.paper(settings, facts), d.this(settings, facts)
    if _close(paper, this):
        return None
    reason = dict(d.why).get(facts.name, d.reason)
    if d.is_setting and not _close(this, facts.defaults.get(d.key)):
        reason = (f"Set in this session; {facts.name}'s own default is {d.show(facts.defaults.get(d.key))}."
                  + ("" if d.reason == UNLISTED else " " + d.reason))
    return Row(d.stage, d.key, d.show(paper), d.show(this), reason, d.is_setting)


def departures(settings: Settings, detector_or_facts: Any, stage: str | None = None) -> list[Row]:
    """The places where this model, with ``settings``, departs from the paper: the table's rows whose two values
    differ, then every other setting that differs from the paper's; only ``stage``'s when given."""
    facts = detector_or_facts if isinstance(detector_or_facts, PaperFacts) else facts_of(detector_or_facts)
    rows = [r for d in TABLE if (r := _row(d, settings, facts)) is not None]
    listed = {d.key for d in TABLE}
    for key in flat_keys():
        if key in listed or key.endswith(".sample_seed"):  # a seed is the draw, not a setting of the method
            continue
        extra = _setting(stage_of(key), key, UNLISTED)
        if (r := _row(extra, settings, facts)) is not None:
            rows.append(r)
    return [r for r in rows if stage is None or r.stage == stage]
