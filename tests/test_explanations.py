"""The facts the explanations state, each against an independent computation: the feature map's size with the
padding to 32 (against the backbones' real outputs), the receptive field (the recurrence against the impulse
response of the conv stack; VGG-16's 228 px, the paper's number), the ties of each box's best anchor and the rule
that made each positive (against torchvision's own Matcher on the whole IoU matrix and a hand-made case), and that
every stage page shows its "This model vs the paper" box (AppTest)."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from streamlit.testing.v1 import AppTest
from torch import nn
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import box_iou

from frcnn.analysis.anchors import best_anchor_ties, coverage, coverage_rows
from frcnn.data import load_sample
from frcnn.models import load_model
from frcnn.models.backbones import light_backbone, vgg16_backbone
from frcnn.paper_diff import departures
from frcnn.receptive_field import map_geometry, map_side, padded_side, receptive_field, rpn_receptive_field
from frcnn.settings import InputSettings, RPNSettings
from frcnn.stages.anchor_targets import POSITIVE_AS_BEST, POSITIVE_BY_IOU, anchor_targets, positive_rule
from frcnn.stages.preprocess import preprocess
from frcnn.trace import Tracer
from frcnn.viz.anchors import anchor_targets_figure, anchors_figure, positive_reasons

APP = str(Path(__file__).resolve().parents[1] / "app.py")


# ------------------------------------------------------------------------------------------- map size
@pytest.mark.parametrize("width", [320, 330, 352, 690, 705])
def test_map_size_includes_the_padding_to_32(width):
    """The light trunk (stride 8) and VGG-16 (stride 16) on the padded input torchvision's transform makes."""
    image = torch.zeros(3, 320, width)
    pre = preprocess(image, InputSettings(min_size=320, max_size=4096), [0.5] * 3, [0.2] * 3)
    assert pre.image_size == (320, width) and pre.padded_size == (320, padded_side(width))
    with torch.inference_mode():
        for backbone, stride in ((light_backbone(), 8), (vgg16_backbone(), 16)):
            out = backbone(pre.tensor)
            assert tuple(out.shape[-2:]) == (map_side(320, stride), map_side(width, stride)), (width, stride)


