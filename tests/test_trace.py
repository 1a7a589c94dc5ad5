"""The tracer against torchvision's own FasterRCNN, its stage cache, and its thread safety."""

from __future__ import annotations

import copy
import threading

import pytest
import torch

from frcnn.models import load_model
from frcnn.models.registry import settings_from_torchvision
from frcnn.settings import Settings
from frcnn.trace import DEPENDS, STAGE_SETTINGS, TRACE_STAGES, StageCache, Tracer

SMALL = {"input.min_size": 256, "input.max_size": 384}


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return load_model("default", "random", "cpu")


@pytest.fixture(scope="module")
def scene():
    from frcnn.data.dataset import scene_tensors

    return scene_tensors(3, 1)


def _reference_copy(det, min_size=256, max_size=384, score_thresh=0.0):
    module = copy.deepcopy(det.module)
    module.transform.min_size = (min_size,)
    module.transform.max_size = max_size
    module.roi_heads.score_thresh = score_thresh
    return module


@pytest.mark.parametrize("name", ["default", "vgg16", "mobilenet_v3_fpn",
                                  pytest.param("resnet50_fpn_v2", marks=pytest.mark.slow)])
def test_detections_equal_torchvision(name):
    """Tracing stage by stage gives torchvision's FasterRCNN.forward result exactly, on every model."""
    torch.manual_seed(1)
    det = load_model(name, "random", "cpu")
    image = (torch.rand(3, 200, 300) * 255).to(torch.uint8)
    module = _reference_copy(det)
    with torch.no_grad():
        ref = module([image.float() / 255])[0]
    stride = {"anchors.stride": det.defaults.anchors.stride}  # the module does not say; its defaults do
    trace = Tracer(det).run(image, settings_from_torchvision(module).replace(stride))
    d = trace.detections
    assert len(d.boxes) == len(ref["boxes"]) > 0
    torch.testing.assert_close(d.boxes, ref["boxes"], atol=1e-3, rtol=0)
    torch.testing.assert_close(d.scores, ref["scores"])
    assert torch.equal(d.labels, ref["labels"])
    assert trace.anchors_source == "settings"


def test_losses_equal_torchvision(detector, scene):
    """With every anchor and RoI in the minibatch (no random draw) the four losses are torchvision's."""
    image, boxes, labels = scene
    module = _reference_copy(detector)
    big = 100_000
    module.rpn.fg_bg_sampler.batch_size_per_image = big
    module.roi_heads.fg_bg_sampler.batch_size_per_image = big
    settings = settings_from_torchvision(module).replace({
        "rpn.batch_size_per_image": big, "roi.batch_size_per_image": big,
        "rpn.pre_nms_top_n": 2000, "rpn.post_nms_top_n": 1000})
    module.rpn._pre_nms_top_n["training"] = 2000
    module.rpn._post_nms_top_n["training"] = 1000
    module.train()
    module.backbone.eval()  # batch-norm statistics as in the trace
    with torch.no_grad():
        ref = module([image.float() / 255], [{"boxes": boxes, "labels": labels}])
    trace = Tracer(detector).run(image, settings, boxes, labels)
    got = trace.losses.as_dict()
    assert got["rpn_objectness"] == pytest.approx(float(ref["loss_objectness"]), rel=1e-4)
    assert got["rpn_box"] == pytest.approx(float(ref["loss_rpn_box_reg"]), rel=1e-4)
    assert got["roi_classifier"] == pytest.approx(float(ref["loss_classifier"]), rel=1e-4)
    assert got["roi_box"] == pytest.approx(float(ref["loss_box_reg"]), rel=1e-4)


class _CallCounter:
    def __init__(self, module):
        self.calls = 0
        module.register_forward_hook(self)

    def __call__(self, *args):
        self.calls += 1


def test_nms_change_reuses_backbone_and_rpn_head(scene):
    det = load_model("default", "random", "cpu")
    backbone_calls = _CallCounter(det.module.backbone)
    head_calls = _CallCounter(det.module.rpn.head)
    image, boxes, labels = scene
    tracer = Tracer(det)
    settings = det.defaults.replace(SMALL)
    first = tracer.run(image, settings, boxes, labels)
    second = tracer.run(image, settings.replace({"rpn.nms_thresh": 0.5}), boxes, labels)
    assert backbone_calls.calls == 1 and head_calls.calls == 1
    assert {"preprocess", "backbone", "anchors", "rpn_head", "anchor_targets"} <= set(second.cached)
    assert "proposals" not in second.cached and "detections" not in second.cached
    assert first.cached == ()
    assert second.proposals.counts["nms"] <= first.proposals.counts["nms"]  # lower IoU suppresses more


