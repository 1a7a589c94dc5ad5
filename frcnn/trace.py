"""The tracer: runs Faster R-CNN one stage at a time, keeps every intermediate, re-runs only what a
changed setting invalidates.

A stage's cache key is (the model, the keys of its inputs, the values of the settings it reads). So a new
``rpn.nms_thresh`` changes the keys of ``proposals`` and everything after it, while ``backbone``,
``anchors`` and ``rpn_head`` are found in the cache; a new ``roi.score_thresh`` changes only
``detections``. The cache is an LRU bounded by entries and bytes, guarded by a lock, and shared by every
caller; the model is only read, never written, so threads with different settings don't meet.

Stage graph (``DEPENDS``), with the settings each stage reads (``STAGE_SETTINGS``):

    image -> preprocess -> backbone -> rpn_head ---------------> proposals -> roi_pooling -> box_head -> detections
                              |-> anchors -> rpn_anchors -------^    |
    gt ----> anchor_targets <-'                |                     '-> roi_targets -> losses
      '----------------------------> rpn_anchor_targets ---------------------------------^

``anchor_targets`` labels the anchors the settings describe (what the pages show); ``rpn_anchor_targets``
labels the anchors the RPN decoded, for its loss: the same result unless the settings' anchors do not fit the
trained head, and then cached on its own, so moving an anchor slider the head cannot use does not label the
model's anchors again.

Inside, the stages work in network-input pixels; the :class:`Trace` they make is in the original image's
pixels (boxes (x1, y1, x2, y2) floats), as every consumer wants.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from frcnn import budget
from frcnn.errors import FrcnnError
from frcnn.models.registry import Detector
from frcnn.settings import Settings
from frcnn.stages import STAGES
from frcnn.stages.anchor_targets import AnchorTargets, anchor_targets
from frcnn.stages.anchors import Anchors, grid_for_stride, make_anchors, sizes_per_level
from frcnn.stages.backbone import Features, run_backbone
from frcnn.stages.box_head import BoxHeadOutput, run_box_head
from frcnn.stages.detections import Detections, detect
from frcnn.stages.losses import Losses, roi_losses, rpn_losses
from frcnn.stages.preprocess import Preprocessed, preprocess, to_network, to_original
from frcnn.stages.proposals import Proposals, propose
from frcnn.stages.roi_pooling import PooledRoIs, pool_rois, spatial_scale
from frcnn.stages.roi_targets import RoITargets, roi_targets
from frcnn.stages.rpn_head import RPNOutput, run_rpn_head

_AT = STAGES.index("anchor_targets") + 1
# rpn_anchors: the anchors the RPN decodes; rpn_anchor_targets: their labels for the RPN loss
TRACE_STAGES = STAGES[:3] + ("rpn_anchors",) + STAGES[3:_AT] + ("rpn_anchor_targets",) + STAGES[_AT:]

DEPENDS: dict[str, tuple[str, ...]] = {
    "preprocess": ("image",),
    "backbone": ("preprocess",),
    "anchors": ("preprocess", "backbone"),
    "rpn_anchors": ("anchors",),
    "rpn_head": ("backbone",),
    "anchor_targets": ("anchors", "gt"),
    "rpn_anchor_targets": ("preprocess", "rpn_anchors", "gt"),
    "proposals": ("rpn_anchors", "rpn_head"),
    "roi_targets": ("proposals", "gt"),
    "roi_pooling": ("backbone", "proposals"),
    "box_head": ("roi_pooling",),
    "detections": ("box_head",),
    "losses": ("rpn_anchor_targets", "rpn_head", "roi_targets"),
}

_ANCHOR_TARGET_KEYS = ("rpn.fg_iou_thresh", "rpn.bg_iou_thresh", "rpn.allow_low_quality_matches",
                       "rpn.ignore_cross_boundary", "rpn.batch_size_per_image", "rpn.positive_fraction",
                       "rpn.sample_seed")
STAGE_SETTINGS: dict[str, tuple[str, ...]] = {
    "preprocess": ("input.min_size", "input.max_size"),
    "backbone": (),
    "anchors": ("anchors.sizes", "anchors.ratios", "anchors.stride"),
    "rpn_anchors": (),
    "rpn_head": (),
    "anchor_targets": _ANCHOR_TARGET_KEYS,
    "rpn_anchor_targets": _ANCHOR_TARGET_KEYS,
    "proposals": ("rpn.pre_nms_top_n", "rpn.nms_thresh", "rpn.post_nms_top_n", "rpn.min_size",
                  "rpn.score_thresh"),
    "roi_targets": ("roi.fg_iou_thresh", "roi.bg_iou_thresh_hi", "roi.bg_iou_thresh_lo",
                    "roi.batch_size_per_image", "roi.positive_fraction", "roi.sample_seed"),
    "roi_pooling": ("roi.pool", "roi.output_size", "roi.sampling_ratio"),
    "box_head": (),
    "detections": ("roi.score_thresh", "roi.nms_thresh", "roi.detections_per_img"),
    "losses": ("roi.pool", "roi.sampling_ratio"),
}

_BOX_FIELDS: dict[type, tuple[str, ...]] = {
    Anchors: ("boxes", "cell"),
    Proposals: ("boxes", "pre_nms_boxes"),
    RoITargets: ("boxes", "candidate_boxes"),
    PooledRoIs: ("boxes",),
    Detections: ("boxes",),
}


# ----------------------------------------------------------------------------------------------- cache
def nbytes(value: Any) -> int:
    """Bytes of the tensors inside a stage result (dataclasses, tuples, lists and dicts are walked)."""
    if isinstance(value, Tensor):
        return value.element_size() * value.nelement()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    return 0


class StageCache:
    """A thread-safe LRU of stage results, bounded by entry count and by tensor bytes."""

    def __init__(self, max_entries: int = 256, max_bytes: int = 2 << 30) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    def get(self, key: str) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: str, value: Any) -> None:
        size = nbytes(value)
        if size > self.max_bytes:
            return  # too big to keep at all
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
                self.evictions += 1

    def copy(self) -> StageCache:
        """A new cache holding the same entries (the values are shared: they are never changed in place)."""
        other = StageCache(self.max_entries, self.max_bytes)
        with self._lock:
            other._items = OrderedDict(self._items)
            other._bytes = self._bytes
        return other

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def size(self) -> tuple[int, int]:
        """(entries, bytes) held now."""
        with self._lock:
            return len(self._items), self._bytes


# ----------------------------------------------------------------------------------------------- trace
@dataclass(frozen=True)
class Trace:
    """Every intermediate of one image through one model, in the original image's pixels."""

    model: str
    device: str
    weights: str
    class_names: tuple[str, ...]
    settings: Settings
    image_size: tuple[int, int]  # (H, W) of the original image
    preprocess: Preprocessed  # the network input (its own pixels), and the scale between the two
    features: Features
    anchors: Anchors  # from the settings (what the anchor pages show)
    rpn_anchors: Anchors  # what the RPN decoded: the settings' anchors if they fit the trained head
    anchors_source: str  # "settings" or "model"
    rpn: RPNOutput
    proposals: Proposals
    roi_pooling: PooledRoIs | None  # None: traced without the RoI head (``Tracer.run(head=False)``)
    box_head: BoxHeadOutput | None
    detections: Detections | None
    gt_boxes: Tensor  # (G, 4)
    gt_labels: Tensor  # (G,)
    anchor_targets: AnchorTargets | None = None  # None without ground truth
    roi_targets: RoITargets | None = None
    losses: Losses | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)  # a cached stage's: its time when computed
    cached: tuple[str, ...] = ()  # the stages found in the cache
    notes: tuple[str, ...] = ()
    keys: dict[str, str] = field(default_factory=dict)  # stage (and "image", "gt") -> its cache key in this run

    def counts(self) -> dict[str, int]:
        """The count at each step of the pipeline, for the diagram."""
        c = {"anchors": int(len(self.anchors.boxes)), "inside": int(self.anchors.inside.sum())}
        if self.anchor_targets is not None:
            labels = self.anchor_targets.labels
            c.update(positive=int((labels == 1).sum()), negative=int((labels == 0).sum()),
                     ignored=int((labels == -1).sum()),
                     sampled_positive=int(len(self.anchor_targets.sampled_positive)),
                     sampled_negative=int(len(self.anchor_targets.sampled_negative)))
        c["proposals_pre_nms"] = int(len(self.proposals.pre_nms_boxes))
        c["proposals"] = int(len(self.proposals.boxes))
        if self.roi_targets is not None:
            c.update(rois_fg=int((self.roi_targets.labels > 0).sum()),
                     rois_bg=int((self.roi_targets.labels == 0).sum()))
        if self.detections is not None:
            c["detections"] = int(len(self.detections.boxes))
        return c


