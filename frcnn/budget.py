"""The work budget: what one trace of an image will ask for, estimated before any tensor is allocated, and
refused past a cap with the keys that caused it, the estimate and the cap.

One server serves a whole class; every session traces in its process. The settings' validator keeps each
value in range, but ranges multiply: a stride of 4 with 16 sizes and 16 ratios, or 200,000 boxes into NMS, or a
2048-px input to VGG-16, are each valid and together ask for tens of gigabytes or minutes of CPU. So before a
trace runs (``Tracer.run``) and before the app accepts a setting, a link or a ground-truth file, the work is
estimated from the image's size, the number of ground-truth boxes, the settings and a few facts of the model,
and checked against :class:`Caps`:

| quantity | what grows it | cap |
| --- | --- | --- |
| network input pixels (backbone activations: bytes per pixel measured per model) | input.min_size / max_size | memory |
| anchors (boxes, labels, targets, objectness: about 150 bytes each) | anchors.sizes / ratios / stride | 1,000,000 |
| anchor x ground-truth IoUs (in chunks: CPU time, not memory) | anchors, the number of GT boxes | 400,000,000 |
| candidates into NMS (worst case quadratic) | rpn.pre_nms_top_n (per FPN level) | 20,000 |
| proposals through RoI pooling and the box head | rpn.post_nms_top_n | 2,000 |
| pooled RoI features (RoIs x channels x S x S x 4 bytes) | roi.output_size, rpn.post_nms_top_n | memory |
| detections x ground truth (the matching) | roi.detections_per_img, GT boxes | the IoU cap |

The memory cap (backbone, anchors, IoU chunks and pooled features together) is 1 GiB per trace by default;
``FRCNN_TRACE_BUDGET_MB`` sets it for a server (a teacher with a large machine and few students may raise it).
The figures behind the constants were measured on the 2-core CPU this project is built on (see
``BYTES_PER_INPUT_PIXEL``): every trace the caps allow finishes in seconds there.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch

from frcnn.errors import FrcnnError
from frcnn.settings import Settings
from frcnn.stages.anchors import sizes_per_level
from frcnn.stages.preprocess import SIZE_DIVISIBLE, network_scale

BUDGET_ENV = "FRCNN_TRACE_BUDGET_MB"
DEFAULT_TRACE_MB = 1024

# Peak backbone memory per network-input pixel (inference mode), measured here at 512 and 1024 px squares
# (ru_maxrss of a fresh process): default 128 / 72, vgg16 800 / 731, mobilenet_v3_fpn 280 / 202,
# resnet50_fpn_v2 574 / 556 bytes. Unknown models count as the largest.
BYTES_PER_INPUT_PIXEL = {"default": 130, "vgg16": 800, "mobilenet_v3_fpn": 280, "resnet50_fpn_v2": 580}
BYTES_PER_ANCHOR = 150  # boxes, centre cells, inside mask, labels, IoUs, targets, objectness, deltas, copies
IOU_CHUNK_BYTES = 100 << 20  # what the chunked IoU holds at once (frcnn.stages._iou)


def _env_trace_bytes() -> int:
    text = os.environ.get(BUDGET_ENV, "").strip()
    try:
        mb = int(text) if text else DEFAULT_TRACE_MB
    except ValueError:
        mb = DEFAULT_TRACE_MB
    return max(64, mb) << 20


@dataclass(frozen=True)
class Caps:
    """What one trace may ask for."""

    trace_bytes: int = field(default_factory=_env_trace_bytes)  # backbone + anchors + IoU chunks + pooled RoIs
    anchors: int = 1_000_000
    iou_pairs: int = 400_000_000  # about 6 s of box_iou on 2 cores, in chunks
    nms_candidates: int = 20_000  # a map's NMS of 20,000 boxes that never overlap: about 1 s here (batched_nms
    # runs one NMS a pyramid level on the CPU past 1,000 boxes, so the quadratic worst case is each map's own)
    rois: int = 2_000  # the paper's training count; vgg16's fc6 takes about 200 MFLOPs a RoI


@dataclass(frozen=True)
class ModelFacts:
    """What the estimate needs to know of a model, read once from it (``facts_of``)."""

    name: str
    strides: tuple[int, ...]  # of the feature maps the RPN uses, one per level
    trained_sizes: tuple[tuple[float, ...], ...]  # anchor sizes per level the RPN head was trained with
    trained_ratios: tuple[float, ...]
    channels: int  # of the pooled feature map
    pool_output_size: int  # the box head's own pooled size

    @property
    def bytes_per_pixel(self) -> int:
        return BYTES_PER_INPUT_PIXEL.get(self.name, max(BYTES_PER_INPUT_PIXEL.values()))


@dataclass(frozen=True)
class WorkEstimate:
    input_size: tuple[int, int]  # (H, W) padded network input
    anchors: int  # the settings' anchors (plus the model's own when the head cannot use them)
    iou_pairs: int
    nms_candidates: int  # boxes into NMS, every level
    nms_per_map: int  # of them, the most from one level (NMS runs per level)
    rois: int
    bytes: dict[str, int]  # per part

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


def input_size(image_size: tuple[int, int], settings: Settings) -> tuple[int, int]:
    """The padded network input (H, W) for an image of ``image_size`` (H, W), as ``preprocess`` makes it."""
    factor = network_scale(image_size, settings.input)
    # torchvision interpolates with the scale factor: floor(side * factor), then pads to a multiple of 32
    return tuple(int(math.ceil(math.floor(s * factor) / SIZE_DIVISIBLE) * SIZE_DIVISIBLE) for s in image_size)


def _grid(size: tuple[int, int], stride: int) -> int:
    return math.ceil(size[0] / stride) * math.ceil(size[1] / stride)


def _anchor_counts(facts: ModelFacts, settings: Settings, padded: tuple[int, int]) -> tuple[list[int], int]:
    """(anchors per level the RPN decodes, anchors the settings describe and the pages show)."""
    a = settings.anchors
    trained = [_grid(padded, s) * len(z) * len(facts.trained_ratios)
               for s, z in zip(facts.strides, facts.trained_sizes, strict=False)]
    if len(facts.trained_sizes) == 1:
        shown = _grid(padded, int(a.stride)) * a.num_per_location
        fits = a.num_per_location == len(facts.trained_sizes[0]) * len(facts.trained_ratios) and \
            int(a.stride) == facts.strides[0]
        return ([shown] if fits else trained), shown + (0 if fits else trained[0])
    sizes = sizes_per_level(a.sizes, facts.trained_sizes) or facts.trained_sizes
    shown = [_grid(padded, s) * len(z) * len(a.ratios) for s, z in zip(facts.strides, sizes, strict=False)]
    fits = [len(z) * len(a.ratios) for z in sizes] == [len(z) * len(facts.trained_ratios)
                                                       for z in facts.trained_sizes]
    return (shown if fits else trained), sum(shown) + (0 if fits else sum(trained))


def estimate(facts: ModelFacts, settings: Settings, image_size: tuple[int, int], num_gt: int = 0) -> WorkEstimate:
    """What tracing an image of ``image_size`` (H, W) with ``num_gt`` ground-truth boxes asks for."""
    padded = input_size(image_size, settings)
    rpn_levels, anchors = _anchor_counts(facts, settings, padded)
    rpn, roi = settings.rpn, settings.roi
    per_level = [min(rpn.pre_nms_top_n, n) for n in rpn_levels]
    candidates = sum(per_level)
    rois = min(rpn.post_nms_top_n, candidates)
    sampled = min(roi.batch_size_per_image, rois + num_gt)
    pairs = (anchors + rois + num_gt + roi.detections_per_img) * num_gt  # anchor, RoI and detection targets
    pooled_rois = rois * 2 + sampled  # pooled at S, again at the head's size, and the RoI minibatch
    sizes = max(roi.output_size, facts.pool_output_size)
    parts = {
        "backbone": padded[0] * padded[1] * facts.bytes_per_pixel,
        "anchors": anchors * BYTES_PER_ANCHOR,
        "iou": min(IOU_CHUNK_BYTES, pairs * 40) if num_gt else 0,
        "pooled RoIs": pooled_rois * facts.channels * sizes * sizes * 4,
    }
    return WorkEstimate(padded, anchors, pairs, candidates, max(per_level, default=0), rois, parts)


_PART_KEYS = {"backbone": ("input.min_size", "input.max_size"),
              "anchors": ("anchors.sizes", "anchors.ratios", "anchors.stride"),
              "iou": ("anchors.stride",), "pooled RoIs": ("roi.output_size", "rpn.post_nms_top_n")}


def _text(value: object) -> str:
    return f"({len(value)} values)" if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) \
        else str(value)


def _mb(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MB" if n < (10 << 30) else f"{n / (1 << 30):,.1f} GB"


def problems(facts: ModelFacts, settings: Settings, image_size: tuple[int, int], num_gt: int = 0,
             caps: Caps | None = None) -> list[str]:
    """What is over a cap, one line each (empty: within the budget)."""
    caps = caps or Caps()
    e = estimate(facts, settings, image_size, num_gt)
    a, out = settings.anchors, []
    if e.anchors > caps.anchors:
        out.append(f"anchors.sizes ({len(a.sizes)}) x anchors.ratios ({len(a.ratios)}) at anchors.stride="
                   f"{a.stride} on a {e.input_size[1]}x{e.input_size[0]} input give {e.anchors:,} anchors "
                   f"(cap {caps.anchors:,})")
    elif e.iou_pairs > caps.iou_pairs:
        out.append(f"{num_gt:,} ground-truth boxes x {e.anchors:,} anchors = {e.iou_pairs:,} IoUs "
                   f"(cap {caps.iou_pairs:,}): fewer boxes, or fewer anchors (a larger stride, fewer sizes)")
    if e.nms_per_map > caps.nms_candidates:
        of_one = " from one feature map" if e.nms_per_map < e.nms_candidates else ""
        out.append(f"rpn.pre_nms_top_n={settings.rpn.pre_nms_top_n:,} sends {e.nms_per_map:,} boxes{of_one} into "
                   f"NMS (cap {caps.nms_candidates:,} a map)")
    if e.rois > caps.rois:
        out.append(f"rpn.post_nms_top_n={settings.rpn.post_nms_top_n:,} keeps {e.rois:,} proposals for the "
                   f"RoI head (cap {caps.rois:,})")
    if e.total_bytes > caps.trace_bytes:
        parts = ", ".join(f"{k} {_mb(v)}" for k, v in e.bytes.items() if v)
        largest = max(e.bytes, key=e.bytes.get)
        keys = ", ".join(f"{k}={_text(settings.get(k))}" for k in _PART_KEYS[largest])
        out.append(f"{keys} on {facts.name} ask for about {_mb(e.total_bytes)} ({parts}; a {e.input_size[1]}x"
                   f"{e.input_size[0]} input) over the cap of {_mb(caps.trace_bytes)} ({BUDGET_ENV})")
    return out


class BudgetError(FrcnnError):
    """A valid settings combination that asks for more than the work budget allows."""


def check(facts: ModelFacts, settings: Settings, image_size: tuple[int, int], num_gt: int = 0,
          caps: Caps | None = None) -> None:
    """Raise :class:`BudgetError` (one line: the keys, the estimate, the cap) past any cap."""
    found = problems(facts, settings, image_size, num_gt, caps)
    if found:
        raise BudgetError("work budget: " + found[0] + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""))


def fits(facts: ModelFacts, settings: Settings, image_size: tuple[int, int], num_gt: int = 0,
         caps: Caps | None = None) -> bool:
    return not problems(facts, settings, image_size, num_gt, caps)


def max_boxes(facts: ModelFacts, settings: Settings, image_size: tuple[int, int], caps: Caps | None = None) -> int:
    """The most ground-truth boxes this image and these settings can be traced with."""
    lo, hi = 0, 1
    while hi < 10_000_000 and fits(facts, settings, image_size, hi, caps):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(facts, settings, image_size, mid, caps) else (lo, mid)
    return lo


_FACTS: dict[str, ModelFacts] = {}


def facts_of(detector) -> ModelFacts:  # noqa: ANN001 - a frcnn.models.Detector (imported lazily: no cycle)
    """The model's facts, once per loaded model: the strides come from one 256-px pass of its backbone."""
    key = detector.key or str(id(detector))
    if key not in _FACTS:
        module = detector.module
        side = 256
        with torch.inference_mode():
            maps = module.backbone(torch.zeros(1, 3, side, side, device=detector.device))
        maps = list(maps.values()) if isinstance(maps, dict) else [maps]
        strides = tuple(max(1, round(side / int(m.shape[-1]))) for m in maps)
        _FACTS[key] = ModelFacts(detector.name, strides[:len(detector.trained_anchor_sizes)],
                                 detector.trained_anchor_sizes, detector.trained_anchor_ratios,
                                 int(module.backbone.out_channels), detector.pool_output_size)
    return _FACTS[key]


