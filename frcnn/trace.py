"""The tracer: runs Faster R-CNN one stage at a time, keeps every intermediate, re-runs only what a
changed setting invalidates.

The stages, their order and inputs come from one table, :data:`frcnn.pipeline.PIPELINE` (training runs the same
stage functions, :func:`frcnn.pipeline.training_pass`); each stage body is a function in :mod:`frcnn.stages` that
receives its own parameter record (:mod:`frcnn.stages.params`). A stage's cache key is (the model, the keys of
its inputs, its record). So a new ``rpn.nms_thresh`` changes the keys of ``proposals`` and everything after it,
while ``backbone``, ``anchors`` and ``rpn_head`` are found in the cache; a new ``roi.score_thresh`` changes only
``detections``. The cache is an LRU bounded by entries and bytes, guarded by a lock, and shared by every
caller; the model is only read, never written, so threads with different settings don't meet.

Stage graph (``DEPENDS``, from the table), with the settings each stage's record holds (``STAGE_SETTINGS``):

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
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from frcnn import budget
from frcnn.errors import FrcnnError
from frcnn.models.registry import Detector
from frcnn.pipeline import PIPELINE, Trained, stage_keys, stage_params
from frcnn.settings import Settings
from frcnn.stages.anchor_targets import AnchorTargets, anchor_targets
from frcnn.stages.anchors import Anchors, rpn_anchors, settings_anchors, sizes_per_level
from frcnn.stages.backbone import Features, run_backbone
from frcnn.stages.box_head import BoxHeadOutput, HeadPooling, head_pooling, run_box_head
from frcnn.stages.detections import Detections, detect
from frcnn.stages.losses import Losses, four_losses
from frcnn.stages.params import StageParams
from frcnn.stages.preprocess import Preprocessed, preprocess, to_network, to_original
from frcnn.stages.proposals import Proposals, propose
from frcnn.stages.roi_pooling import PooledRoIs, pool_rois, pooled_levels, spatial_scale
from frcnn.stages.roi_targets import RoITargets, roi_targets
from frcnn.stages.rpn_head import RPNOutput, run_rpn_head

# all three from the one table, frcnn.pipeline.PIPELINE
TRACE_STAGES: tuple[str, ...] = tuple(s.name for s in PIPELINE)
DEPENDS: dict[str, tuple[str, ...]] = {s.name: s.inputs for s in PIPELINE}
STAGE_SETTINGS: dict[str, tuple[str, ...]] = stage_keys()
_BOX_FIELDS: dict[type, tuple[str, ...]] = {s.result: s.box_fields for s in PIPELINE if s.result is not None}


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

    @cached_property
    def trained(self) -> Trained:
        """What the trained module fixes: its anchors, the levels and size its box head pools."""
        return Trained.of(self.detector.module)

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

        pre = run.stage("preprocess", lambda: preprocess(image, run.params("preprocess"), det.image_mean,
                                                         det.image_std))
        gt_net = to_network(gt_boxes, pre.scale) if has_gt else None
        with torch.inference_mode():  # in PIPELINE's order, as training runs them
            part = self._rpn_part(run, pre, gt_net, head)
            if gt_net is not None and head:
                r_targets = run.stage("roi_targets", lambda: roi_targets(part.proposals.boxes, gt_net, gt_labels,
                                                                         run.params("roi_targets")))
                part = dataclasses.replace(part, roi_targets=r_targets)
            if head:
                part = self._head_part(run, pre, part)
            if part.roi_targets is not None:
                part = self._loss_part(run, pre, part)
        return self._trace(run, pre, part, gt_boxes, gt_labels)

    # -- the pipeline's stages in PIPELINE's order, each called with its own record -----------------------
    def _rpn_part(self, run: _Run, pre: Preprocessed, gt_net: Tensor | None, head: bool) -> _Part:
        """backbone .. proposals; with ground truth (``gt_net``, network pixels) the anchors' targets too."""
        det, trained = self.detector, self.trained
        feats = run.stage("backbone", lambda: run_backbone(det.module.backbone, pre.tensor))
        anchors = run.stage("anchors", lambda: settings_anchors(run.params("anchors"), feats, pre.padded_size,
                                                                pre.image_size, trained.anchors))
        model_anchors, source, note = run.stage(
            "rpn_anchors", lambda: rpn_anchors(anchors, feats, pre.image_size, trained.anchors),
            result_key=_anchors_identity)
        notes = [note] if note else []
        sizes = run.settings.anchors.sizes
        if len(feats.maps) > 1 and sizes_per_level(sizes, trained.anchors.sizes) is None:
            notes.append(f"anchors.sizes: {len(sizes)} sizes do not split over "
                         f"{len(trained.anchors.sizes)} FPN levels; anchors use the model's sizes")
        rpn = run.stage("rpn_head", lambda: run_rpn_head(det.module.rpn.head, feats))
        a_targets = rpn_targets = None
        if gt_net is not None:
            a_targets, rpn_targets = self._anchor_targets(run, anchors, model_anchors, source, gt_net, head)
        props = run.stage("proposals", lambda: propose(model_anchors.boxes, rpn.objectness, rpn.deltas,
                                                       rpn.num_per_level, pre.image_size, run.params("proposals")))
        return _Part(feats, anchors, model_anchors, source, rpn, props, anchor_targets=a_targets,
                     rpn_targets=rpn_targets, notes=tuple(notes))

    def _anchor_targets(self, run: _Run, anchors: Anchors, model_anchors: Anchors, source: str, gt_net: Tensor,
                        head: bool) -> tuple[AnchorTargets, AnchorTargets | None]:
        """(the settings' anchors' targets, the targets of the anchors the RPN decoded, for its loss: None
        without the head)."""
        a_targets = run.stage("anchor_targets", lambda: anchor_targets(anchors.boxes, anchors.inside, gt_net,
                                                                       run.params("anchor_targets")))
        if not head:
            return a_targets, None
        if source == "settings":  # the RPN decoded these very anchors: same labels
            run.keys["rpn_anchor_targets"] = run.keys["anchor_targets"]
            return a_targets, a_targets
        return a_targets, run.stage("rpn_anchor_targets", lambda: anchor_targets(
            model_anchors.boxes, model_anchors.inside, gt_net, run.params("rpn_anchor_targets")))

    def _head_part(self, run: _Run, pre: Preprocessed, part: _Part) -> _Part:
        det, feats, props = self.detector, part.features, part.proposals
        memo = run.keys["backbone"]  # per-RoI results are reused while the features stay the same
        pool = run.params("roi_pooling")
        pooled = run.stage("roi_pooling", lambda: self._pool(feats, props.boxes, pre, pool.pool, pool.output_size,
                                                             pool.sampling_ratio, memo))
        how = self._head_pooling(feats, pooled.op, pooled.sampling_ratio)
        head_out = run.stage("box_head", lambda: self._head(feats, props.boxes, pre, how, memo))
        notes = part.notes
        if pooled.output_size != det.pool_output_size:
            notes += (f"the box head was trained on {det.pool_output_size}x{det.pool_output_size} "
                      f"RoIs: detections pool at that size, not {pooled.output_size}",)
        dets = run.stage("detections", lambda: detect(props.boxes, head_out.class_logits, head_out.box_deltas,
                                                      pre.image_size, run.params("detections")))
        return dataclasses.replace(part, roi_pooling=pooled, box_head=head_out, detections=dets, notes=notes)

    def _loss_part(self, run: _Run, pre: Preprocessed, part: _Part) -> _Part:
        """The four losses on the RPN's anchor targets and the sampled RoIs, pooled as training pools them."""
        memo, feats, rpn = run.keys["backbone"], part.features, part.rpn
        rpn_targets, r_targets = part.rpn_targets, part.roi_targets
        assert rpn_targets is not None and r_targets is not None  # with ground truth and the head

        def losses_stage() -> Losses:
            pool = run.params("losses")
            how = self._head_pooling(feats, pool.pool, pool.sampling_ratio)
            return four_losses(rpn.objectness, rpn.deltas, rpn_targets, r_targets,
                               lambda rois: self._head(feats, rois, pre, how, memo), len(self.detector.class_names))

        losses = run.stage("losses", losses_stage)
        notes = part.notes
        if losses.roi_classifier is None:
            notes += ("RoI losses need ground-truth classes the model knows "
                      f"(labels 1..{len(self.detector.class_names) - 1})",)
        return dataclasses.replace(part, losses=losses, notes=notes)

    def _trace(self, run: _Run, pre: Preprocessed, part: _Part, gt_boxes: Tensor, gt_labels: Tensor) -> Trace:
        det = self.detector

        def orig(value: Any) -> Any:
            return _to_original(value, pre.scale)

        return Trace(
            model=det.name, device=str(det.device), weights=det.weights, class_names=det.class_names,
            settings=run.settings, image_size=pre.original_size, preprocess=pre, features=part.features,
            anchors=orig(part.anchors), rpn_anchors=orig(part.rpn_anchors), anchors_source=part.anchors_source,
            rpn=part.rpn, proposals=orig(part.proposals), roi_pooling=orig(part.roi_pooling),
            box_head=part.box_head, detections=orig(part.detections), gt_boxes=gt_boxes, gt_labels=gt_labels,
            anchor_targets=part.anchor_targets, roi_targets=orig(part.roi_targets), losses=part.losses,
            timings_ms=run.timings, cached=tuple(run.cached), notes=tuple(det.notes) + part.notes,
            keys=dict(run.keys))

    # -- the cache around the per-RoI stages ---------------------------------------------------------------
    def _head_pooling(self, feats: Features, op: str, ratio: int) -> HeadPooling:
        """How the box head's RoIs are pooled (:func:`~frcnn.stages.box_head.head_pooling`, as in training)."""
        levels = pooled_levels(feats, self.trained.pooled_names)
        return head_pooling(op, ratio, self.trained.pool_size, levels)

    def _pool(self, feats: Features, boxes: Tensor, pre: Preprocessed, op: str, size: int, ratio: int,
              memo: str | None = None) -> PooledRoIs:
        """Pool ``boxes``; with ``memo`` (the features' key) RoIs pooled before on these features are reused."""
        levels = pooled_levels(feats, self.trained.pooled_names)
        if memo is None:
            return pool_rois(feats, boxes, pre.image_size, op, size, ratio, levels)

        def compute(b: Tensor) -> tuple[Tensor, Tensor]:
            p = pool_rois(feats, b, pre.image_size, op, size, ratio, levels)
            return p.features, p.level

        key = _memo_key("roi_pooling", self.detector.key, memo, op, size, ratio, levels)
        features, level = _per_roi(self.cache, key, boxes, compute)
        scales = tuple(spatial_scale(feats.maps[i].shape[-2:], pre.image_size) for i in levels)
        return PooledRoIs(features, boxes, level, scales, op, size, ratio)

    def _head(self, feats: Features, boxes: Tensor, pre: Preprocessed, how: HeadPooling,
              memo: str | None = None) -> BoxHeadOutput:
        """The box head on ``boxes`` pooled as ``how`` says; with ``memo``, per RoI as :meth:`_pool`."""
        det = self.detector
        op, size, ratio = how.op, how.output_size, how.sampling_ratio

        def compute(b: Tensor) -> tuple[Tensor, Tensor]:
            pooled = self._pool(feats, b, pre, op, size, ratio, memo)
            out = run_box_head(det.module.roi_heads.box_head, det.module.roi_heads.box_predictor, pooled.features)
            return out.class_logits, out.box_deltas

        if memo is None:
            return BoxHeadOutput(*compute(boxes))
        key = _memo_key("box_head", det.key, memo, op, size, ratio)
        return BoxHeadOutput(*_per_roi(self.cache, key, boxes, compute))


