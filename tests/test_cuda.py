"""The CUDA path, where a GPU is at hand (skipped elsewhere; CI has none): every stage of a trace runs on the
GPU (no silent CPU fallback), agrees with the CPU where the arithmetic is deterministic, re-traces from the
cache, and a training step runs there.

The minibatch draws use the device's own RNG (torchvision's sampler calls ``torch.randperm`` on the labels'
device), so the sampled anchors and RoIs, and with them the losses, differ between CPU and CUDA by design;
they are compared for being finite and repeatable, not equal.
"""

from __future__ import annotations

import math

import pytest
import torch

from frcnn import StageCache, Tracer
from frcnn.data.dataset import ShapesScenes, scene_tensors
from frcnn.data.shapes import SceneConfig
from frcnn.models import load_model
from frcnn.models.registry import DEFAULT_SETTINGS
from frcnn.train import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

SMALL = {"input.min_size": 256, "input.max_size": 384}


@pytest.fixture(scope="module")
def detectors():
    torch.manual_seed(0)
    cpu = load_model("default", "random", "cpu")
    gpu = load_model("default", "random", "cuda")
    gpu.module.load_state_dict(cpu.module.state_dict())  # the same random weights on both
    return cpu, gpu


@pytest.fixture(scope="module")
def scene():
    return scene_tensors(3, 1)


def _tensors(value):
    """Every tensor inside a stage result (dataclasses, tuples, dicts)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            yield from _tensors(getattr(value, name))


def test_auto_picks_the_gpu():
    assert load_model("default", "random").device.type == "cuda"


def test_every_stage_runs_on_the_gpu(detectors, scene):
    _, gpu = detectors
    image, boxes, labels = scene  # on the CPU, as the loaders give them: the tracer moves them once
    trace = Tracer(gpu).run(image, gpu.defaults.replace(SMALL), boxes, labels)
    stages = ("preprocess", "features", "anchors", "rpn_anchors", "rpn", "proposals", "roi_pooling", "box_head",
              "detections", "anchor_targets", "roi_targets", "losses")
    for name in stages:
        found = list(_tensors(getattr(trace, name)))
        assert found, name
        assert all(t.device.type == "cuda" for t in found), name
    assert trace.device.startswith("cuda")


def test_gpu_and_cpu_agree_up_to_the_rpn(detectors, scene):
    cpu, gpu = detectors
    image, boxes, labels = scene
    settings = cpu.defaults.replace(SMALL)
    a = Tracer(cpu).run(image, settings, boxes, labels)
    b = Tracer(gpu).run(image, settings, boxes, labels)
    torch.testing.assert_close(b.preprocess.tensor.cpu(), a.preprocess.tensor, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.features.maps[0].cpu(), a.features.maps[0], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(b.rpn.objectness.cpu(), a.rpn.objectness, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(b.anchors.boxes.cpu(), a.anchors.boxes)
    torch.testing.assert_close(b.anchor_targets.labels.cpu(), a.anchor_targets.labels)  # IoU labels, no draw
    for name in ("rpn_objectness", "rpn_box", "roi_classifier", "roi_box"):
        assert math.isfinite(float(getattr(b.losses, name))), name


def test_a_gpu_re_trace_is_repeatable_and_cached(detectors, scene):
    _, gpu = detectors
    image, boxes, labels = scene
    tracer = Tracer(gpu, StageCache())
    settings = gpu.defaults.replace(SMALL)
    first = tracer.run(image, settings, boxes, labels)
    again = tracer.run(image, settings.replace({"roi.score_thresh": 0.3}), boxes, labels)
    assert [s for s in again.timings_ms if s not in again.cached] == ["detections"]
    cold = Tracer(gpu, StageCache()).run(image, settings, boxes, labels)  # the seeded draws repeat on the GPU
    torch.testing.assert_close(cold.anchor_targets.sampled_positive, first.anchor_targets.sampled_positive)
    torch.testing.assert_close(cold.anchor_targets.sampled_negative, first.anchor_targets.sampled_negative)


def test_a_training_step_runs_on_the_gpu(tmp_path):
    data = ShapesScenes(2, seed=5, config=SceneConfig(min_side=128, max_side=160, max_objects=3, min_box=24))
    settings = DEFAULT_SETTINGS.replace({"input.min_size": 128, "input.max_size": 192})
    config = TrainConfig(steps=3, batch_size=2, warmup=1, scales=(128,), checkpoint_every=3, log_every=1,
                         pre_nms_top_n=300, post_nms_top_n=64)
    out = train("default", data, tmp_path / "m.pt", settings, config, "cuda", progress=False)
    det = load_model("default", out, "cuda")
    assert det.device.type == "cuda"
    assert len(Tracer(det).run(scene_tensors(5, 0, data.config)[0]).proposals.boxes) > 0