def allowed_range(facts: ModelFacts, settings: Settings, image_size: tuple[int, int], num_gt: int, key: str,
                  lo: float, hi: float, caps: Caps | None = None) -> tuple[float, float]:
    """The part of a slider's range [lo, hi] for the numeric setting ``key`` that stays within the budget, the
    other settings as they are (the work grows or shrinks steadily with each such key). Whole-number keys
    only; the range may come back empty (lo > hi) when no value fits."""
    def ok(v: float) -> bool:
        try:
            return fits(facts, settings.replace({key: v}), image_size, num_gt, caps)
        except FrcnnError:  # the value itself is refused by the validator (e.g. post-NMS above pre-NMS)
            return True

    lo, hi = int(lo), int(hi)
    if ok(hi) and ok(lo):
        return lo, hi
    if ok(lo):  # work grows with the value: the largest that fits
        a, b = lo, hi
        while b - a > 1:
            mid = (a + b) // 2
            a, b = (mid, b) if ok(mid) else (a, mid)
        return lo, a
    if ok(hi):  # work shrinks with the value (a stride): the smallest that fits
        a, b = lo, hi
        while b - a > 1:
            mid = (a + b) // 2
            a, b = (a, mid) if ok(mid) else (mid, b)
        return b, hi
    return hi, lo