@dataclass(frozen=True)
class _Part:
    """The results of one :meth:`Tracer.run` so far (network-input pixels); the head's and targets' None
    until their part has run."""

    features: Features
    anchors: Anchors
    rpn_anchors: Anchors
    anchors_source: str
    rpn: RPNOutput
    proposals: Proposals
    roi_pooling: PooledRoIs | None = None
    box_head: BoxHeadOutput | None = None
    detections: Detections | None = None
    anchor_targets: AnchorTargets | None = None
    rpn_targets: AnchorTargets | None = None  # of the anchors the RPN decoded (its loss); None without the head
    roi_targets: RoITargets | None = None
    losses: Losses | None = None
    notes: tuple[str, ...] = ()


class _Run:
    """One call of :meth:`Tracer.run`: stage keys, cache look-ups, timings."""

    def __init__(self, tracer: Tracer, settings: Settings, keys: dict[str, str],
                 should_stop: Callable[[], bool] | None = None) -> None:
        self.tracer, self.settings, self.keys = tracer, settings, dict(keys)
        self.should_stop = should_stop
        self._params: dict[str, StageParams] = {}
        self.timings: dict[str, float] = {}
        self.cached: list[str] = []

    def params(self, name: str) -> Any:
        """Stage ``name``'s record under this run's settings: all the stage receives, and what its key hashes."""
        record = self._params.get(name)
        if record is None:
            record = self._params[name] = stage_params(name, self.settings)
        return record

    def key(self, name: str) -> str:
        return stage_key(self.tracer.detector.key, name, tuple(self.keys[d] for d in DEPENDS[name]),
                         self.params(name))

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


def stage_key(model_key: str, name: str, input_keys: tuple[str, ...], params: StageParams) -> str:
    """A stage's cache key: the model, the stage, its inputs' keys and its parameter record (type and values)."""
    parts = (model_key, name, input_keys, type(params).__name__, dataclasses.astuple(params))
    return hashlib.sha1(repr(parts).encode()).hexdigest()


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
