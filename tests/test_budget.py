"""The work budget: its estimates agree with what a trace really makes, the attacks of issue 15 are refused by it
before anything is allocated (in a process under an address-space cap, so a failure cannot take the machine),
and the chunked IoU gives torchvision's Matcher's labels at any number of boxes with bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torchvision.models.detection._utils import Matcher
from torchvision.ops import box_iou

from frcnn import budget
from frcnn.budget import BudgetError, Caps
from frcnn.models import load_model
from frcnn.settings import RPNSettings
from frcnn.stages import _iou
from frcnn.stages.anchor_targets import anchor_targets
from frcnn.trace import Tracer

ROOT = Path(__file__).resolve().parents[1]
SIXTEEN = ",".join(str(16 + 8 * i) for i in range(16))
SIXTEEN_RATIOS = ",".join(f"{0.25 + 0.25 * i:g}" for i in range(16))
ATTACKS = {  # issue 15's crafted links, each valid for the validator
    "anchors": {"anchors.stride": 4, "anchors.sizes": SIXTEEN, "anchors.ratios": SIXTEEN_RATIOS},
    "input": {"anchors.stride": 1, "input.min_size": 2048, "input.max_size": 4096},
    "nms": {"rpn.pre_nms_top_n": 200000, "rpn.post_nms_top_n": 200000, "rpn.nms_thresh": 1, "rpn.min_size": 0},
    "pooling": {"roi.output_size": 32},
}


@pytest.fixture(scope="module")
def default():
    return load_model("default", "auto", "cpu")


@pytest.fixture(scope="module")
def vgg16():
    return load_model("vgg16", "random", "cpu")


def _image(h: int, w: int) -> torch.Tensor:
    return torch.randint(0, 255, (3, h, w), dtype=torch.uint8)


@pytest.mark.parametrize("size", [(480, 640), (333, 500), (90, 1200)])
@pytest.mark.parametrize("change", [{}, {"anchors.stride": 12}, {"anchors.sizes": "32,64", "anchors.ratios": "1"},
                                    {"input.min_size": 300, "input.max_size": 512}])
def test_the_estimate_counts_what_a_trace_makes(default, size, change):
    tracer = Tracer(default)
    settings = default.defaults.replace(change)
    trace = tracer.run(_image(*size), settings, head=False)
    e = budget.estimate(budget.facts_of(default), settings, size)
    assert e.input_size == trace.preprocess.padded_size
    made = len(trace.anchors.boxes) + (len(trace.rpn_anchors.boxes) if trace.anchors_source == "model" else 0)
    assert e.anchors == made
    assert e.nms_candidates == trace.proposals.counts["pre_nms_top_n"]


def test_the_estimate_counts_fpn_anchors():
    det = load_model("mobilenet_v3_fpn", "random", "cpu")
    trace = Tracer(det).run(_image(300, 400), det.defaults.replace({"input.min_size": 320}), head=False)
    e = budget.estimate(budget.facts_of(det), trace.settings, (300, 400))
    assert e.anchors == len(trace.anchors.boxes) and e.input_size == trace.preprocess.padded_size



def test_the_nms_cap_is_a_maps_own_on_a_pyramid():
    """torchvision's batched_nms runs one NMS a level on the CPU past 1,000 boxes, so the quadratic worst case is each
    map's: a pyramid whose levels together pass the cap fits while no one level does (the paper's 6,000 a map on an
    FPN model), and the refusal names the one map."""
    det = load_model("mobilenet_v3_fpn", "random", "cpu")
    settings = det.defaults.replace({"input.min_size": 320, "rpn.pre_nms_top_n": 100_000})
    trace = Tracer(det).run(_image(300, 400), settings, head=False)
    per_level = [m.shape[-2] * m.shape[-1] * n for m, n in
                 zip(trace.features.maps, det.module.rpn.anchor_generator.num_anchors_per_location(), strict=True)]
    assert len(per_level) > 1 and sum(per_level) == len(trace.anchors.boxes)
    facts = budget.facts_of(det)
    e = budget.estimate(facts, settings, (300, 400))
    assert (e.nms_candidates, e.nms_per_map) == (sum(per_level), max(per_level))
    assert budget.fits(facts, settings, (300, 400), caps=Caps(nms_candidates=max(per_level)))
    found = budget.problems(facts, settings, (300, 400), caps=Caps(nms_candidates=max(per_level) - 1))
    assert found == [f"rpn.pre_nms_top_n=100,000 sends {max(per_level):,} boxes from one feature map into NMS "
                     f"(cap {max(per_level) - 1:,} a map)"]

@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_attack_is_refused_before_tracing_with_keys_estimate_and_cap(default, attack):
    settings = default.defaults.replace(ATTACKS[attack])
    with pytest.raises(BudgetError) as err:
        Tracer(default).run(_image(480, 640), settings)
    message = str(err.value)
    assert "\n" not in message and "work budget" in message and "cap" in message
    assert any(key in message for key in ATTACKS[attack])


def test_vgg16_at_2048_px_is_refused(vgg16):
    settings = vgg16.defaults.replace({"input.min_size": 2048, "input.max_size": 4096})
    with pytest.raises(BudgetError, match="input.min_size=2048.*vgg16"):
        budget.check(budget.facts_of(vgg16), settings, (480, 640))
    budget.check(budget.facts_of(vgg16), vgg16.defaults, (600, 1000))  # the paper's own input fits


def test_ten_thousand_boxes_are_refused_with_how_many_fit(default):
    facts, size = budget.facts_of(default), (480, 640)
    most = budget.max_boxes(facts, default.defaults, size)
    assert 100 < most < 9_999
    assert budget.fits(facts, default.defaults, size, most)
    assert not budget.fits(facts, default.defaults, size, most + 1)
    with pytest.raises(BudgetError, match="9,999 ground-truth boxes"):
        budget.check(facts, default.defaults, size, 9_999)


def test_slider_ranges_stop_at_the_cap(default):
    facts, size, s = budget.facts_of(default), (480, 640), default.defaults
    lo, hi = budget.allowed_range(facts, s, size, 0, "rpn.pre_nms_top_n", 10, 190_080)
    assert (lo, hi) == (10, Caps().nms_candidates)  # one level: the cap itself
    lo, hi = budget.allowed_range(facts, s, size, 0, "anchors.stride", 1, 64)
    assert hi == 64 and budget.fits(facts, s.replace({"anchors.stride": lo}), size)
    assert not budget.fits(facts, s.replace({"anchors.stride": lo - 1}), size)
    lo, hi = budget.allowed_range(facts, s, size, 0, "roi.output_size", 1, 32)
    assert lo == 1 and budget.fits(facts, s.replace({"roi.output_size": hi}), size)
    assert not budget.fits(facts, s.replace({"roi.output_size": hi + 1}), size)


def test_the_memory_cap_follows_the_environment(monkeypatch, default):
    facts, s = budget.facts_of(default), default.defaults.replace({"input.min_size": 1024, "input.max_size": 2048})
    assert budget.fits(facts, s, (480, 640))
    monkeypatch.setenv(budget.BUDGET_ENV, "64")
    assert not budget.fits(facts, s, (480, 640))


# ------------------------------------------------------------------------------------------ chunked IoU
def _random_boxes(n: int, side: float, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * side
    wh = torch.rand(n, 2, generator=generator) * side / 3 + 2
    return torch.cat([xy, xy + wh], dim=1)


def _reference(anchors, inside, gt, s: RPNSettings):
    """The labels by torchvision's Matcher on the whole (G, A) matrix, as the stage was written before."""
    iou = box_iou(gt, anchors)
    quality = iou * inside.float() if s.ignore_cross_boundary else iou
    usable = torch.where(quality.max(dim=1).values > 0)[0]
    matcher = Matcher(s.fg_iou_thresh, s.bg_iou_thresh, allow_low_quality_matches=s.allow_low_quality_matches)
    m = matcher(quality[usable])
    matched = torch.where(m >= 0, usable[m.clamp(min=0)], m)
    labels = torch.full((len(anchors),), -1)
    labels[matched >= 0] = 1
    labels[matched == Matcher.BELOW_LOW_THRESHOLD] = 0
    if s.ignore_cross_boundary:
        labels[~inside] = -1
    return labels, iou.max(dim=0), quality.max(dim=1), matched