def test_proposal_changes_pool_and_classify_only_the_new_rois(detector, scene, monkeypatch):
    """After an NMS or top-N change, RoIs seen before on the same features come from the per-RoI memo: only
    new ones are pooled and run through the box head, and the result equals a cold trace."""
    import frcnn.trace as trace_module

    pooled_rows = []
    real = trace_module.pool_rois

    def counting(feats, boxes, *args, **kwargs):
        pooled_rows.append(len(boxes))
        return real(feats, boxes, *args, **kwargs)

    monkeypatch.setattr(trace_module, "pool_rois", counting)
    image, boxes, labels = scene
    base = detector.defaults.replace({**SMALL, "rpn.post_nms_top_n": 200})
    tracer = Tracer(detector)
    tracer.run(image, base, boxes, labels)
    for change in ({"rpn.nms_thresh": 0.65}, {"rpn.post_nms_top_n": 150}, {"rpn.nms_thresh": 0.6}):
        pooled_rows.clear()
        settings = base.replace(change)
        warm = tracer.run(image, settings, boxes, labels)
        assert sum(pooled_rows) < len(warm.proposals.boxes), change  # most RoIs were pooled before
        cold = Tracer(detector, StageCache()).run(image, settings, boxes, labels)
        torch.testing.assert_close(warm.roi_pooling.features, cold.roi_pooling.features, rtol=0, atol=0)
        torch.testing.assert_close(warm.box_head.class_logits, cold.box_head.class_logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(warm.detections.boxes, cold.detections.boxes, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(warm.losses.total, cold.losses.total, rtol=1e-5, atol=1e-5)


def test_score_threshold_change_reruns_only_detections(detector, scene):
    image, boxes, labels = scene
    tracer = Tracer(detector, StageCache())
    settings = detector.defaults.replace(SMALL)
    tracer.run(image, settings, boxes, labels)
    again = tracer.run(image, settings.replace({"roi.score_thresh": 0.5}), boxes, labels)
    recomputed = [s for s in again.timings_ms if s not in again.cached]
    assert recomputed == ["detections"]


def test_every_setting_belongs_to_exactly_one_stage():
    shared = {"losses": ("roi.pool", "roi.sampling_ratio"),  # read again where a stage redoes another's work
              "rpn_anchor_targets": STAGE_SETTINGS["anchor_targets"]}
    owned = [k for stage, keys in STAGE_SETTINGS.items() for k in keys if k not in shared.get(stage, ())]
    assert sorted(owned) == sorted(Settings().to_flat())
    assert set(DEPENDS) == set(TRACE_STAGES)


def test_each_setting_invalidates_only_downstream_stages(detector, scene):
    """Changing one key recomputes its own stage and what depends on it, and nothing upstream."""
    image, boxes, labels = scene
    tracer = Tracer(detector)
    base = detector.defaults.replace(SMALL)
    tracer.run(image, base, boxes, labels)
    changes = {"rpn.fg_iou_thresh": 0.6, "rpn.pre_nms_top_n": 3000, "roi.fg_iou_thresh": 0.6,
               "roi.pool": "roi_pool", "roi.nms_thresh": 0.4, "anchors.sizes": (48.0, 96.0, 192.0, 384.0)}
    for key, value in changes.items():
        trace = tracer.run(image, base.replace({key: value}), boxes, labels)
        owners = {s for s, keys in STAGE_SETTINGS.items() if key in keys and s in trace.timings_ms}  # that ran
        assert owners, key
        downstream = set().union(*(_downstream(o) for o in owners))
        recomputed = {s for s in trace.timings_ms if s not in trace.cached}
        assert owners <= recomputed, key
        assert recomputed <= downstream, (key, recomputed - downstream)


def _downstream(stage):
    # when the settings' anchors fit the head, rpn_anchor_targets *is* anchor_targets (the same result and key)
    graph = {**DEPENDS, "rpn_anchor_targets": (*DEPENDS["rpn_anchor_targets"], "anchor_targets")}
    out = {stage}
    changed = True
    while changed:
        changed = False
        for s, deps in graph.items():
            if s not in out and out & set(deps):
                out.add(s)
                changed = True
    return out


def test_threads_with_different_settings_get_their_own_results(detector, scene):
    """8 threads, one shared model and cache, 8 settings over 2 images: each equals its single-threaded trace."""
    from frcnn.data.dataset import scene_tensors

    scenes = [scene, scene_tensors(3, 2)]
    pairs = [(0.3, 0.1), (0.5, 0.2), (0.7, 0.05), (0.9, 0.3), (0.4, 0.0), (0.6, 0.15), (0.8, 0.25), (0.55, 0.5)]
    variants = [detector.defaults.replace({**SMALL, "rpn.nms_thresh": t, "roi.score_thresh": s,
                                           "rpn.sample_seed": i}) for i, (t, s) in enumerate(pairs)]
    jobs = [(scenes[i % 2], v) for i, v in enumerate(variants)]
    expected = [Tracer(detector, StageCache()).run(img, s, b, lab) for (img, b, lab), s in jobs]
    shared = Tracer(detector, StageCache())
    results = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def work(i):
        (img, b, lab), s = jobs[i]
        start.wait()  # all at once
        for _ in range(2):
            results[i] = shared.run(img, s, b, lab)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected, strict=True):
        assert torch.equal(got.proposals.boxes, want.proposals.boxes)
        assert torch.equal(got.detections.boxes, want.detections.boxes)
        assert torch.equal(got.detections.scores, want.detections.scores)
        assert torch.equal(got.anchor_targets.sampled_positive, want.anchor_targets.sampled_positive)
    assert len({len(r.detections.boxes) for r in results}) > 1  # the settings really differed
    assert len({r.proposals.counts["nms"] for r in results}) > 1


def test_trace_is_in_original_pixels(detector, scene):
    image, boxes, labels = scene
    trace = Tracer(detector).run(image, detector.defaults.replace(SMALL), boxes, labels)
    h, w = image.shape[-2:]
    assert trace.image_size == (h, w)
    for b in (trace.proposals.boxes, trace.detections.boxes):
        assert float(b[:, 0].min()) >= 0 and float(b[:, 2].max()) <= w + 1e-3
        assert float(b[:, 1].min()) >= 0 and float(b[:, 3].max()) <= h + 1e-3
    torch.testing.assert_close(trace.gt_boxes, boxes)
    # anchors are kept in original px: scaled back to network px, the square ones are their size exactly
    sy, sx = trace.preprocess.scale
    net = trace.anchors.cell[0] * torch.tensor([sx, sy, sx, sy])
    n = len(trace.anchors.sizes[0])
    square = net[n:2 * n]  # cell anchors are ordered (ratio, size); ratio 1 is the second
    torch.testing.assert_close(square[:, 2] - square[:, 0], torch.tensor(trace.anchors.sizes[0]), atol=1e-3, rtol=0)


def test_no_ground_truth_and_empty_ground_truth(detector, scene):
    image, _, _ = scene
    tracer = Tracer(detector)
    settings = detector.defaults.replace(SMALL)
    without = tracer.run(image, settings)
    assert without.anchor_targets is None and without.losses is None
    empty = tracer.run(image, settings, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    labels = empty.anchor_targets.labels
    assert int((labels == 1).sum()) == 0 and int((labels == 0).sum()) > 0
    assert int((empty.roi_targets.labels > 0).sum()) == 0
    assert empty.losses.as_dict()["rpn_box"] == 0.0


def test_anchors_that_do_not_fit_the_head_fall_back_with_a_note(detector, scene):
    image, _, _ = scene
    settings = detector.defaults.replace({**SMALL, "anchors.sizes": (64.0, 128.0)})
    trace = Tracer(detector).run(image, settings)
    assert trace.anchors_source == "model"
    assert trace.anchors.num_per_location == (6,)
    assert trace.rpn_anchors.num_per_location == (30,)
    assert any("anchors per location" in n for n in trace.notes)
    other_stride = Tracer(detector).run(image, settings.replace({"anchors.sizes": (16, 32, 64, 128, 256, 512),
                                                                 "anchors.stride": 16}))
    assert other_stride.anchors.strides == (16,) and other_stride.anchors_source == "model"


def test_a_copied_cache_is_independent():
    cache = StageCache(max_entries=3, max_bytes=1000)
    cache.put("a", torch.zeros(10))
    other = cache.copy()
    other.put("b", torch.zeros(10))
    assert cache.get("b") is None and other.get("a") is not None and cache.size == (1, 40)
    assert other.size == (2, 80) and (other.max_entries, other.max_bytes) == (3, 1000)


def test_cache_is_bounded():
    cache = StageCache(max_entries=3, max_bytes=1000)
    for i in range(5):
        cache.put(str(i), torch.zeros(10))  # 40 bytes each
    assert cache.size == (3, 120) and cache.get("0") is None and cache.get("4") is not None
    cache.put("big", torch.zeros(100))  # 400 bytes
    cache.put("big2", torch.zeros(200))  # 800 bytes: evicts until under 1000
    entries, size = cache.size
    assert size <= 1000 and cache.get("big2") is not None
    cache.put("huge", torch.zeros(1000))  # larger than the whole cache: not kept
    assert cache.get("huge") is None


def test_anchor_settings_that_fall_back_to_the_models_anchors_keep_the_proposals_cached(detector, scene):
    image, boxes, labels = scene
    tracer = Tracer(detector)
    base = detector.defaults.replace(SMALL)
    tracer.run(image, base, boxes, labels)
    other = tracer.run(image, base.replace({"anchors.stride": 16}), boxes, labels)  # the head cannot use these
    assert other.anchors_source == "model"
    assert {"proposals", "roi_pooling", "box_head", "detections"} <= set(other.cached)
    assert "anchors" not in other.cached and "anchor_targets" not in other.cached
    assert "rpn_anchor_targets" not in other.cached  # the model's anchors labelled once, for the RPN loss
    third = tracer.run(image, base.replace({"anchors.stride": 32}), boxes, labels)  # another unusable stride
    assert {"rpn_anchor_targets", "losses"} <= set(third.cached)  # their labels and the losses stay cached
    assert "anchor_targets" not in third.cached
    cold = Tracer(detector).run(image, base.replace({"anchors.stride": 32}), boxes, labels)
    for name in ("rpn_objectness", "rpn_box", "roi_classifier", "roi_box"):
        torch.testing.assert_close(getattr(third.losses, name), getattr(cold.losses, name))


def test_a_trace_without_the_head_stops_after_the_rpn_and_a_full_trace_reuses_it(scene):
    det = load_model("default", "random", "cpu")
    box_head_calls = _CallCounter(det.module.roi_heads.box_head)
    image, boxes, labels = scene
    settings = det.defaults.replace(SMALL)
    tracer = Tracer(det)
    rpn_only = tracer.run(image, settings, boxes, labels, head=False)
    assert box_head_calls.calls == 0
    assert rpn_only.roi_pooling is None and rpn_only.box_head is None and rpn_only.detections is None
    assert rpn_only.roi_targets is None and rpn_only.losses is None
    assert set(rpn_only.timings_ms) == {"preprocess", "backbone", "anchors", "rpn_anchors", "rpn_head", "proposals",
                                        "anchor_targets"}
    assert "detections" not in rpn_only.counts() and rpn_only.counts()["proposals"] == len(rpn_only.proposals.boxes)
    moved = tracer.run(image, settings.replace({"rpn.nms_thresh": 0.5}), boxes, labels, head=False)
    assert box_head_calls.calls == 0 and set(moved.timings_ms) - set(moved.cached) == {"proposals"}
    full = tracer.run(image, settings, boxes, labels)  # the RPN half from the cache, then the head
    assert {"backbone", "rpn_head", "proposals", "anchor_targets"} <= set(full.cached) and box_head_calls.calls > 0
    cold = Tracer(det).run(image, settings, boxes, labels)
    for a, b in [(rpn_only.proposals.boxes, cold.proposals.boxes), (rpn_only.proposals.scores, cold.proposals.scores),
                 (rpn_only.anchor_targets.labels, cold.anchor_targets.labels),
                 (full.detections.boxes, cold.detections.boxes), (full.losses.roi_box, cold.losses.roi_box)]:
        assert torch.equal(a, b)
    from frcnn.export import trace_to_dict

    exported = trace_to_dict(rpn_only)
    assert "detections" not in exported and len(exported["proposals"]["boxes"]) == len(rpn_only.proposals.boxes)
