"""RPN proposals: objectness over the image, the proposal layer's funnel, proposals before and after NMS,
recall of the ground truth, and greedy NMS replayed one step at a time."""

import pandas as pd
import streamlit as st

from app_pages import _presentation as presentation
from app_pages._shared import bind, context, explain, notes, run_trace, settings, show_figure, stage_fragment
from frcnn.analysis.proposals import REDUCTIONS, nms_state, recall_at, replay, top_candidates
from frcnn.paper_diff import PROPOSALS
from frcnn.viz.proposals import (
    funnel_figure,
    level_label,
    nms_step_figure,
    nms_step_rows,
    objectness_figure,
    proposals_figure,
    recall_figure,
)

ctx = context()
st.title("RPN proposals")
explain(
    "At every anchor the RPN predicts an **objectness** logit and four deltas. The proposal layer decodes each "
    "anchor into a box, keeps the **pre-NMS top-N** by objectness (per FPN level), clips them to the image, drops "
    "boxes smaller than **min size** and below the **score threshold**, runs **non-maximum suppression** and "
    "keeps the **post-NMS top-N**: these boxes are the proposals the Fast R-CNN head classifies. NMS is greedy: "
    "take the best remaining box, delete every remaining box that overlaps it by more than the threshold, repeat. "
    "The decoding inverts the paper's t with (x_a, y_a, w_a, h_a) the anchor's centre and size (the RPN's "
    "box-coder weights are 1, 1, 1, 1; torchvision also caps t_w and t_h at log(1000/16) before the exponential).",
    r"x = x_a + t_x w_a,\quad y = y_a + t_y h_a,\quad w = w_a e^{t_w},\quad h = h_a e^{t_h}",
    r"\text{NMS: } b_j \text{ is suppressed by a kept } b_i \text{ with } s_i \ge s_j "
    r"\iff \mathrm{IoU}(b_i, b_j) > \tau_{\mathrm{NMS}}",
)