def test_a_690_px_side_gives_88_columns_not_87():
    assert map_side(690, 8) == 88 and -(-690 // 8) == 87
    det = load_model("default", "auto", "cpu")
    settings = det.defaults.replace({"input.min_size": 512, "input.max_size": 1024})
    trace = Tracer(det).run((torch.rand(3, 512, 690) * 255).to(torch.uint8), settings, head=False)
    assert trace.preprocess.image_size == (512, 690)
    assert trace.features.shapes[0] == (64, 88)
    geo = map_geometry(trace.preprocess.image_size, trace.features.strides[0], det)
    assert geo.map_size == trace.features.shapes[0] and geo.padded_size == (512, 704)


# ------------------------------------------------------------------------------------ receptive field
def _skeleton(module: nn.Module) -> nn.Module:
    """A one-channel copy with every conv's weights 1 and no norms; max-pools as average pools of the same window
    (a max sends its gradient to one input only). Its output is then a positive linear function of the input, and
    the input pixels with a non-zero gradient of one output cell are exactly that cell's receptive field."""
    skel = copy.deepcopy(module)
    for child in list(skel.modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, nn.Conv2d):
                conv = nn.Conv2d(1, 1, sub.kernel_size, sub.stride, sub.padding, sub.dilation, bias=False)
                nn.init.ones_(conv.weight)
                setattr(child, attr, conv)
            elif isinstance(sub, (nn.GroupNorm, nn.BatchNorm2d)):
                setattr(child, attr, nn.Identity())
            elif isinstance(sub, nn.MaxPool2d):
                setattr(child, attr, nn.AvgPool2d(sub.kernel_size, sub.stride, sub.padding))
    return skel


def _impulse_field(module: nn.Module, side: int) -> int:
    x = torch.ones(1, 1, side, side, requires_grad=True)
    out = _skeleton(module)(x)
    h, w = out.shape[-2:]
    out[0, 0, h // 2, w // 2].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(dim=1) > 0).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(dim=0) > 0).flatten()
    assert rows[0] > 0 and rows[-1] < side - 1, "the field reaches the border: use a larger input"
    assert rows[-1] - rows[0] == cols[-1] - cols[0]
    return int(rows[-1] - rows[0] + 1)


def test_vgg16_conv5_3_sees_196_px_and_the_rpn_window_228_the_papers_number():
    backbone = vgg16_backbone()
    field = receptive_field(backbone)
    assert (field.size, field.jump) == (196, 16)
    assert _impulse_field(backbone, 448) == 196
    det = SimpleNamespace(module=SimpleNamespace(backbone=backbone, rpn=SimpleNamespace(head=RPNHead(512, 9))))
    window = rpn_receptive_field(det)
    assert (window.size, window.jump) == (228, 16)
    assert _impulse_field(nn.Sequential(backbone, det.module.rpn.head.conv), 512) == 228


def test_light_trunk_field_by_recurrence_equals_its_impulse_response():
    backbone = light_backbone()
    field = receptive_field(backbone)
    assert field.jump == 8
    assert _impulse_field(backbone, 720) == field.size
    assert receptive_field(backbone, norms_local=False) is None  # GroupNorm's statistics span the whole map


def test_a_feature_pyramid_has_no_single_field():
    det = load_model("mobilenet_v3_fpn", "random", "cpu")
    assert receptive_field(det.module.backbone) is None and rpn_receptive_field(det) is None
    geo = map_geometry((800, 1056), 32, det)
    assert geo.receptive_field is None and geo.map_size == (25, 33)


# ---------------------------------------------------------------------------- anchor targets: ties
def test_ties_and_rules_hand_made():
    gt = torch.tensor([[10.0, 10.0, 20.0, 20.0]])
    anchors = torch.tensor([[5.0, 10.0, 15.0, 20.0], [15.0, 10.0, 25.0, 20.0], [10.0, 5.0, 20.0, 15.0],
                            [10.0, 15.0, 20.0, 25.0],  # the four half-shifted copies: IoU 50/150 each, tied
                            [15.0, 15.0, 25.0, 25.0],  # IoU 25/175
                            [40.0, 40.0, 50.0, 50.0]])  # no overlap
    inside = torch.ones(6, dtype=torch.bool)
    t = anchor_targets(anchors, inside, gt, RPNSettings())
    assert t.ties_per_gt.tolist() == [4] and t.best_iou_per_gt.tolist() == pytest.approx([1 / 3])
    assert t.best_of_gt.tolist() == [0, 0, 0, 0, -1, -1]
    assert t.labels.tolist() == [1, 1, 1, 1, 0, 0]
    assert positive_rule(t, 0.7).tolist() == [POSITIVE_AS_BEST] * 4 + [0, 0]
    exact = torch.cat([gt, anchors])  # the box itself as an anchor: IoU 1, the only best, and by IoU
    t2 = anchor_targets(exact, torch.ones(7, dtype=torch.bool), gt, RPNSettings())
    assert t2.ties_per_gt.tolist() == [1] and positive_rule(t2, 0.7).tolist()[:5] == [POSITIVE_BY_IOU, 0, 0, 0, 0]


@pytest.fixture(scope="module")
def astronaut():
    det = load_model("default", "auto", "cpu")
    image, gt = load_sample("Astronaut (photo)", class_names=det.class_names)
    return det, image, gt, Tracer(det).run(image.tensor, det.defaults, gt.boxes, gt.labels, head=False)


def _matcher_reference(trace):
    """torchvision's Matcher on the whole (G, A) IoU matrix, in network-input pixels (no chunks, no masks: the
    default model keeps cross-boundary anchors): its positives, and the per-box ties its low-quality rule uses."""
    scale = trace.preprocess.scale
    sy, sx = scale
    to_net = torch.tensor([sx, sy, sx, sy])
    iou = box_iou(trace.gt_boxes * to_net, trace.anchors.boxes * to_net)  # (G, A)
    s = trace.settings.rpn
    matches = Matcher(s.fg_iou_thresh, s.bg_iou_thresh, allow_low_quality_matches=True)(iou)
    best = iou.max(dim=1).values  # (G,)
    tied = iou == best[:, None]  # (G, A): the anchors set_low_quality_matches_ keeps
    return matches, best, tied, iou


def test_ties_and_positive_rules_equal_torchvisions_matcher_on_the_astronaut(astronaut):
    det, image, gt, trace = astronaut
    assert not trace.settings.rpn.ignore_cross_boundary
    t = trace.anchor_targets
    matches, best, tied, iou = _matcher_reference(trace)
    assert t.ties_per_gt.tolist() == tied.sum(dim=1).tolist()
    assert t.best_iou_per_gt.tolist() == pytest.approx(best.tolist(), abs=1e-6)
    assert torch.equal(t.labels == 1, matches >= 0)
    rule = positive_rule(t, trace.settings.rpn.fg_iou_thresh)
    by_iou = iou.max(dim=0).values >= trace.settings.rpn.fg_iou_thresh
    assert torch.equal(rule == POSITIVE_BY_IOU, (matches >= 0) & by_iou)
    assert torch.equal(rule == POSITIVE_AS_BEST, (matches >= 0) & ~by_iou & tied.any(dim=0))
    assert int(tied.sum(dim=1).max()) > 1  # the photo has ties: whole rows of anchors at a box's best IoU


def test_tie_table_and_hover_say_the_counts(astronaut):
    det, image, gt, trace = astronaut
    _, best, tied, _ = _matcher_reference(trace)
    rows = best_anchor_ties(trace)
    assert [r["anchors tied at it"] for r in rows] == tied.sum(dim=1).tolist()
    assert [r["best IoU"] for r in rows] == [round(float(v), 3) for v in best]
    # the Anchors page's best-anchor table and hover count them too
    cov = coverage(trace, inside_only=False)
    assert [r["anchors tied at it"] for r in coverage_rows(trace, cov)] == tied.sum(dim=1).tolist()
    hover = next(d.text for d in anchors_figure(image.tensor.permute(1, 2, 0).numpy(), trace, cov=cov).data
                 if d.name == "best anchor per GT")
    assert [f"{int(n)} anchors tied at this IoU" in s for s, n in zip(hover, tied.sum(dim=1), strict=True)] == \
        [bool(n > 1) for n in tied.sum(dim=1)]
    fig = anchor_targets_figure(image.tensor.permute(1, 2, 0).numpy(), trace)
    texts = [s for d in fig.data if d.text is not None and "positive" in (d.name or "") for s in d.text]
    assert len(texts) == int((trace.anchor_targets.labels == 1).sum())
    g = int(tied.sum(dim=1).argmax())
    expected = f"best anchor of GT #{g} (one of {int(tied[g].sum())} anchors tied at IoU {float(best[g]):.3f}"
    assert any(expected in s for s in texts)
    assert any(s.startswith("positive by IoU") for s in texts)
    positives = torch.nonzero(trace.anchor_targets.labels == 1).flatten().numpy()
    assert sorted(positive_reasons(trace, positives)) == sorted(texts)


def test_with_the_low_quality_rule_off_no_positive_is_a_best_of(astronaut):
    det, image, gt, _ = astronaut
    off = det.defaults.replace({"rpn.allow_low_quality_matches": False})
    trace = Tracer(det).run(image.tensor, off, gt.boxes, gt.labels, head=False)
    rule = positive_rule(trace.anchor_targets, off.rpn.fg_iou_thresh)
    assert int((rule == POSITIVE_AS_BEST).sum()) == 0
    assert int((rule == POSITIVE_BY_IOU).sum()) == int((trace.anchor_targets.labels == 1).sum()) > 0


# -------------------------------------------------------------------------------------------- pages
PAGES = {"app_pages/overview.py": "Start", "app_pages/backbone.py": "Backbone", "app_pages/anchors.py": "Anchors",
         "app_pages/anchor_targets.py": "Anchor targets", "app_pages/proposals.py": "RPN proposals",
         "app_pages/roi.py": "RoI", "app_pages/detections.py": "Detections", "app_pages/losses.py": "Losses"}


def _paper_boxes(at) -> list[str]:
    return [e.label for e in at.expander if e.label.startswith("This model vs the paper")]


def test_every_stage_page_shows_its_paper_box():
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["sample"] = "Astronaut (photo)"
    at.run()
    assert not at.exception
    det = at.session_state["context"].tracer.detector
    for page, stage in PAGES.items():
        at.switch_page(page).run()
        assert not at.exception, page
        rows = departures(at.session_state["settings"], det, None if stage == "Start" else stage)
        assert _paper_boxes(at) == [f"This model vs the paper: {len(rows)} difference{'s' * (len(rows) > 1)}"], page
        lines = [m.value for m in at.markdown if "· the paper:" in m.value]
        assert [line.split("`")[1] for line in lines] == [r.key for r in rows], page
        assert all(line.startswith(f"{r.stage} · ") == (stage == "Start") for line, r in zip(lines, rows, strict=True))
    at.switch_page("app_pages/anchor_targets.py").run()
    captions = " ".join(c.value for c in at.caption)
    trace = Tracer(det).run(at.session_state["context"].image, at.session_state["settings"],
                            at.session_state["context"].gt_boxes, at.session_state["context"].gt_labels, head=False)
    for r in best_anchor_ties(trace):
        if r["anchors tied at it"] > 1:
            assert f"GT #{r['GT']}: best anchor: {r['anchors tied at it']} tied anchors at IoU {r['best IoU']:.3f}" \
                   in captions


WINDOW = "receptive field is {} input px, the RPN's 3×3 window on it {} px"


@pytest.mark.parametrize("model, says", [("default", WINDOW.format(303, 303 + 2 * 8)),
                                         ("vgg16", WINDOW.format(196, 228)),
                                         ("mobilenet_v3_fpn", "no single receptive field")])
def test_backbone_page_states_stride_map_and_receptive_field(model, says):
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["model"] = model
    at.query_params["sample"] = "Astronaut (photo)"
    at.run()
    at.switch_page("app_pages/backbone.py").run()
    assert not at.exception
    ctx = at.session_state["context"]
    trace = Tracer(ctx.tracer.detector).run(ctx.image, at.session_state["settings"], head=False)
    (h, w), s = trace.preprocess.image_size, trace.features.strides[0]
    fh, fw = trace.features.shapes[0]
    caption = next(c.value for c in at.caption if c.value.startswith("Network input"))
    assert f"padded to {padded_side(w)}×{padded_side(h)}" in caption and f"a {fw}×{fh} map" in caption
    assert f"at stride {s} " in caption and says in caption
    rows = departures(at.session_state["settings"], ctx.tracer.detector, "Backbone")
    assert _paper_boxes(at) == [f"This model vs the paper: {len(rows)} difference{'s' * (len(rows) > 1)}"]


def test_the_box_says_matches_the_paper_when_nothing_differs():
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in {"roi.pool": "roi_pool", "roi.bg_iou_thresh_lo": "0.1"}.items():
        at.query_params[key] = value
    at.run()
    at.switch_page("app_pages/roi.py").run()
    assert not at.exception
    assert _paper_boxes(at) == ["This model vs the paper: matches the paper"]
    at.switch_page("app_pages/backbone.py").run()
    assert _paper_boxes(at)[0] != "This model vs the paper: matches the paper"  # the stride 8 and the padding
