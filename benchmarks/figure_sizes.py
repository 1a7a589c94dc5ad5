"""The JSON size of every figure the pages draw, on the app's default sample at the pages' default settings.

    python benchmarks/figure_sizes.py [--json OUT]

Builds each figure as its page does (the default model, the first synthetic sample with its ground truth, the
widgets' default values; Anchor targets also with its "Draw every ... as a box" toggles on, Anchors also with
every anchor of every location asked for) and measures
``len(fig.to_json())``: the bytes a redraw sends to the browser (the chart component adds the theme's template,
a constant few KB). :func:`figure_sizes` returns {"page: figure": bytes}; ``tests/test_figure_sizes.py`` holds
every figure under :data:`BUDGET`, and ``benchmarks/browser.py`` lists what the browser really got.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import plotly.graph_objects as go

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from frcnn import Tracer, load_model  # noqa: E402
from frcnn.analysis.anchors import coverage  # noqa: E402
from frcnn.analysis.proposals import nms_state, replay, top_candidates  # noqa: E402
from frcnn.analysis.roi import default_roi, pool_roi, roi_boxes  # noqa: E402
from frcnn.analysis.sweeps import proposal_recall_sweep  # noqa: E402
from frcnn.data import list_samples, load_sample  # noqa: E402
from frcnn.viz import anchors, backbone, compare, detections, losses, overview, proposals, roi  # noqa: E402

BUDGET = 1_000_000  # bytes of JSON a figure may take on the default sample (issue 17, item 2)
OVERVIEW_DRAW_FROM = 0.5  # app_pages/overview.py's DRAW_FROM
COMPARE_B = {"rpn.nms_thresh": 0.5, "roi.score_thresh": 0.3}  # app_pages/compare.py's default B
COMPARE_SWEEP = [10, 25, 50, 100, 200, 300, 500, 1000]  # its first sweep, "proposal recall vs post-NMS top-N"


def default_sample() -> str:
    """The app's default sample: the first in its list, synthetic scenes first (app.py's SAMPLES)."""
    return sorted(list_samples(), key=lambda s: s.kind != "synthetic")[0].name


def figure_builders(tracer: Tracer | None = None, sample: str | None = None) -> dict[str, Callable[[], go.Figure]]:
    """{"page: figure": a function building it}, with the arguments the pages pass at their defaults."""
    tracer = tracer or Tracer(load_model("default", "auto", "cpu"))
    det = tracer.detector
    loaded, gt = load_sample(sample or default_sample(), class_names=det.class_names)
    image = loaded.tensor
    image_np = image.permute(1, 2, 0).numpy()
    boxes, labels = (gt.boxes, gt.labels) if gt is not None and len(gt) else (None, None)
    s = det.defaults

    def run(settings=s, head=True):
        return tracer.run(image, settings, boxes, labels, head=head)

    trace = run()
    rpn_trace = run(head=False)
    a = rpn_trace.anchors
    every = min(16, max(1, 128 // a.strides[0]))  # the Anchors page's default
    cov = coverage(rpn_trace, inside_only=s.rpn.ignore_cross_boundary)
    levels = len(rpn_trace.rpn.objectness_maps)

    def nms_step() -> go.Figure:
        p = rpn_trace.proposals
        idx = top_candidates(p.pre_nms_scores, 20, p.pre_nms_level, None)
        b, sc = p.pre_nms_boxes.cpu()[idx], p.pre_nms_scores.cpu()[idx]
        steps = replay(b, sc, s.rpn.nms_thresh)
        return proposals.nms_step_figure(image_np, b, sc, nms_state(steps, len(b), 1), 1, len(steps),
                                         s.rpn.nms_thresh, False)

    pick = default_roi(trace)
    pooled = pool_roi(trace, roi_boxes(trace)[pick], s.roi.output_size, s.roi.sampling_ratio)
    zrange = roi.pooled_range(pooled)
    head_size = det.pool_output_size

    def loss_sweep() -> go.Figure:
        key = next(iter(losses.SWEEPS))
        points = losses.sweep(lambda x: run(x), s, key, sorted(losses.SWEEPS[key]))
        return losses.sweep_figure(points, key, s.get(key))

    b_settings = s.replace(COMPARE_B)

    def compare_figure(name: str) -> go.Figure:
        t, other = (run(), run(b_settings)) if name == "A" else (run(b_settings), run())
        n = len(t.detections.boxes)
        return compare.comparison_figure(image_np, t, other, "detections", f"{name}: {n} detections")

    def compare_sweep() -> go.Figure:
        result = proposal_recall_sweep(tracer, [(image, boxes, labels)], s, COMPARE_SWEEP)
        return compare.sweep_figure(result, ("recall",))

    def targets(neg: bool, ign: bool) -> Callable[[], go.Figure]:
        return lambda: anchors.anchor_targets_figure(image_np, rpn_trace, negatives_as_boxes=neg,
                                                     ignored_as_boxes=ign)

    out: dict[str, Callable[[], go.Figure]] = {
        "Start: detections": lambda: detections.detections_figure(image_np, trace, title=None,
                                                                   min_score=OVERVIEW_DRAW_FROM),
        "Start: stage times": lambda: overview.stage_times_figure(trace),
        "Backbone: features": lambda: backbone.feature_figure(image_np, rpn_trace, 0, None, 0.55, True),
        "Anchors: anchors": lambda: anchors.anchors_figure(image_np, rpn_trace, None, 0, "size", a.sizes[0],
                                                           a.ratios, "inside", every, cov),
        "Anchors: every location, all anchors": lambda: anchors.anchors_figure(
            image_np, rpn_trace, None, 0, "size", a.sizes[0], a.ratios, "all", 1, cov),
        "Anchor targets: targets": targets(False, False),
        "Anchor targets: negatives as boxes": targets(True, False),
        "Anchor targets: ignored as boxes": targets(False, True),
        "Anchor targets: both as boxes": targets(True, True),
        "RPN proposals: objectness": lambda: proposals.objectness_figure(image_np, rpn_trace, 0, "max", False),
        "RPN proposals: funnel": lambda: proposals.funnel_figure(rpn_trace.proposals.counts, s.rpn, levels),
        "RPN proposals: recall": lambda: proposals.recall_figure(rpn_trace),
        "RPN proposals: before and after NMS": lambda: proposals.proposals_figure(image_np, rpn_trace, 30, True),
        "RPN proposals: NMS step": nms_step,
        "RoI: sampling": lambda: roi.sampling_figure(image_np, trace, pick),
    }
    for op in roi.POOL_OPS:
        used = op == s.roi.pool
        out[f"RoI: {op} bins"] = (lambda op=op, used=used: roi.feature_bins_figure(
            trace, pooled, op, None, used=used, head_size=head_size))
        out[f"RoI: {op} output"] = (lambda op=op, used=used: roi.pooled_figure(
            pooled, op, None, used=used, head_size=head_size, zrange=zrange))
    out.update({
        "Detections: detections": lambda: detections.detections_figure(image_np, trace, 0.5, min_score=0.5),
        "Losses: terms": lambda: losses.terms_figure(trace.losses),
        "Losses: sweep": loss_sweep,
        "Compare: A": lambda: compare_figure("A"),
        "Compare: B": lambda: compare_figure("B"),
        "Compare: sweep": compare_sweep,
    })
    return out


def figure_sizes(tracer: Tracer | None = None, sample: str | None = None) -> dict[str, int]:
    """{"page: figure": bytes of its JSON} for every figure of :func:`figure_builders`."""
    return {name: len(build().to_json()) for name, build in figure_builders(tracer, sample).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the sizes here")
    args = parser.parse_args()
    sizes = figure_sizes()
    width = max(map(len, sizes))
    for name, size in sizes.items():
        print(f"{name:<{width}}  {size:>10,}{'  over budget' if size >= BUDGET else ''}")
    if args.json:
        args.json.write_text(json.dumps(sizes, indent=1) + "\n")


if __name__ == "__main__":
    main()