@pytest.mark.parametrize("chunk", [7, 100, 1 << 21])
@pytest.mark.parametrize("cross, low", [(True, True), (False, True), (True, False)])
def test_chunked_matching_equals_torchvisions_matcher(monkeypatch, chunk, cross, low):
    monkeypatch.setattr(_iou, "CHUNK_ELEMENTS", chunk)
    g = torch.Generator().manual_seed(chunk + 2 * cross + low)
    anchors, gt = _random_boxes(300, 100, g), _random_boxes(23, 100, g)
    gt[5] = torch.tensor([500.0, 500, 510, 510])  # overlaps no anchor: left out of the low-quality rule
    inside = torch.rand(300, generator=g) > 0.3
    s = RPNSettings(ignore_cross_boundary=cross, allow_low_quality_matches=low, fg_iou_thresh=0.5,
                    bg_iou_thresh=0.2)
    t = anchor_targets(anchors, inside, gt, s)
    labels, (max_iou, matched_gt), (best_q, best_a), matched = _reference(anchors, inside, gt, s)
    assert torch.equal(t.labels, labels)
    assert torch.equal(t.max_iou, max_iou) and torch.equal(t.matched_gt[matched < 0], matched_gt[matched < 0])
    assert torch.equal(t.matched_gt[matched >= 0], matched[matched >= 0])
    assert torch.equal(t.best_iou_per_gt, best_q) and torch.equal(t.best_anchor_per_gt, best_a)
    assert (t.labels == 1).sum() > 0 and (t.labels == 0).sum() > 0


