"""One pipeline: training runs the tracer's stages, so a trace of a checkpoint resizes, anchors and pools exactly as
the training that made it did."""

from __future__ import annotations

import pytest
import torch

import frcnn.train as train_module
from frcnn.data.dataset import ShapesScenes
from frcnn.data.shapes import SceneConfig
from frcnn.models import load_model
from frcnn.models.registry import DEFAULT_SETTINGS
from frcnn.pipeline import PIPELINE, training_pass
from frcnn.stages.params import PreprocessParams
from frcnn.stages.preprocess import network_size, preprocess, to_original
from frcnn.trace import DEPENDS, TRACE_STAGES, Tracer
from frcnn.train import TrainConfig, train

TINY = SceneConfig(min_side=128, max_side=160, max_objects=3, min_box=24)
SETTINGS = DEFAULT_SETTINGS.replace({"input.min_size": 128, "input.max_size": 192,
                                     "rpn.pre_nms_top_n_train": 300, "rpn.post_nms_top_n_train": 64})


def test_the_trace_tables_come_from_the_pipeline():
    assert tuple(s.name for s in PIPELINE) == TRACE_STAGES
    for position, stage in enumerate(PIPELINE):
        assert DEPENDS[stage.name] == stage.inputs
        earlier = {s.name for s in PIPELINE[:position]} | {"image", "gt"}
        assert set(stage.inputs) <= earlier, stage.name  # the table is in an order that runs


def test_tracing_and_training_run_the_stages_in_the_tables_order(monkeypatch):
    import frcnn.pipeline as pipeline_module
    from frcnn.data.dataset import scene_tensors

    called: list[str] = []
    stage_of = {"preprocess": "preprocess", "run_backbone": "backbone", "settings_anchors": "anchors",
                "rpn_anchors": "rpn_anchors", "run_rpn_head": "rpn_head", "anchor_targets": "anchor_targets",
                "propose": "proposals", "roi_targets": "roi_targets", "four_losses": "losses"}
    for function, stage in stage_of.items():
        real = getattr(pipeline_module, function)

        def spy(*args, _real=real, _stage=stage, **kw):
            called.append(_stage)
            return _real(*args, **kw)

        monkeypatch.setattr(pipeline_module, function, spy)
    torch.manual_seed(0)
    det = load_model("default", "random", "cpu")
    image, boxes, labels = scene_tensors(3, 1)
    settings = det.defaults.replace({"input.min_size": 128, "input.max_size": 192})
    training_pass(det.module, image, boxes, labels, settings)
    trace = Tracer(det).run(image, settings, boxes, labels)
    order = [s.name for s in PIPELINE]
    assert list(trace.timings_ms) == sorted(trace.timings_ms, key=order.index)  # the tracer: the table's order
    assert called == [s for s in trace.timings_ms if s in stage_of.values()]  # training: the same sequence


@pytest.mark.parametrize("size", [(200, 300), (481, 97), (1000, 1000), (33, 2000)])
def test_the_resize_without_pixels_is_the_resize_preprocess_does(size):
    """anchor_fit sizes its grids by ``network_size``: the very sizes ``preprocess`` makes."""
    params = PreprocessParams(min_size=128, max_size=256)
    pre = preprocess(torch.zeros(3, *size, dtype=torch.uint8), params, [0.5] * 3, [0.25] * 3)
    assert network_size(size, params) == (pre.image_size, pre.padded_size)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two training steps, each image's pass through the pipeline captured, and the checkpoint."""
    passes = []

    def spy(module, image, boxes, labels, settings, min_size=None, seeds=None, training=True):
        result = training_pass(module, image, boxes, labels, settings, min_size, seeds, training)
        passes.append((image.detach().clone(), boxes.clone(), labels.clone(), result))
        return result

    data = ShapesScenes(2, seed=5, config=TINY)
    config = TrainConfig(steps=2, batch_size=1, warmup=1, scales=(128,), flip=False, checkpoint_every=2,
                         log_every=1)
    mp = pytest.MonkeyPatch()
    mp.setattr(train_module, "training_pass", spy)
    try:
        out = train("default", data, tmp_path_factory.mktemp("pipeline") / "m.pt", SETTINGS, config, "cpu",
                    progress=False)
    finally:
        mp.undo()
    return out, passes


def test_training_takes_the_training_proposal_counts(trained):
    _, passes = trained
    assert len(passes) == 2
    for *_, p in passes:
        assert p.losses.roi_classifier is not None and torch.isfinite(p.losses.total)


def test_a_trace_of_the_checkpoint_resizes_anchors_and_pools_as_training_did(trained):
    out, passes = trained
    det = load_model("default", out, "cpu")
    assert det.defaults == SETTINGS
    tracer = Tracer(det)
    for image, boxes, labels, p in passes:
        uint8 = (image * 255).round().to(torch.uint8)
        assert torch.equal(uint8.float() / 255, image)  # the very image training saw
        trace = tracer.run(uint8, det.defaults, boxes, labels)
        # resize: the same network input, the same scale
        assert torch.equal(trace.preprocess.tensor, p.preprocess.tensor)
        assert trace.preprocess.image_size == p.preprocess.image_size
        assert trace.preprocess.scale == p.preprocess.scale
        # anchors: the RPN decoded the same boxes
        assert trace.anchors_source == "settings"
        assert torch.equal(trace.rpn_anchors.boxes, to_original(p.anchors.boxes, p.preprocess.scale))
        assert torch.equal(trace.rpn_anchors.inside, p.anchors.inside)
        # pooling: the box head's RoIs pooled the same way, so with the checkpoint's weights the losses agree
        assert tracer._head_pooling(trace.features, det.defaults.roi.pool, det.defaults.roi.sampling_ratio) \
            == p.head_pooling
        with torch.no_grad():
            again = training_pass(det.module, image, boxes, labels, det.defaults, training=False)
        assert torch.equal(again.preprocess.tensor, p.preprocess.tensor)
        for name, value in trace.losses.as_dict().items():
            assert getattr(again.losses, name).item() == pytest.approx(value, rel=1e-4, abs=1e-6), name
