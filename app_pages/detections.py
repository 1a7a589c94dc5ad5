"""Detections: the Fast R-CNN head's class scores and refined boxes after the score threshold, per-class NMS
and the top-K, against the ground truth (true positives, false positives, misses)."""

import streamlit as st

from app_pages import _presentation as presentation
from app_pages._shared import bind, context, explain, notes, run_trace, show_figure, stage_fragment
from frcnn.analysis.matching import match_detections
from frcnn.paper_diff import DETECTIONS
from frcnn.viz.detections import detections_figure
from frcnn.viz.roi import detections_rows, pool_note

ctx = context()
st.title("Detections")
explain(
    "For every RoI the head gives K+1 class probabilities (softmax) and one refined box per class, "
    "decoded from the RoI with the class's deltas. Each (RoI, class) pair with probability above the "
    "**score threshold** is a candidate; **NMS** runs per class (a box suppresses same-class boxes that "
    "overlap it by more than the NMS IoU), and the best **detections per image** are kept. Against the ground "
    "truth, a detection is a true positive when it is the first (highest-scoring) of its class to overlap a "
    "not yet matched GT box by at least the chosen IoU. The box of class u is decoded from the RoI, with "
    "(x_r, y_r, w_r, h_r) the RoI's centre and size (a proposal, not an anchor) and tᵘ the head's four deltas "
    "for that class. The divisions by 10 and 5 are torchvision's box-coder weights (10, 10, 5, 5): the head "
    "learnt targets t scaled by them, which is Fast R-CNN's normalisation of the regression targets by their "
    "standard deviations (0.1, 0.1, 0.2, 0.2) written as fixed weights; the RPN's deltas are unscaled (weights "
    "1, 1, 1, 1, the Anchor targets page's t).",
    r"p = \mathrm{softmax}(z),\qquad \hat x = x_r + w_r\,\tfrac{t^u_x}{10},\ \hat y = y_r + h_r\,\tfrac{t^u_y}{10},\ "
    r"\hat w = w_r\, e^{t^u_w/5},\ \hat h = h_r\, e^{t^u_h/5}",
    r"\text{precision} = \frac{TP}{TP + FP}\qquad \text{recall} = \frac{TP}{TP + \text{misses}}",
)


def _live() -> None:
    c = presentation.controls(6)
    bind("roi.score_thresh", "Score threshold", (0.0, 1.0), 0.01, container=c[0])
    bind("roi.nms_thresh", "NMS IoU (per class)", (0.0, 1.0), 0.05, container=c[1])
    bind("roi.detections_per_img", "Detections per image", (1, 300), 1, container=c[2])
    iou = c[3].slider("Match IoU for TP / FP", 0.1, 0.95, 0.5, 0.05, key="det_iou",
                      help="Not a detector setting: how much a detection must overlap a GT box of its class to count.")
    min_score = c[4].slider("Draw scores from", 0.0, 1.0, 0.5, 0.05, key="det_min_score",
                            help="Not a detector setting: the figure draws the detections scoring at least this, and "
                                 "scores them (TP / FP / missed). The score threshold keeps the paper's low scores "
                                 "(0.05, which mAP needs); the others stay in the figure's legend.")
    labelled = presentation.label_toggle("det_labels", c[5])
    trace = run_trace()
    panel = presentation.panel()  # presentation mode: the figure beside the metrics, the captions below
    d = trace.detections
    steps = " → ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in d.counts.items())
    st.caption(f"(RoI, class) pairs left after each step: {steps}")
    thresh = trace.settings.roi.score_thresh
    drawn = int((d.scores >= min_score).sum())
    m = panel.metrics(4)
    m[0].metric("Detections", len(d.boxes), help=f"every detection the head kept: score ≥ {thresh:g} (the score "
                "threshold), after NMS and the top-K")
    every = None  # the page matches once: the metrics, the figure and the table read this
    if len(trace.gt_boxes):
        every = match_detections(d.boxes, d.scores, d.labels, trace.gt_boxes, trace.gt_labels, iou)
        shown = every.of_top(d.scores >= min_score)  # the drawn ones: the best-scoring, so the same greedy matches
        tp = int(every.true_positive.sum())
        m[1].metric("True positives", tp, help=f"of all {len(d.boxes)} detections (score ≥ {thresh:g})")
        m[2].metric("False positives", len(d.boxes) - tp, help=f"of all {len(d.boxes)} detections (score ≥ {thresh:g})")
        m[3].metric("Missed GT boxes", int(every.missed.sum()), help=f"of {len(trace.gt_boxes)}, by all "
                    f"{len(d.boxes)} detections")
        p = panel.metrics(4)
        p[0].metric(f"Precision (all {len(d.boxes)} detections, score ≥ {thresh:g})", f"{every.precision:.2f}")
        p[1].metric(f"Recall (all {len(d.boxes)} detections, score ≥ {thresh:g})", f"{every.recall:.2f}")
        p[2].metric(f"Precision (drawn {drawn}, score ≥ {max(min_score, thresh):g})", f"{shown.precision:.2f}",
                    help="the figure's: the detections scoring at least \"Draw scores from\"")
        p[3].metric(f"Recall (drawn {drawn}, score ≥ {max(min_score, thresh):g})", f"{shown.recall:.2f}",
                    help="the figure's: the detections scoring at least \"Draw scores from\"")
    else:
        st.info("No ground truth for this image, so detections are coloured by class. To score them (TP / FP / "
                "misses, precision, recall), add boxes on the **Start** page or upload an annotation file in the "
                "sidebar.")
    hidden = len(d.boxes) - drawn
    if hidden:
        st.caption(f"{hidden} of {len(d.boxes)} detections score under {min_score:g} and are not drawn (the legend's "
                   f"\"scoring under {min_score:g}\" shows them); the figure's title scores the {drawn} drawn.")
    note = pool_note(ctx.tracer.detector.defaults.roi.pool, trace.settings.roi.pool)
    if note:
        st.warning(note)
    with panel.figure:
        show_figure(lambda: detections_figure(ctx.image_np, trace, iou, min_score=min_score, label_boxes=labelled,
                                              matching=every),
                    key="det_figure", filename="detections", trace=trace, params=(iou, min_score, labelled))
    st.subheader("Detections, best first")
    st.dataframe(detections_rows(trace, iou, matching=every), key="det_table", hide_index=False, width="stretch",
                 height=320)
    if len(trace.gt_boxes):
        st.caption("IoU and GT #: a true positive's matched GT box; a false positive's most overlapping GT box of any "
                   "class (its class is in GT class: a box of a class the model does not know is never a true "
                   "positive).")
    notes(trace)


stage_fragment(DETECTIONS, _live)