# ---------------------------------------------------------------------------------------------- tracer
class TraceCancelled(FrcnnError):
    """The caller's ``should_stop`` said stop (its browser session went away)."""


def _digest(*tensors: Tensor) -> str:
    h = hashlib.sha1()
    for t in tensors:
        t = t.detach().contiguous().cpu()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


class Tracer:
    """Runs a shared :class:`Detector` stage by stage with per-call settings, caching stage results."""

    def __init__(self, detector: Detector, cache: StageCache | None = None) -> None:
        self.detector = detector
        self.cache = cache if cache is not None else StageCache()

    def run(
        self,
        image: Tensor,
        settings: Settings | None = None,
        gt_boxes: Tensor | None = None,
        gt_labels: Tensor | None = None,
        head: bool = True,
        should_stop: Callable[[], bool] | None = None,
    ) -> Trace:
        """Trace ``image`` (3, H, W) uint8 RGB with ``settings`` (default: the model's own).

        ``gt_boxes`` (G, 4) in the image's pixels and ``gt_labels`` (G,) class indices of the model
        (optional) add anchor targets, RoI targets and the losses.

        ``should_stop`` is asked before each stage that is not in the cache; when it says True the trace ends with
        :class:`TraceCancelled` (the app passes "this browser session has gone", so a closed tab's trace stops).

        Before anything is computed the work is estimated and checked against the work budget
        (:mod:`frcnn.budget`): past a cap :class:`~frcnn.budget.BudgetError` says which keys, how much, and the cap.

        ``head=False`` stops after the RPN (features, anchors, their targets, proposals): the RoI head's stages
        (RoI pooling, box head, detections, RoI targets, losses) are None. That is what the anchor and
        proposal pages show, so a proposal slider there does not pay for the box head on the new proposals.
        """
        det = self.detector
        settings = settings or det.defaults
        dev = det.device
        has_gt = gt_boxes is not None
        gt_boxes = (gt_boxes if has_gt else torch.zeros(0, 4)).to(torch.float32).reshape(-1, 4)
        budget.check(budget.facts_of(det), settings, (int(image.shape[-2]), int(image.shape[-1])), len(gt_boxes))
        if gt_labels is None:
            gt_labels = torch.ones(len(gt_boxes), dtype=torch.int64)
        gt_labels = gt_labels.to(torch.int64).reshape(-1)
        # keyed where the caller's tensors are (the CPU, from the image loader), then moved to the device once
        run = _Run(self, settings, {"image": _digest(image), "gt": _digest(gt_boxes, gt_labels)}, should_stop)
        image, gt_boxes, gt_labels = image.to(dev), gt_boxes.to(dev), gt_labels.to(dev)
        notes: list[str] = []

        pre = run.stage("preprocess", lambda: preprocess(image, settings.input, det.image_mean, det.image_std))
        gt_net = to_network(gt_boxes, pre.scale)
        with torch.inference_mode():
            feats = run.stage("backbone", lambda: run_backbone(det.module.backbone, pre.tensor))
            anchors = run.stage("anchors", lambda: self._settings_anchors(settings, pre, feats))
            rpn_anchors, source, note = run.stage("rpn_anchors", lambda: self._rpn_anchors(anchors, pre, feats),
                                                  result_key=_anchors_identity)
            if note:
                notes.append(note)
            if len(feats.maps) > 1 and self._level_sizes(settings) is None:
                notes.append(f"anchors.sizes: {len(settings.anchors.sizes)} sizes do not split over "
                             f"{len(self.detector.trained_anchor_sizes)} FPN levels; anchors use the model's sizes")
            rpn = run.stage("rpn_head", lambda: run_rpn_head(det.module.rpn.head, feats))
            props = run.stage("proposals", lambda: propose(rpn_anchors.boxes, rpn.objectness, rpn.deltas,
                                                           rpn.num_per_level, pre.image_size, settings.rpn))
            memo = run.keys["backbone"]  # per-RoI results are reused while the features stay the same
            pooled = head_out = dets = None
            if head:
                pooled = run.stage("roi_pooling", lambda: self._pool(feats, props.boxes, pre, settings.roi.pool,
                                                                     settings.roi.output_size,
                                                                     settings.roi.sampling_ratio, memo))
                head_out = run.stage("box_head", lambda: self._box_head(feats, props.boxes, pre, pooled,
                                                                        settings.roi.sampling_ratio, memo))
                if pooled.output_size != det.pool_output_size:
                    notes.append(f"the box head was trained on {det.pool_output_size}x{det.pool_output_size} "
                                 f"RoIs: detections pool at that size, not {pooled.output_size}")
                dets = run.stage("detections", lambda: detect(props.boxes, head_out.class_logits,
                                                              head_out.box_deltas, pre.image_size, settings.roi))
            a_targets = r_targets = losses = None
            if has_gt:
                a_targets = run.stage("anchor_targets", lambda: anchor_targets(
                    anchors.boxes, anchors.inside, gt_net, settings.rpn))
            if has_gt and head:
                if source == "settings":  # the RPN decoded these very anchors: same labels
                    rpn_targets = a_targets
                    run.keys["rpn_anchor_targets"] = run.keys["anchor_targets"]
                else:
                    rpn_targets = run.stage("rpn_anchor_targets", lambda: anchor_targets(
                        rpn_anchors.boxes, rpn_anchors.inside, gt_net, settings.rpn))
                r_targets = run.stage("roi_targets", lambda: roi_targets(props.boxes, gt_net, gt_labels,
                                                                         settings.roi))
                losses = run.stage("losses", lambda: self._losses(
                    settings, feats, pre, rpn, rpn_targets, r_targets, memo))
                if losses.roi_classifier is None:
                    notes.append("RoI losses need ground-truth classes the model knows "
                                 f"(labels 1..{len(det.class_names) - 1})")

        def orig(value: Any) -> Any:
            return _to_original(value, pre.scale)

        return Trace(
            model=det.name, device=str(dev), weights=det.weights, class_names=det.class_names,
            settings=settings, image_size=pre.original_size, preprocess=pre, features=feats,
            anchors=orig(anchors), rpn_anchors=orig(rpn_anchors), anchors_source=source, rpn=rpn,
            proposals=orig(props), roi_pooling=orig(pooled), box_head=head_out, detections=orig(dets),
            gt_boxes=gt_boxes, gt_labels=gt_labels, anchor_targets=a_targets,
            roi_targets=orig(r_targets) if r_targets is not None else None, losses=losses,
            timings_ms=run.timings, cached=tuple(run.cached), notes=tuple(det.notes) + tuple(notes),
            keys=dict(run.keys))

    # -- stage bodies that need more than one call --------------------------------------------------
    def _settings_anchors(self, settings: Settings, pre: Preprocessed, feats: Features) -> Anchors:
        """The anchors the settings describe: on the model's own grids, or for a single-map model with a
        different stride, on the grid of that stride (what the anchor pages show)."""
        a = settings.anchors
        levels = len(feats.maps)
        if levels == 1:
            stride = int(a.stride)
            grid = feats.shapes[0] if stride == feats.strides[0] else grid_for_stride(pre.padded_size, stride)
            return make_anchors([a.sizes], a.ratios, [grid], [stride], pre.image_size, pre.tensor.device)
        sizes = self._level_sizes(settings) or self.detector.trained_anchor_sizes
        n = len(sizes)
        return make_anchors(sizes, a.ratios, feats.shapes[:n], feats.strides[:n], pre.image_size,
                            pre.tensor.device)

    def _level_sizes(self, settings: Settings) -> tuple[tuple[float, ...], ...] | None:
        return sizes_per_level(settings.anchors.sizes, self.detector.trained_anchor_sizes)

    def _rpn_anchors(self, anchors: Anchors, pre: Preprocessed, feats: Features) -> tuple[Anchors, str, str]:
        """The settings' anchors if the trained RPN head can decode them (same number per location and the
        backbone's stride), else the anchors the model was trained with, and a note that says why."""
        det = self.detector
        trained_k = [len(s) * len(det.trained_anchor_ratios) for s in det.trained_anchor_sizes]
        fits = (list(anchors.num_per_location) == trained_k
                and list(anchors.grid_sizes) == list(feats.shapes[:len(trained_k)])
                and list(anchors.strides) == list(feats.strides[:len(trained_k)]))
        if fits:
            return anchors, "settings", ""
        model_anchors = make_anchors(det.trained_anchor_sizes, det.trained_anchor_ratios,
                                     feats.shapes[:len(trained_k)], feats.strides[:len(trained_k)],
                                     pre.image_size, pre.tensor.device)
        why = (f"the RPN head was trained with {trained_k[0]} anchors per location at stride "
               f"{feats.strides[0]}; the settings give {anchors.num_per_location[0]} at stride "
               f"{anchors.strides[0]}, so proposals use the model's own anchors "
               f"(sizes {list(det.trained_anchor_sizes)}, ratios {list(det.trained_anchor_ratios)})")
        return model_anchors, "model", why

    def _pooled_levels(self, feats: Features) -> tuple[int, ...]:
        names = self.detector.pooled_feature_names
        return tuple(feats.names.index(n) for n in names if n in feats.names) or (0,)

    def _pool(self, feats: Features, boxes: Tensor, pre: Preprocessed, op: str, size: int, ratio: int,
              memo: str | None = None) -> PooledRoIs:
        """Pool ``boxes``; with ``memo`` (the features' key) RoIs pooled before on these features are reused."""
        levels = self._pooled_levels(feats)
        if memo is None:
            return pool_rois(feats, boxes, pre.image_size, op, size, ratio, levels)

        def compute(b: Tensor) -> tuple[Tensor, Tensor]:
            p = pool_rois(feats, b, pre.image_size, op, size, ratio, levels)
            return p.features, p.level

        key = _memo_key("roi_pooling", self.detector.key, memo, op, size, ratio, levels)
        features, level = _per_roi(self.cache, key, boxes, compute)
        scales = tuple(spatial_scale(feats.maps[i].shape[-2:], pre.image_size) for i in levels)
        return PooledRoIs(features, boxes, level, scales, op, size)

    def _head(self, feats: Features, boxes: Tensor, pre: Preprocessed, op: str, size: int, ratio: int,
              memo: str | None = None) -> BoxHeadOutput:
        """The box head on ``boxes`` pooled by (op, size, ratio); with ``memo``, per RoI as :meth:`_pool`."""
        det = self.detector

        def compute(b: Tensor) -> tuple[Tensor, Tensor]:
            pooled = self._pool(feats, b, pre, op, size, ratio, memo)
            out = run_box_head(det.module.roi_heads.box_head, det.module.roi_heads.box_predictor, pooled.features)
            return out.class_logits, out.box_deltas

        if memo is None:
            return BoxHeadOutput(*compute(boxes))
        key = _memo_key("box_head", det.key, memo, op, size, ratio)
        return BoxHeadOutput(*_per_roi(self.cache, key, boxes, compute))

    def _box_head(self, feats: Features, boxes: Tensor, pre: Preprocessed, pooled: PooledRoIs, ratio: int,
                  memo: str | None = None) -> BoxHeadOutput:
        det = self.detector
        if pooled.output_size != det.pool_output_size:  # the head takes only its own size: pool again at it
            return self._head(feats, boxes, pre, pooled.op, det.pool_output_size, 2, memo)
        if memo is None:
            return run_box_head(det.module.roi_heads.box_head, det.module.roi_heads.box_predictor, pooled.features)
        return self._head(feats, boxes, pre, pooled.op, pooled.output_size, ratio, memo)

    def _losses(self, settings: Settings, feats: Features, pre: Preprocessed, rpn: RPNOutput,
                rpn_targets: AnchorTargets, r_targets: RoITargets, memo: str | None = None) -> Losses:
        """The four losses; ``rpn_targets`` label the anchors the RPN decoded."""
        det = self.detector
        rpn_cls, rpn_box = rpn_losses(rpn.objectness, rpn.deltas, rpn_targets)
        num_classes = len(det.class_names)
        if bool(((r_targets.labels < 0) | (r_targets.labels >= num_classes)).any()):
            return Losses(rpn_cls, rpn_box, None, None)
        head = self._head(feats, r_targets.boxes, pre, settings.roi.pool, det.pool_output_size,
                          settings.roi.sampling_ratio, memo)
        roi_cls, roi_box = roi_losses(head.class_logits, head.box_deltas, r_targets.labels,
                                      r_targets.regression_targets)
        return Losses(rpn_cls, rpn_box, roi_cls, roi_box)