def test_best_row_per_column_equals_the_whole_matrix(monkeypatch):
    monkeypatch.setattr(_iou, "CHUNK_ELEMENTS", 50)
    g = torch.Generator().manual_seed(3)
    rows, cols = _random_boxes(40, 50, g), _random_boxes(70, 50, g)
    value, index = _iou.best_row_per_column(rows, cols)
    full_value, full_index = box_iou(rows, cols).max(dim=0)
    assert torch.equal(value, full_value) and torch.equal(index, full_index)
    value, index = _iou.best_column_per_row(rows, cols)
    full_value, full_index = box_iou(rows, cols).max(dim=1)
    assert torch.equal(value, full_value) and torch.equal(index, full_index)


def _capped(code: str, extra_mb: int, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python whose address space is capped at what it has mapped after importing torch
    plus ``extra_mb``: an allocation past that fails there, not on the machine."""
    prelude = textwrap.dedent(f"""
        import resource, torch, torchvision, frcnn.trace
        mapped = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mapped + {extra_mb} * 2**20, resource.RLIM_INFINITY))
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={"FRCNN_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                                                           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"})


def test_anchor_targets_of_thousands_of_boxes_fit_in_bounded_memory():
    # 2,000 boxes x 200,000 anchors: box_iou at once would ask for about 14 GB; in chunks it fits in 1 GB
    done = _capped("""
        from frcnn.stages.anchor_targets import anchor_targets
        from frcnn.settings import RPNSettings
        g = torch.Generator().manual_seed(0)
        def boxes(n):
            xy = torch.rand(n, 2, generator=g) * 700
            return torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 90 + 4], 1)
        t = anchor_targets(boxes(200_000), torch.ones(200_000, dtype=torch.bool), boxes(2_000), RPNSettings())
        print("ok", int((t.labels == 1).sum()))
    """, extra_mb=1024)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


def test_the_cli_refuses_each_attack_in_one_line_under_an_address_space_cap(tmp_path):
    from PIL import Image

    Image.new("RGB", (640, 480), (90, 120, 150)).save(tmp_path / "a.png")
    for name, change in ATTACKS.items():
        sets = [f"--set={k}={v}" for k, v in change.items()]
        done = _capped(f"""
            import sys
            from frcnn.__main__ import main
            sys.exit(main(["trace", {str(tmp_path / "a.png")!r}, *{sets!r}]))
        """, extra_mb=1500)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and "work budget" in lines[0], (name, done.stderr[-1500:])


def test_a_sweep_is_capped_and_streams_its_json(tmp_path):
    from PIL import Image

    from frcnn.__main__ import main

    Image.new("RGB", (96, 64), (90, 120, 150)).save(tmp_path / "a.png")
    many = ",".join(f"{0.3 + i * 0.001:.3f}" for i in range(101))
    assert main(["trace", str(tmp_path / "a.png"), f"--sweep=rpn.nms_thresh={many}"]) == 2
    out = tmp_path / "s.json"
    assert main(["trace", str(tmp_path / "a.png"), "--sweep=rpn.nms_thresh=0.5,0.6,0.7", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [d["settings"]["rpn.nms_thresh"] for d in data] == [0.5, 0.6, 0.7]
