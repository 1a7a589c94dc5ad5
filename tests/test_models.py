"""The model registry, weight loading (safe, strict, offline-aware) and checkpoints."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from frcnn.errors import FrcnnError
from frcnn.models import MODEL_NAMES, load_model, pick_device, save_checkpoint
from frcnn.models.registry import DEFAULT_SETTINGS, OFFLINE_ENV
from frcnn.settings import Settings
from frcnn.trace import Tracer


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


def test_registry_has_the_four_models():
    assert set(MODEL_NAMES) == {"default", "vgg16", "resnet50_fpn_v2", "mobilenet_v3_fpn"}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_builds_offline_with_random_weights(name):
    det = load_model(name, "random", "cpu")
    assert det.class_names[0] == "__background__"
    assert det.module.training is False
    assert det.weights == "random"
    k = [len(s) * len(det.trained_anchor_ratios) for s in det.trained_anchor_sizes]
    assert det.module.rpn.head.cls_logits.out_channels == k[0]


def test_coco_names():
    det = load_model("mobilenet_v3_fpn", "random", "cpu")
    assert len(det.class_names) == 91 and det.class_names[1] == "person"
    assert det.multi_level and det.defaults.input.min_size == 800


def test_unknown_model_and_device():
    with pytest.raises(FrcnnError, match="unknown model"):
        load_model("yolo")
    with pytest.raises(FrcnnError, match="device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(FrcnnError, match="no CUDA"):
            pick_device("cuda")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_offline_pretrained_says_which_file_to_put_where(offline, tmp_path):
    with pytest.raises(FrcnnError) as info:
        load_model("resnet50_fpn_v2", "pretrained", "cpu")
    message = str(info.value)
    assert "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth" in message and str(tmp_path / "hub") in message
    assert "\n" not in message


def test_offline_auto_falls_back_to_random_with_a_note(offline):
    det = load_model("mobilenet_v3_fpn", "auto", "cpu")
    assert det.weights == "random" and any("--weights" in n for n in det.notes)
    torch.manual_seed(123)  # the fallback is the seeded random model, whatever the global seed
    again, seeded = load_model("mobilenet_v3_fpn", "auto", "cpu"), load_model("mobilenet_v3_fpn", "random", "cpu")
    for a, b, c in zip(det.module.state_dict().values(), again.module.state_dict().values(),
                       seeded.module.state_dict().values(), strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    det = load_model("default", "random", "cpu")
    path = tmp_path / "model.pt"
    save_checkpoint(path, "default", list(det.class_names), det.defaults.to_flat(), det.module.state_dict())
    again = load_model("default", path, "cpu")
    assert again.defaults == det.defaults and again.class_names == det.class_names
    image = (torch.rand(3, 128, 160) * 255).to(torch.uint8)
    small = det.defaults.replace({"input.min_size": 128, "input.max_size": 256})
    a, b = Tracer(det).run(image, small), Tracer(again).run(image, small)
    assert torch.equal(a.detections.boxes, b.detections.boxes) and torch.equal(a.proposals.scores, b.proposals.scores)


def test_checkpoint_settings_set_the_architecture(tmp_path):
    settings = DEFAULT_SETTINGS.replace({"anchors.sizes": (64, 128), "anchors.ratios": (1.0,)})
    from frcnn.models.registry import build_default

    module = build_default(4, settings)
    path = tmp_path / "small.pt"
    save_checkpoint(path, "default", ["__background__", "a", "b", "c"], settings.to_flat(), module.state_dict())
    det = load_model("default", path, "cpu")
    assert det.trained_anchor_sizes == ((64.0, 128.0),) and det.module.rpn.head.cls_logits.out_channels == 2
    assert det.class_names == ("__background__", "a", "b", "c")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ["FRCNN_EVIL_MARK"],))


def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path, monkeypatch):
    mark = tmp_path / "ran"
    monkeypatch.setenv("FRCNN_EVIL_MARK", str(mark))
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Evil()}, path)
    with pytest.raises(FrcnnError, match="refused"):
        load_model("default", path, "cpu")
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(FrcnnError):
        load_model("default", raw, "cpu")
    assert not mark.exists()


def test_truncated_empty_and_missing_files(tmp_path):
    det = load_model("default", "random", "cpu")
    good = tmp_path / "good.pt"
    save_checkpoint(good, "default", list(det.class_names), det.defaults.to_flat(), det.module.state_dict())
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    for path, words in [(cut, "truncated or corrupt"), (tmp_path / "empty.pt", "empty"),
                        (tmp_path / "none.pt", "no such file")]:
        with pytest.raises(FrcnnError, match=words):
            load_model("default", path, "cpu")


def test_other_architectures_are_refused_naming_what_differs(tmp_path):
    det = load_model("default", "random", "cpu")
    vgg_file = tmp_path / "vgg.pt"
    save_checkpoint(vgg_file, "vgg16", ["__background__", "x"], Settings().to_flat(), {"w": torch.zeros(1)})
    with pytest.raises(FrcnnError, match="checkpoint of model 'vgg16'"):
        load_model("default", vgg_file, "cpu")
    state = det.module.state_dict()
    other = dict(state)
    other["rpn.head.cls_logits.weight"] = torch.zeros(9, 256, 1, 1)
    other["rpn.head.cls_logits.bias"] = torch.zeros(9)
    raw = tmp_path / "anchors.pth"
    torch.save(other, raw)
    with pytest.raises(FrcnnError, match="9 anchors per location in the file, 30 in the model"):
        load_model("default", raw, "cpu")
    classes = dict(state)  # a head for 3 classes, but box regression still for 6: inconsistent
    classes["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(3, 256)
    classes["roi_heads.box_predictor.cls_score.bias"] = torch.zeros(3)
    torch.save(classes, raw)
    with pytest.raises(FrcnnError, match=r"bbox_pred.weight has shape \[24, 256\] in the file, \[12, 256\]"):
        load_model("default", raw, "cpu")
    classes["roi_heads.box_predictor.bbox_pred.weight"] = torch.zeros(12, 256)  # consistent: a 3-class model
    classes["roi_heads.box_predictor.bbox_pred.bias"] = torch.zeros(12)
    torch.save(classes, raw)
    assert len(load_model("default", raw, "cpu").class_names) == 3
    mobilenet = tmp_path / "mobilenet.pth"
    torch.save(load_model("mobilenet_v3_fpn", "random", "cpu").module.state_dict(), mobilenet)
    with pytest.raises(FrcnnError, match="not a default model"):
        load_model("default", mobilenet, "cpu")


def test_a_raw_torchvision_state_dict_loads(tmp_path):
    torch.manual_seed(0)
    src = load_model("mobilenet_v3_fpn", "random", "cpu")
    path = tmp_path / "fasterrcnn_mobilenet.pth"
    torch.save(src.module.state_dict(), path)
    det = load_model("mobilenet_v3_fpn", path, "cpu")
    assert torch.equal(det.module.rpn.head.conv[0][0].weight, src.module.rpn.head.conv[0][0].weight)


def test_tracing_never_writes_to_the_shared_model():
    det = load_model("default", "random", "cpu")
    before = {k: v.clone() for k, v in det.module.state_dict().items()}
    attrs = (det.module.rpn.nms_thresh, det.module.roi_heads.score_thresh, det.module.rpn._pre_nms_top_n["testing"])
    image = (torch.rand(3, 96, 128) * 255).to(torch.uint8)
    Tracer(det).run(image, det.defaults.replace({"rpn.nms_thresh": 0.3, "roi.score_thresh": 0.9,
                                                 "input.min_size": 96}), torch.tensor([[10., 10., 60., 50.]]),
                    torch.tensor([1]))
    after = det.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert attrs == (det.module.rpn.nms_thresh, det.module.roi_heads.score_thresh,
                     det.module.rpn._pre_nms_top_n["testing"])
    assert det.module.training is False
