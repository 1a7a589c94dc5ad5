"""Each stage owns its parameters: its record holds exactly the settings it reads, its cache key hashes the record,
and a setting outside the record can neither be read by the stage nor change its key."""

from __future__ import annotations

import dataclasses

import pytest

from frcnn.errors import FrcnnError
from frcnn.pipeline import PIPELINE, stage_params
from frcnn.settings import PAPER, POOL_OPS, TORCHVISION_COCO, Settings, flat_keys
from frcnn.stages.params import AnchorTargetParams, ProposalParams, StageParams
from frcnn.trace import STAGE_SETTINGS, stage_key


def _changed(settings: Settings, key: str) -> Settings:
    """``settings`` with ``key`` moved to another valid value."""
    value = settings.get(key)
    if isinstance(value, bool):
        candidates = [not value]
    elif isinstance(value, int):
        candidates = [value - 1, value + 1]
    elif isinstance(value, float):
        candidates = [value - 0.01, value + 0.01]
    elif isinstance(value, str):
        candidates = [op for op in POOL_OPS if op != value]
    else:
        candidates = [(*value, 3.0), value[:-1]]
    for candidate in candidates:
        try:
            return settings.replace({key: candidate})
        except FrcnnError:
            continue
    raise AssertionError(f"no other valid value for {key}")


def test_each_record_holds_exactly_the_keys_listed_for_its_stage():
    for stage in PIPELINE:
        assert issubclass(stage.params, StageParams)
        record = stage_params(stage.name, PAPER)
        keys = STAGE_SETTINGS[stage.name]
        assert len({f.name for f in dataclasses.fields(record)}) == len(keys), stage.name
        for f, key in zip(dataclasses.fields(record), keys, strict=True):
            assert PAPER.get(key) == getattr(record, f.name), (stage.name, key)
    listed = {k for keys in STAGE_SETTINGS.values() for k in keys}
    assert listed == set(flat_keys())  # every setting is some stage's


@pytest.mark.parametrize("base", [PAPER, TORCHVISION_COCO], ids=["paper", "coco"])
def test_a_setting_changes_a_stages_key_exactly_when_its_record_holds_it(base):
    inputs = ("k1", "k2")
    for key in flat_keys():
        other = _changed(base, key)
        for stage in PIPELINE:
            before = stage_key("model", stage.name, inputs, stage_params(stage.name, base))
            after = stage_key("model", stage.name, inputs, stage_params(stage.name, other))
            assert (before != after) == (key in STAGE_SETTINGS[stage.name]), (key, stage.name)


def test_a_stage_cannot_read_a_setting_its_record_does_not_hold():
    record = ProposalParams.from_settings(PAPER)
    with pytest.raises(AttributeError):
        record.fg_iou_thresh  # noqa: B018  (an anchor-target setting)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.nms_thresh = 0.1  # type: ignore[misc]


def test_the_stage_functions_take_their_record_or_the_section():
    assert ProposalParams.coerce(PAPER.rpn) == ProposalParams.from_settings(PAPER)
    assert AnchorTargetParams.coerce(PAPER) == AnchorTargetParams.from_settings(PAPER)
    record = ProposalParams.from_settings(PAPER.replace({"rpn.pre_nms_top_n_train": 2500}))
    assert record.top_n(training=True) == (2500, 2000) and record.top_n(training=False) == (6000, 300)


def test_a_trace_hands_each_stage_its_record(monkeypatch):
    """Every stage function of a full trace (ground truth, RoI head) is called with its record, not a section."""
    import torch

    import frcnn.trace as trace_module
    from frcnn.data.dataset import scene_tensors
    from frcnn.models import load_model

    seen: dict[str, type] = {}
    for name in ("preprocess", "anchor_targets", "propose", "roi_targets", "detect", "settings_anchors"):
        real = getattr(trace_module, name)

        def spy(*args, _real=real, _name=name, **kw):
            seen[_name] = type(next(a for a in args if isinstance(a, StageParams)))
            return _real(*args, **kw)

        monkeypatch.setattr(trace_module, name, spy)
    torch.manual_seed(0)
    det = load_model("default", "random", "cpu")
    image, boxes, labels = scene_tensors(3, 1)
    trace = trace_module.Tracer(det).run(image, det.defaults.replace({"input.min_size": 128, "input.max_size": 192}),
                                         boxes, labels)
    assert trace.losses is not None
    assert {n: t.__name__ for n, t in seen.items()} == {
        "preprocess": "PreprocessParams", "anchor_targets": "AnchorTargetParams", "propose": "ProposalParams",
        "roi_targets": "RoITargetParams", "detect": "DetectionParams", "settings_anchors": "AnchorParams"}