class _Run:
    """One call of :meth:`Tracer.run`: stage keys, cache look-ups, timings."""

    def __init__(self, tracer: Tracer, settings: Settings, keys: dict[str, str],
                 should_stop: Callable[[], bool] | None = None) -> None:
        self.tracer, self.settings, self.keys = tracer, settings, dict(keys)
        self.should_stop = should_stop
        self.timings: dict[str, float] = {}
        self.cached: list[str] = []

    def key(self, name: str) -> str:
        parts = (self.tracer.detector.key, name, tuple(self.keys[d] for d in DEPENDS[name]),
                 self.settings.select(STAGE_SETTINGS[name]))
        return hashlib.sha1(repr(parts).encode()).hexdigest()

    def stage(self, name: str, compute: Callable[[], Any], result_key: Callable[[Any], str] | None = None) -> Any:
        """Look the stage up in the cache or compute it. With ``result_key`` the stages after it are keyed
        by what it produced rather than by how: anchors that fall back to the model's own are the same
        anchors whatever setting caused it, and proposals stay cached.

        The cache holds (value, ms the computation took): a stage found there is listed in ``cached`` and its
        timing is the time it took when it was computed, so a rerun still shows where the time goes."""
        key = self.keys[name] = self.key(name)
        cache = self.tracer.cache
        item = cache.get(key)
        if item is not None:
            value, self.timings[name] = item
            self.cached.append(name)
            if result_key is not None:
                self.keys[name] = result_key(value)
            return value
        if self.should_stop is not None and self.should_stop():
            raise TraceCancelled(f"trace cancelled before {name}")
        device = self.tracer.detector.device
        start = time.perf_counter()
        value = compute()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.timings[name] = (time.perf_counter() - start) * 1000.0
        cache.put(key, (value, self.timings[name]))
        if result_key is not None:
            self.keys[name] = result_key(value)
        return value


