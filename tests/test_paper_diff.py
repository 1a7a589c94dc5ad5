"""The table of departures from the paper (frcnn.paper_diff) against PAPER and each of the four models' defaults:
the paper's configuration (vgg16) has no settings rows, the default model has exactly the departures its docstring
lists, the paper's defaults on any model remove every settings row, and the conventions' values are the ones the
stages really use (checked against torchvision itself)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.roi_heads import fastrcnn_loss

from frcnn.models import MODEL_NAMES, load_model
from frcnn.models.registry import DEFAULT_SETTINGS, REGISTRY
from frcnn.paper_diff import (
    ANCHOR_TARGETS,
    ANCHORS,
    BACKBONE,
    LOSSES,
    STAGES,
    TABLE,
    PaperFacts,
    departures,
    facts_of,
    stage_of,
)
from frcnn.settings import PAPER, Settings, flat_keys
from frcnn.trace import Tracer

# the default model's departures, as its docstring (frcnn/models/registry.py) and the issue list them, plus the input
# size the model card gives its reasons for
DEFAULT_DEPARTURES = {"anchors.sizes", "anchors.stride", "rpn.ignore_cross_boundary", "rpn.post_nms_top_n",
                      "rpn.min_size", "roi.pool", "roi.bg_iou_thresh_lo", "input.min_size", "input.max_size",
                      "rpn.pre_nms_top_n_train", "rpn.post_nms_top_n_train"}


@pytest.fixture(scope="module")
def facts() -> dict[str, PaperFacts]:
    """The facts of each of the four models, random weights (the default: its shipped checkpoint if any)."""
    return {name: facts_of(load_model(name, "auto" if name == "default" else "random", "cpu"))
            for name in MODEL_NAMES}


def _setting_keys(rows) -> set[str]:
    return {r.key for r in rows if r.is_setting}


def test_every_row_names_a_setting_or_a_convention_and_a_stage():
    keys = set(flat_keys())
    assert len({d.key for d in TABLE}) == len(TABLE)  # one record a place
    for d in TABLE:
        assert d.key in keys or d.key.startswith("convention."), d.key
        assert d.stage in STAGES and d.reason
        if d.is_setting:
            assert stage_of(d.key) == d.stage, d.key


def test_settings_rows_take_the_papers_value_from_PAPER(facts):
    for d in (d for d in TABLE if d.is_setting):
        assert d.paper(DEFAULT_SETTINGS, facts["default"]) == PAPER.get(d.key)
        assert d.this(DEFAULT_SETTINGS, facts["default"]) == DEFAULT_SETTINGS.get(d.key)


def test_vgg16_the_papers_configuration_has_no_settings_rows(facts):
    assert REGISTRY["vgg16"].defaults == PAPER
    assert _setting_keys(departures(PAPER, facts["vgg16"])) == set()
    rows = {r.key for r in departures(PAPER, facts["vgg16"])}
    assert "convention.stride" not in rows  # conv5_3: the paper's stride 16
    assert {"convention.smooth_l1_beta", "convention.head_box_weights", "convention.anchor_centre"} <= rows


def test_the_default_model_has_exactly_the_listed_departures(facts):
    for defaults in (DEFAULT_SETTINGS, facts["default"].defaults):  # the registry's and the shipped checkpoint's
        rows = departures(defaults, facts["default"])
        assert _setting_keys(rows) == DEFAULT_DEPARTURES == set(defaults.diff(PAPER))
        assert all("Set in this session" not in r.reason for r in rows if defaults == facts["default"].defaults)
    rows = {r.key: r for r in departures(facts["default"].defaults, facts["default"])}
    assert rows["anchors.sizes"].this.endswith("(10 sizes)") and "30 anchors" in rows["anchors.sizes"].reason
    assert rows["convention.stride"].this.startswith("8 px") and rows["convention.stride"].paper.startswith("16 px")
    assert "Mask R-CNN" in rows["roi.pool"].reason and rows["roi.pool"].this == "roi_align"
    assert rows["rpn.post_nms_top_n"].paper == "300" and rows["rpn.post_nms_top_n"].this == "1000"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_papers_defaults_on_any_model_remove_the_settings_rows(facts, name):
    own = departures(facts[name].defaults, facts[name])
    assert _setting_keys(own) == set(facts[name].defaults.diff(PAPER)) - {"rpn.sample_seed", "roi.sample_seed"}
    on_paper = departures(PAPER, facts[name])
    assert _setting_keys(on_paper) == set()
    # the conventions are the model's and torchvision's, whatever the settings
    assert {r.key for r in own if not r.is_setting} == {r.key for r in on_paper}


def test_coco_models_list_torchvisions_own_defaults(facts):
    for name in ("resnet50_fpn_v2", "mobilenet_v3_fpn"):
        keys = _setting_keys(departures(facts[name].defaults, facts[name]))
        assert {"input.min_size", "input.max_size", "rpn.post_nms_top_n", "roi.pool", "roi.nms_thresh",
                "rpn.ignore_cross_boundary"} <= keys
        stride = {r.key: r for r in departures(facts[name].defaults, facts[name])}["convention.stride"]
        assert "feature pyramid" in stride.this and "FPN" in stride.reason


def test_a_users_change_makes_a_row_that_says_so(facts):
    f = facts["default"]
    rows = {r.key: r for r in departures(f.defaults.replace({"rpn.nms_thresh": 0.5}), f)}
    assert rows["rpn.nms_thresh"].paper == "0.7" and rows["rpn.nms_thresh"].this == "0.5"
    assert rows["rpn.nms_thresh"].reason.startswith("Set in this session; default's own default is 0.7")
    back = {r.key for r in departures(f.defaults.replace({"roi.pool": "roi_pool"}), f)}
    assert "roi.pool" not in back  # the paper's value: no row, whatever the model's default


def test_stage_filter_splits_the_rows(facts):
    f = facts["default"]
    every = departures(f.defaults, f)
    parts = [departures(f.defaults, f, s) for s in STAGES]
    assert sum(len(p) for p in parts) == len(every)
    for s, part in zip(STAGES, parts, strict=True):
        assert all(r.stage == s for r in part)
    assert {r.key for r in departures(f.defaults, f, BACKBONE)} >= {"convention.stride", "convention.size_divisible"}
    assert {r.key for r in departures(f.defaults, f, ANCHOR_TARGETS)} == {"rpn.ignore_cross_boundary"}


def test_smooth_l1_beta_is_torchvisions_one_ninth(facts):
    """The head's loss of torchvision (fastrcnn_loss) is smooth L1 with beta = 1/9: the row's value is the one used."""
    torch.manual_seed(0)
    logits, deltas = torch.randn(6, 3), torch.randn(6, 12)
    labels, targets = torch.tensor([0, 1, 2, 1, 0, 2]), torch.randn(6, 4) * 0.3
    _, box = fastrcnn_loss(logits, deltas, [labels], [targets])
    fg = labels > 0
    mine = F.smooth_l1_loss(deltas.reshape(6, 3, 4)[fg, labels[fg]], targets[fg], beta=facts["default"].smooth_l1_beta,
                            reduction="sum") / len(labels)
    assert torch.allclose(box, mine)
    row = {r.key: r for r in departures(PAPER, facts["vgg16"], LOSSES)}["convention.smooth_l1_beta"]
    assert (row.paper, row.this) == ("1", "1/9")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_head_box_weights_are_the_models_own(facts, name):
    det = load_model(name, "random", "cpu") if name != "default" else load_model(name, "auto", "cpu")
    assert facts[name].head_box_weights == tuple(float(w) for w in det.module.roi_heads.box_coder.weights)
    assert facts[name].rpn_box_weights == tuple(float(w) for w in det.module.rpn.box_coder.weights)


def test_strides_are_the_traced_feature_maps(facts):
    for name in ("default", "mobilenet_v3_fpn"):
        det = load_model(name, "auto" if name == "default" else "random", "cpu")
        # a 1024-px square input: every level's side divides it (the trace rounds input / cells, so an odd-sized
        # coarsest level would read 62 for 64)
        square = det.defaults.replace({"input.min_size": 1024, "input.max_size": 1024})
        trace = Tracer(det).run((torch.rand(3, 200, 200) * 255).to(torch.uint8), square, head=False)
        assert facts[name].strides == trace.features.strides[:len(facts[name].strides)]


def test_anchor_centres_torchvision_against_the_papers_code(facts):
    """torchvision's AnchorGenerator centres cell (0, 0) at 0; py-faster-rcnn's generate_anchors takes the base box
    [0, 0, s - 1, s - 1], whose centre is (s - 1) / 2."""
    for stride in (8, 16):
        gen = AnchorGenerator(((64.0,),), ((1.0,),))
        feats = [torch.zeros(1, 1, 2, 3)]
        images = type("Images", (), {"tensors": torch.zeros(1, 3, 2 * stride, 3 * stride),
                                     "image_sizes": [(2 * stride, 3 * stride)]})()
        boxes = gen(images, feats)[0]
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # (x, y) of (i, j) = (0, 0), (0, 1), ...
        assert centres[0].tolist() == [0.0, 0.0] and centres[1].tolist() == [float(stride), 0.0]
        base = torch.tensor([0.0, 0.0, stride - 1.0, stride - 1.0])
        settings = DEFAULT_SETTINGS.replace({"anchors.stride": stride})
        row = {r.key: r for r in departures(settings, facts["default"], ANCHORS)}["convention.anchor_centre"]
        assert row.this == f"({stride} j, {stride} i) px"
        assert row.paper == f"({float((base[0] + base[2]) / 2):g} + {stride} j, {float((base[1] + base[3]) / 2):g} " \
                            f"+ {stride} i) px"


def test_rpn_loss_weight_follows_the_minibatch(facts):
    f = facts["default"]
    row = {r.key: r for r in departures(f.defaults, f, LOSSES)}["convention.rpn_loss_weight"]
    assert "1 / 256" in row.this and "10 / 2400" in row.paper and "roughly" in row.reason
    assert math.isclose(10 / 2400, 1 / 240)
    same = Settings().replace({"rpn.batch_size_per_image": 240})  # 1 / 240 = 10 / 2400: the same weight
    assert "convention.rpn_loss_weight" not in {r.key for r in departures(same, f, LOSSES)}
    assert {r.key for r in departures(same, f, LOSSES)} == {"convention.smooth_l1_beta", "convention.head_loss"}
