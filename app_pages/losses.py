"""Losses: the four terms of the multi-task loss for this image and its ground truth, and how they move when
one setting is swept over a few values."""

import streamlit as st

from app_pages import _presentation as presentation
from app_pages._shared import bind, context, explain, notes, run_trace, settings, show_figure, stage_fragment
from frcnn.analysis.losses import TERM_LABELS, TERMS, flat_terms, loss_counts, loss_values, why_flat
from frcnn.analysis.sweeps import MAX_LOSS_SWEEP_VALUES, loss_sweep, sweeps_of
from frcnn.paper_diff import LOSSES
from frcnn.stages.losses import SMOOTH_L1_BETA
from frcnn.viz.losses import sweep_figure, terms_figure

SWEEPS = {s.key: s.values for s in sweeps_of("losses").values()}  # the library's one table: the loss sweeps

ctx = context()
st.title("Losses")
explain(
    "Two losses train Faster R-CNN, one for each network. **The RPN's loss is the paper's equation 1**: over the "
    "sampled minibatch of anchors, a log loss on objectness (p\\*ᵢ = 1 for a positive anchor, 0 for a negative) "
    "plus, for the positives only, a smooth-L1 loss of the box deltas tᵢ against the targets t\\*ᵢ of the Anchor "
    "targets page. The paper divides the first term by N_cls = 256 (the minibatch size) and the second by "
    "N_reg ≈ 2400 (the anchor locations of a 1000×600 image at stride 16), weighted by λ = 10 so that the two "
    "weigh about the same. torchvision, and this app, divide both by the minibatch size with λ = 1: the box term "
    "weighs 1/256 against the paper's 10/2400 = 1/240, about 6% less, so λ = 1 plays the paper's λ = 10 roughly, "
    "not exactly (the paper's Table 9: mAP moves by about a point for λ from 1 to 100). **The Fast R-CNN head "
    "is trained with Fast R-CNN's loss**, not equation 1: for each sampled RoI of true class u (u = 0: "
    "background), a log loss over the K+1 classes plus λ [u ≥ 1] times the smooth-L1 loss of the deltas tᵘ "
    "the head predicts for class u against the RoI's targets v (no box loss for background), λ = 1, averaged "
    "over the sampled RoIs (torchvision's fastrcnn_loss). Smooth L1 is quadratic below β and linear above: the "
    f"paper and Fast R-CNN use β = 1, torchvision's losses and this app's β = 1/{round(1 / SMOOTH_L1_BETA)}.",
    r"\text{RPN: } L(\{p_i\},\{t_i\}) = \frac{1}{N_{cls}}\sum_i L_{cls}(p_i, p_i^*) + "
    r"\lambda \frac{1}{N_{reg}} \sum_i p_i^* L_{reg}(t_i, t_i^*)",
    r"\text{paper: } N_{cls} = 256,\ N_{reg} \approx 2400,\ \lambda = 10;\qquad "
    r"\text{torchvision: } N_{reg} = N_{cls} = \text{sampled anchors},\ \lambda = 1",
    r"\text{head: } L(p, u, t^u, v) = L_{cls}(p, u) + \lambda\,[u \ge 1]\, L_{loc}(t^u, v),\qquad \lambda = 1",
    r"L_{reg}(t, t^*) = \sum_{j\in\{x,y,w,h\}} \mathrm{smooth}_{L_1}(t_j - t_j^*),\qquad "
    r"\mathrm{smooth}_{L_1}(x) = \begin{cases} 0.5\,x^2/\beta & |x| < \beta \\ |x| - 0.5\,\beta & \text{otherwise}"
    r"\end{cases},\qquad \beta = \tfrac{1}{" + f"{round(1 / SMOOTH_L1_BETA)}" + r"}\ (\text{paper: } 1)",
)


def _live() -> None:
    c = presentation.controls(4)
    bind("rpn.fg_iou_thresh", "Positive IoU (RPN)", (0.0, 1.0), 0.05, container=c[0],
         help="Anchors at least this IoU with a box are positive (the paper: 0.7): the RPN's targets.")
    bind("rpn.batch_size_per_image", "RPN minibatch", (1, 1024), 1, container=c[1], help="The paper: 256.")
    bind("roi.fg_iou_thresh", "Foreground IoU (RoI head)", (0.0, 1.0), 0.05, container=c[2],
         help="RoIs at least this IoU with a box are foreground (the paper: 0.5): the head's targets.")
    bind("roi.batch_size_per_image", "RoI minibatch", (1, 512), 1, container=c[3], help="The paper: 128.")
    trace = run_trace()
    if trace.losses is None:
        st.info("The losses need ground truth: add boxes on the **Start** page (box-select on the image, or promote "
                "detections) or upload an annotation file in the sidebar.")
        notes(trace)
        st.stop()
    values, counts = loss_values(trace.losses), loss_counts(trace)
    panel = presentation.panel()  # presentation mode: the terms' figure beside their values
    m = panel.metrics(5)
    for col, term in zip(m, (*TERMS, "total"), strict=True):
        v = values[term]
        col.metric(TERM_LABELS[term], "n/a" if v is None else f"{v:.4f}")
    st.caption(f"RPN terms over {counts['anchors_sampled']} sampled anchors ({counts['anchors_positive']} positive); "
               f"RoI terms over {counts['rois_sampled']} sampled RoIs ({counts['rois_foreground']} foreground).")
    if values["roi_classifier"] is None:
        st.warning(f"No RoI terms: the ground-truth classes are not among the model's "
                   f"({', '.join(ctx.class_names[1:])}), so the head's classifier has no target for them. "
                   "Pick a synthetic scene, or relabel the boxes on the Start page.")
    with panel.figure:
        show_figure(terms_figure(trace.losses), key="loss_terms", filename="loss_terms")

    st.subheader("How they move with the settings")
    c1, c2 = st.columns([1, 2])
    key = c1.selectbox("Setting", list(SWEEPS), key="loss_sweep_key",
                       help="Each value is traced with the other settings as they are now; the backbone comes from "
                            "the cache.")
    chosen = c2.multiselect(f"Values (at most {MAX_LOSS_SWEEP_VALUES})",
                            sorted(set(SWEEPS[key]) | {settings().get(key)}), default=list(SWEEPS[key]),
                            max_selections=MAX_LOSS_SWEEP_VALUES, key=f"loss_sweep_values:{key}")
    points = loss_sweep(run_trace, settings(), key, sorted(chosen))
    for p in points:
        if p.error:
            st.caption(f"{key} = {p.value:g} skipped: {p.error}")
    show_figure(sweep_figure(points, key, settings().get(key)), key="loss_sweep", filename="loss_sweep")
    flat = why_flat(key, flat_terms(points))
    if flat:
        st.info(flat)
    notes(trace)


stage_fragment(LOSSES, _live)