def _memo_key(*parts: Any) -> str:
    return hashlib.sha1(repr(("memo", *parts)).encode()).hexdigest()


MEMO_ROWS = 2048  # RoIs remembered per feature map and pooling setting (bounded again by the cache's bytes)


@dataclass(frozen=True, eq=False)
class _RoIMemo:
    """Per-RoI results already computed on one feature map: row ``index[box bytes]`` of each tensor."""

    index: dict[bytes, int]
    rows: tuple[Tensor, ...]  # each (M, ...)


def _per_roi(cache: StageCache, key: str, boxes: Tensor,
             compute: Callable[[Tensor], tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
    """``compute(boxes)`` row by row, taking rows already computed for the same RoI (exact coordinates) from
    the memo under ``key``: a slider that changes the proposals (NMS IoU, top-N) changes a few RoIs, and
    only those are pooled and run through the box head. Pooling is per RoI and gives the same bits; the box
    head's matrix products may round differently in another batch size (below 1e-5)."""
    codes = [row.tobytes() for row in boxes.detach().cpu().numpy()]  # (R,) exact coordinates
    memo = cache.get(key)
    where = [memo.index.get(c, -1) for c in codes] if memo is not None else [-1] * len(codes)
    missing = [i for i, w in enumerate(where) if w < 0]
    if memo is None or len(missing) == len(codes):
        out = compute(boxes)
    else:
        hit = [i for i, w in enumerate(where) if w >= 0]
        out = tuple(torch.empty((len(codes), *r.shape[1:]), dtype=r.dtype, device=r.device) for r in memo.rows)
        for o, r in zip(out, memo.rows, strict=True):
            o[hit] = r[torch.tensor([where[i] for i in hit], device=r.device)]
        if missing:
            for o, n in zip(out, compute(boxes[missing]), strict=True):
                o[missing] = n
    if missing:
        first: dict[bytes, int] = {}  # each new RoI once, at its first position
        for i in missing:
            first.setdefault(codes[i], i)
        if memo is not None and len(memo.index) + len(first) <= MEMO_ROWS:
            index = {**memo.index, **{c: len(memo.index) + k for k, c in enumerate(first)}}
            rows = tuple(torch.cat([r, o[list(first.values())]]) for r, o in zip(memo.rows, out, strict=True))
        else:  # start again from this call's RoIs
            for i, c in enumerate(codes):
                first.setdefault(c, i)
            index = {c: k for k, c in enumerate(first)}
            rows = tuple(o[list(first.values())] for o in out)
        cache.put(key, _RoIMemo(index, rows))
    return out


def _anchors_identity(value: tuple[Anchors, str, str]) -> str:
    """What the RPN decodes, as a key: sizes, ratios, grids and strides fix the anchors. (The image size that
    clips proposals reaches the stages after through their other inputs, all keyed by the image.)"""
    anchors, _, _ = value
    parts = (anchors.sizes, anchors.ratios, anchors.grid_sizes, anchors.strides)  # not where they came from
    return hashlib.sha1(repr(parts).encode()).hexdigest()


def _to_original(value: Any, scale: tuple[float, float]) -> Any:
    """A copy of a stage result with its box fields mapped to the original image's pixels."""
    names = _BOX_FIELDS.get(type(value))
    if not names:
        return value
    changes = {}
    for name in names:
        boxes = getattr(value, name)
        if isinstance(boxes, tuple):
            changes[name] = tuple(to_original(b, scale) for b in boxes)
        else:
            changes[name] = to_original(boxes, scale)
    return dataclasses.replace(value, **changes)


def trace_stages() -> Sequence[str]:
    return TRACE_STAGES