def _live() -> None:
    trace = run_trace(head=False)
    levels = len(trace.rpn.objectness_maps)
    controls = presentation.box()  # presentation mode: one collapsed expander for the layer's settings and the view
    c1, c2, c3, c4, c5 = presentation.columns(5, controls)
    bind("rpn.pre_nms_top_n", "Pre-NMS top-N" + (" per level" if levels > 1 else ""),
         (10, max(trace.rpn.num_per_level)), 10, container=c1, help="Best-scoring anchors decoded before NMS.")
    bind("rpn.nms_thresh", "NMS IoU threshold", (0.0, 1.0), 0.05, container=c2,
         help="A box is suppressed if its IoU with a better kept box is above this (1 = no NMS).")
    bind("rpn.post_nms_top_n", "Post-NMS top-N", (1, max(2, settings().rpn.pre_nms_top_n)), 1, container=c3,
         help="Proposals kept after NMS (paper: 300 at test time); at most the pre-NMS top-N.")
    bind("rpn.min_size", "Min size (input px)", (0.0, 64.0), 1.0, container=c4,
         help="Boxes with a side below this, in network-input pixels, are dropped.")
    bind("rpn.score_thresh", "Score threshold", (0.0, 1.0), 0.01, container=c5,
         help="Boxes with P(object) below this are dropped.")
    notes(trace)

    left, right = st.columns([3, 2])
    with left:
        a, b, c = presentation.columns([2, 3, 2], controls if presentation.is_on() else st)
        reduce = a.selectbox("Objectness of a location", REDUCTIONS, key="prop_reduce",
                             help="The k anchors' P(object) at a location: their max or their mean.")
        level = b.selectbox("FPN level", range(levels), key="prop_level", format_func=lambda i: level_label(trace, i),
                            disabled=levels == 1)
        stretch = c.toggle("Stretch colours", key="prop_stretch", help="Colours span the map's own range, not [0, 1].")
        show_figure(lambda: objectness_figure(ctx.image_np, trace, level, reduce, stretch), key="prop_objectness",
                    filename="objectness", trace=trace, stages=("preprocess", "backbone", "rpn_head"),
                    params=(level, reduce, stretch))
    with right:
        show_figure(funnel_figure(trace.proposals.counts, trace.settings.rpn, levels), key="prop_funnel",
                    filename="proposal_funnel")
        if len(trace.gt_boxes):
            recall = recall_at(trace.proposals.boxes, trace.gt_boxes, (0.5, 0.7))
            m1, m2 = st.columns(2)
            m1.metric("Recall of GT at IoU 0.5", f"{recall[0.5]:.0%}")
            m2.metric("Recall of GT at IoU 0.7", f"{recall[0.7]:.0%}")
            show_figure(recall_figure(trace), key="prop_recall", filename="proposal_recall")
        else:
            st.caption("No ground truth for this image: add some on the start page to see the recall of the proposals.")

    st.subheader("Proposals before and after NMS")
    a, b = st.columns([3, 1])
    top_n = a.slider("Boxes drawn per layer (best first)", 1, 300, 30, key="prop_top_n",
                     help="Only the best boxes of each layer are drawn, for readability; click a legend entry to "
                          "hide it.")
    shade = b.toggle("Opacity by P(object)", value=True, key="prop_shade")
    labelled = presentation.label_toggle("prop_labels", b)
    show_figure(lambda: proposals_figure(ctx.image_np, trace, top_n, shade, label_boxes=labelled), key="prop_boxes",
                filename="proposals", trace=trace, params=(top_n, shade, labelled))

    st.subheader("NMS step by step")
    st.caption("Greedy NMS replayed on the best M candidates" + (" of the chosen FPN level" if levels > 1 else "")
               + f" at IoU {trace.settings.rpn.nms_thresh:g}: each step keeps the best box left and removes the boxes "
               "that overlap it too much. The boxes kept are exactly torchvision's `nms` on these candidates.")
    a, b = st.columns([3, 1])
    m = a.slider("Candidates to replay (M)", 5, 60, 20, key="nms_m")
    zoom = b.toggle("Zoom to the step", value=False, key="nms_zoom")
    idx = top_candidates(trace.proposals.pre_nms_scores, m, trace.proposals.pre_nms_level,
                         level if levels > 1 else None)
    boxes, scores = trace.proposals.pre_nms_boxes.cpu()[idx], trace.proposals.pre_nms_scores.cpu()[idx]
    steps = replay(boxes, scores, trace.settings.rpn.nms_thresh)
    if not steps:
        st.info("No candidates to replay: the filters above left none.")
        st.stop()


    def _move(delta: int) -> None:
        st.session_state["nms_step"] = min(max(1, st.session_state.get("nms_step", 1) + delta), len(steps))


    st.session_state["nms_step"] = min(st.session_state.get("nms_step", 1), len(steps))
    p, s, n = st.columns([1, 8, 1])
    p.button("◀ Prev", key="nms_prev", on_click=_move, args=(-1,), disabled=st.session_state["nms_step"] <= 1)
    n.button("Next ▶", key="nms_next", on_click=_move, args=(1,), disabled=st.session_state["nms_step"] >= len(steps))
    step = s.slider("Step", 1, len(steps), key="nms_step") if len(steps) > 1 else 1
    state = nms_state(steps, len(boxes), step)
    fig_col, table_col = st.columns([3, 1])
    with fig_col:
        show_figure(nms_step_figure(ctx.image_np, boxes, scores, state, step, len(steps), trace.settings.rpn.nms_thresh,
                                    zoom), key="nms_replay", filename="nms_step")
    with table_col:
        st.markdown(f"**Step {step}:** keep candidate #{state.kept + 1} (P(object) {float(scores[state.kept]):.3f}); "
                    f"it suppresses {len(state.suppressed)}.")
        rows = nms_step_rows(scores, state)
        if rows:
            st.dataframe(pd.DataFrame(rows), key="nms_table", hide_index=True, width="stretch")
        else:
            st.caption(f"No remaining candidate overlaps it by more than IoU {trace.settings.rpn.nms_thresh:g}.")
        st.caption(f"{len(steps)} of {len(boxes)} candidates kept; {len(state.remaining)} still to visit.")


stage_fragment(PROPOSALS, _live)
