"""Losses: the four terms of the multi-task loss for this image and its ground truth, and how they move when
one setting is swept over a few values."""

import streamlit as st

from app_pages._shared import context, explain, notes, run_trace, settings, show_figure, show_settings_message, slider
from frcnn.viz.losses import (
    MAX_SWEEP_VALUES,
    SWEEPS,
    TERM_LABELS,
    TERMS,
    flat_terms,
    loss_counts,
    loss_values,
    sweep,
    sweep_figure,
    terms_figure,
    why_flat,
)

ctx = context()
st.title("Losses")
explain(
    "Faster R-CNN trains the RPN and the Fast R-CNN head with the same multi-task loss (paper equation 1): a "
    "log loss for the class (object / not for the RPN's anchors, K+1 classes for the head's RoIs) over the "
    "sampled minibatch, plus a smooth-L1 loss on the box deltas of the positives only (p*ᵢ = 1). "
    "The RPN averages over its 256 sampled anchors, the head over its sampled RoIs; torchvision's "
    "normalisation with λ = 1 plays the paper's λ = 10 with N_reg ≈ 2400 anchor locations.",
    r"L(\{p_i\},\{t_i\}) = \frac{1}{N_{cls}}\sum_i L_{cls}(p_i, p_i^*) + "
    r"\lambda \frac{1}{N_{reg}} \sum_i p_i^* L_{reg}(t_i, t_i^*)",
    r"L_{reg}(t, t^*) = \sum_{j\in\{x,y,w,h\}} \mathrm{smooth}_{L_1}(t_j - t_j^*),\qquad "
    r"\mathrm{smooth}_{L_1}(x) = \begin{cases} 0.5\,x^2/\beta & |x| < \beta \\ |x| - 0.5\,\beta & \text{otherwise}"
    r"\end{cases}",
)


def _live() -> None:
    """The page below its explanation: a widget here reruns only this part (st.fragment), not the sidebar, the title
    and the explanation."""
    c = st.columns(4)
    slider("rpn.fg_iou_thresh", "Positive IoU (RPN)", 0.0, 1.0, 0.05, container=c[0],
           help="Anchors at least this IoU with a box are positive (the paper: 0.7): the RPN's targets.")
    slider("rpn.batch_size_per_image", "RPN minibatch", 1, 1024, 1, container=c[1], help="The paper: 256.")
    slider("roi.fg_iou_thresh", "Foreground IoU (RoI head)", 0.0, 1.0, 0.05, container=c[2],
           help="RoIs at least this IoU with a box are foreground (the paper: 0.5): the head's targets.")
    slider("roi.batch_size_per_image", "RoI minibatch", 1, 512, 1, container=c[3], help="The paper: 128.")
    show_settings_message()
    trace = run_trace()
    if trace.losses is None:
        st.info("The losses need ground truth: add boxes on the **Start** page (box-select on the image, or promote "
                "detections) or upload an annotation file in the sidebar.")
        notes(trace)
        st.stop()
    values, counts = loss_values(trace.losses), loss_counts(trace)
    m = st.columns(5)
    for col, term in zip(m, (*TERMS, "total"), strict=True):
        v = values[term]
        col.metric(TERM_LABELS[term], "n/a" if v is None else f"{v:.4f}")
    st.caption(f"RPN terms over {counts['anchors_sampled']} sampled anchors ({counts['anchors_positive']} positive); "
               f"RoI terms over {counts['rois_sampled']} sampled RoIs ({counts['rois_foreground']} foreground).")
    if values["roi_classifier"] is None:
        st.warning(f"No RoI terms: the ground-truth classes are not among the model's "
                   f"({', '.join(ctx.class_names[1:])}), so the head's classifier has no target for them. "
                   "Pick a synthetic scene, or relabel the boxes on the Start page.")
    show_figure(terms_figure(trace.losses), key="loss_terms", filename="loss_terms")

    st.subheader("How they move with the settings")
    c1, c2 = st.columns([1, 2])
    key = c1.selectbox("Setting", list(SWEEPS), key="loss_sweep_key",
                       help="Each value is traced with the other settings as they are now; the backbone comes from "
                            "the cache.")
    chosen = c2.multiselect(f"Values (at most {MAX_SWEEP_VALUES})", sorted(set(SWEEPS[key]) | {settings().get(key)}),
                            default=list(SWEEPS[key]), max_selections=MAX_SWEEP_VALUES, key=f"loss_sweep_values:{key}")
    points = sweep(run_trace, settings(), key, sorted(chosen))
    for p in points:
        if p.error:
            st.caption(f"{key} = {p.value:g} skipped: {p.error}")
    show_figure(sweep_figure(points, key, settings().get(key)), key="loss_sweep", filename="loss_sweep")
    flat = why_flat(key, flat_terms(points))
    if flat:
        st.info(flat)
    notes(trace)


st.fragment(_live)()
