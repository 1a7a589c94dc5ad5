"""Training: the loss goes down, a resumed run equals an uninterrupted one, checkpoints load; the datasets."""

from __future__ import annotations

import json

import pytest
import torch

from frcnn.data.dataset import CocoFolder, ShapesScenes, open_dataset
from frcnn.data.shapes import CLASS_NAMES, SceneConfig, write_coco_dataset
from frcnn.errors import FrcnnError
from frcnn.models import load_model, read_weights_file
from frcnn.models.registry import DEFAULT_SETTINGS
from frcnn.train import TrainConfig, reproduce_commands, train

TINY = SceneConfig(min_side=128, max_side=160, max_objects=3, min_box=24)
SETTINGS = DEFAULT_SETTINGS.replace({"input.min_size": 128, "input.max_size": 192})


def _config(**kw):
    base = dict(steps=12, batch_size=2, lr=2e-3, warmup=1, scales=(128,), checkpoint_every=4, log_every=1,
                pre_nms_top_n=300, post_nms_top_n=64)
    return TrainConfig(**{**base, **kw})


def test_a_short_run_on_a_few_images_lowers_the_loss(tmp_path):
    data = ShapesScenes(2, seed=5, config=TINY)
    out = train("default", data, tmp_path / "m.pt", SETTINGS, _config(steps=30, flip=False), "cpu", progress=False)
    log = [json.loads(line) for line in out.with_suffix(".log.jsonl").read_text().splitlines()]
    first = sum(r["total"] for r in log[:5]) / 5
    last = sum(r["total"] for r in log[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert {"rpn_objectness", "rpn_box", "roi_classifier", "roi_box", "lr"} <= log[0].keys()


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    data = ShapesScenes(6, seed=5, config=TINY)
    whole = train("default", data, tmp_path / "whole.pt", SETTINGS, _config(), "cpu", progress=False)
    calls = {"n": 0}

    def stop_after_5():
        calls["n"] += 1
        return calls["n"] > 5

    part = train("default", data, tmp_path / "part.pt", SETTINGS, _config(), "cpu", progress=False,
                 should_stop=stop_after_5)
    assert read_weights_file(part)["meta"]["step"] == 5 and "optimizer" in read_weights_file(part)["meta"]
    train("default", data, part, SETTINGS, _config(), "cpu", progress=False)
    a, b = read_weights_file(whole), read_weights_file(part)
    assert a["meta"]["step"] == b["meta"]["step"] == 12 and "optimizer" not in a["meta"]
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_a_trained_checkpoint_loads_with_its_settings_and_classes(tmp_path):
    data = ShapesScenes(2, seed=5, config=TINY)
    out = train("default", data, tmp_path / "m.pt", SETTINGS, _config(steps=2), "cpu", progress=False)
    det = load_model("default", out, "cpu")
    assert det.class_names == CLASS_NAMES and det.defaults == SETTINGS
    assert "train_seconds" in read_weights_file(out)["meta"]


def test_train_refuses_another_models_checkpoint_and_untrainable_models(tmp_path):
    data = ShapesScenes(2, seed=5, config=TINY)
    out = train("default", data, tmp_path / "m.pt", SETTINGS, _config(steps=1), "cpu", progress=False)
    with pytest.raises(FrcnnError, match="not 'vgg16'"):
        train("vgg16", data, out, None, _config(steps=1), "cpu", progress=False)
    with pytest.raises(FrcnnError, match="cannot be trained"):
        train("resnet50_fpn_v2", data, tmp_path / "r.pt", SETTINGS, _config(steps=1), "cpu", progress=False)


def test_coco_folder_reads_back_what_the_generator_wrote(tmp_path):
    write_coco_dataset(tmp_path, n=3, seed=9, config=TINY)
    folder = open_dataset(tmp_path)
    assert isinstance(folder, CocoFolder) and len(folder) == 3 and folder.class_names == CLASS_NAMES
    scenes = ShapesScenes(3, seed=9, config=TINY)
    for i in range(3):
        image, boxes, labels = folder[i]
        want_image, want_boxes, want_labels = scenes[i]
        assert torch.equal(image, want_image) and torch.equal(labels, want_labels)
        torch.testing.assert_close(boxes, want_boxes)


@pytest.mark.parametrize("spec, words", [("shapes:x:1", "expected shapes:N:SEED"), ("shapes:0:1", "positive"),
                                         ("/nonexistent/folder", "no such folder")])
def test_bad_dataset_specs(spec, words):
    with pytest.raises(FrcnnError, match=words):
        open_dataset(spec)


def test_a_folder_without_annotations_is_refused(tmp_path):
    with pytest.raises(FrcnnError, match="no annotations.json"):
        open_dataset(tmp_path)
    (tmp_path / "annotations.json").write_text("{not json")
    with pytest.raises(FrcnnError, match="not a readable COCO file"):
        open_dataset(tmp_path)


def test_until_stops_resumably_on_the_full_schedule_and_every_run_is_recorded(tmp_path):
    data = ShapesScenes(6, seed=5, config=TINY)
    whole = train("default", data, tmp_path / "whole.pt", SETTINGS, _config(), "cpu", progress=False, command="a")
    part = train("default", data, tmp_path / "part.pt", SETTINGS, _config(), "cpu", progress=False, until=6,
                 command="first")
    meta = read_weights_file(part)["meta"]
    assert meta["step"] == 6 and "optimizer" in meta
    assert [r["lr"] for r in meta["log"]] == [r["lr"] for r in read_weights_file(whole)["meta"]["log"][:6]]
    train("default", data, part, SETTINGS, _config(), "cpu", progress=False, command="second")
    a, b = read_weights_file(whole), read_weights_file(part)
    assert b["meta"]["step"] == 12 and b["meta"]["command"] == "first"
    assert b["meta"]["runs"] == [{"from_step": 0, "command": "first"}, {"from_step": 6, "command": "second"}]
    assert reproduce_commands(b["meta"]["runs"]) == ["first --until 6", "second"]
    assert reproduce_commands([{"from_step": 0, "command": "a"}, {"from_step": 4, "command": "a"},
                               {"from_step": 9, "command": "b"}]) == ["a --until 9", "b"]
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_training_on_from_a_finished_checkpoint_warms_the_learning_rate_up_again(tmp_path):
    """A finished checkpoint keeps no optimiser state: a longer schedule goes on with a fresh AdamW, so its
    learning rate rises again over ``warmup`` steps from where it took over (no jump at full size)."""
    from frcnn.train import _lr_at

    data = ShapesScenes(4, seed=5, config=TINY)
    out = train("default", data, tmp_path / "m.pt", SETTINGS, _config(steps=6), "cpu", progress=False)
    assert "optimizer" not in read_weights_file(out)["meta"]
    longer = _config(steps=14, warmup=4)
    train("default", data, out, SETTINGS, longer, "cpu", progress=False, until=9)
    meta = read_weights_file(out)["meta"]
    assert meta["restart_step"] == 6 and "optimizer" in meta  # kept across a stop, for the resumed run
    train("default", data, out, SETTINGS, longer, "cpu", progress=False)
    lrs = {r["step"]: r["lr"] for r in read_weights_file(out)["meta"]["log"] if "lr" in r}
    cosine = [_lr_at(s, longer) for s in range(6, 14)]
    assert [lrs[s + 1] for s in range(6, 14)] == pytest.approx(
        [c * min(1.0, (s - 6 + 1) / 4) for s, c in zip(range(6, 14), cosine, strict=True)])
    assert lrs[7] < lrs[8] < lrs[9] and read_weights_file(out)["meta"]["step"] == 14
