"""Anchor targets: which anchors the RPN learns to call object or background, the minibatch it learns from,
and the regression targets tx, ty, tw, th of each anchor."""

import pandas as pd
import streamlit as st

from app_pages import _presentation as presentation
from app_pages._shared import bind, context, explain, notes, run_trace, show_figure, stage_fragment
from frcnn.analysis.anchors import best_anchor_ties, positive_rows, target_counts
from frcnn.paper_diff import ANCHOR_TARGETS
from frcnn.viz.anchors import MAX_REQUESTED_BOXES, anchor_targets_figure

ctx = context()
st.title("Anchor targets")
explain(
    "To train the RPN every anchor gets a label from its IoU with the ground-truth boxes. An anchor is "
    "**positive** by one of two rules: (i) its IoU with some box reaches the positive threshold θfg, or (ii) the "
    "low-quality rule: it is the best anchor of some box, even below θfg. \"The best anchor\" is often many: "
    "every anchor tied at the box's highest IoU counts (the paper's \"anchor/anchors\", torchvision's Matcher), "
    "and on a regular grid whole rows of anchors tie, so one box can make dozens of positives at an IoU well "
    "under θfg (the table below counts them; hover a positive to see which rule made it). An anchor is "
    "**negative** if its IoU with every box is below the negative threshold θbg; otherwise **ignored**: it adds "
    "nothing to the loss. The paper also ignores anchors that cross the image's border. Each image then "
    "contributes a *minibatch* of anchors drawn at random, at most a fraction positive, the rest negatives. A "
    "positive anchor learns to regress onto its box with the paper's t, unscaled (the RPN's box-coder weights "
    "are 1, 1, 1, 1; the Fast R-CNN head's targets are the same t times 10, 10, 5, 5: see Detections):",
    r"\mathrm{IoU}(a, g) = \frac{|a \cap g|}{|a \cup g|}",
    r"p^*_a = \begin{cases} 1 & \max_g \mathrm{IoU}(a, g) \ge \theta_{fg} \ \text{or}\ "
    r"\mathrm{IoU}(a, g) = \max_{a'} \mathrm{IoU}(a', g) > 0 \text{ for some } g \\ "
    r"0 & \max_g \mathrm{IoU}(a, g) < \theta_{bg} \\ \text{ignored} & \text{otherwise} \end{cases}",
    r"t_x = \frac{x - x_a}{w_a},\quad t_y = \frac{y - y_a}{h_a},\quad t_w = \log\frac{w}{w_a},\quad "
    r"t_h = \log\frac{h}{h_a}",
)


def _live() -> None:
    controls = presentation.box()  # presentation mode: one collapsed expander for the thresholds and the view
    c1, c2, c3 = presentation.columns(3, controls)
    bind("rpn.fg_iou_thresh", "Positive IoU θfg (≥)", (0.0, 1.0), 0.05, container=c1,
         help="The paper: 0.7. Must be at least the negative threshold.")
    bind("rpn.bg_iou_thresh", "Negative IoU θbg (<)", (0.0, 1.0), 0.05, container=c1, help="The paper: 0.3.")
    bind("rpn.allow_low_quality_matches", "Best anchor of each box is positive", container=c2,
         help="The low-quality rule: every ground-truth box gets at least its best anchor(s), even below θfg.")
    bind("rpn.ignore_cross_boundary", "Ignore anchors crossing the border", container=c2,
         help="The paper (training): anchors not wholly inside the image are never labelled.")
    bind("rpn.batch_size_per_image", "Minibatch size", (1, 1024), 1, container=c3, help="The paper: 256.")
    bind("rpn.positive_fraction", "At most this share positive", (0.0, 1.0), 0.05, container=c3, help="The paper: 0.5.")
    bind("rpn.sample_seed", "Sampling seed", (0, 99), 1, container=c2, help="Another draw of the same minibatch rule.")

    trace = run_trace(head=False)
    if trace.anchor_targets is None or not len(trace.gt_boxes):
        st.warning("Anchor targets need ground truth, and this image has none. Upload an annotation file (COCO JSON, "
                   "Pascal VOC XML or YOLO txt) in the sidebar, pick a sample image that has boxes, or draw boxes on "
                   "the **Start** page (box-select on its image).")
        notes(trace)
        st.stop()

    counts = target_counts(trace)
    panel = presentation.panel()  # presentation mode: the figure beside the metrics, the notes below
    m = panel.metrics(5)
    m[0].metric("Positive", f"{counts['positive']:,}")
    m[1].metric("Negative", f"{counts['negative']:,}")
    m[2].metric("Ignored", f"{counts['ignored']:,}")
    m[3].metric("Sampled positive", f"{counts['sampled_positive']:,}")
    m[4].metric("Sampled negative", f"{counts['sampled_negative']:,}")
    if trace.anchors_source == "model":
        st.info("These are the settings' anchors; the trained RPN head uses the model's own, so its loss is computed "
                "on those (see the note below).")

    d1, d2 = presentation.columns(2, controls if presentation.is_on() else st)
    neg_boxes = d1.toggle("Draw every negative as a box", key="targets_neg_boxes",
                          help="Off: each location's cell shaded by how many of its anchors are negative (hover for "
                               f"the count and best IoU). On: their boxes too, at most {MAX_REQUESTED_BOXES:,} boxes "
                               "in all, shared with the ignored anchors' and evenly spread; the legend says how many "
                               "of how many.")
    ign_boxes = d2.toggle("Draw every ignored anchor as a box", key="targets_ign_boxes",
                          help="Off: each location's cell shaded grey by how many of its anchors are ignored. On: "
                               f"their boxes too, at most {MAX_REQUESTED_BOXES:,} in all with the negatives'.")
    st.caption("Hover the dot at an anchor's top-left corner for its IoU, matched box, label and tx, ty, tw, th "
               "(a positive's also says which rule made it positive). Click legend entries to hide layers; hover a "
               "shaded cell for its counts.")
    with panel.figure:
        show_figure(lambda: anchor_targets_figure(ctx.image_np, trace, negatives_as_boxes=neg_boxes,
                                                  ignored_as_boxes=ign_boxes),
                    key="targets_image", filename="anchor_targets", trace=trace, params=(neg_boxes, ign_boxes))
    notes(trace)

    st.subheader("Best anchor of each box: ties")
    ties = best_anchor_ties(trace)
    tied = [r for r in ties if r["anchors tied at it"] > 1]
    rule = "positive" if trace.settings.rpn.allow_low_quality_matches else "not positive (the low-quality rule is off)"
    st.caption("; ".join(f"GT #{r['GT']}: best anchor: {r['anchors tied at it']} tied anchors at IoU "
                         f"{r['best IoU']:.3f}" for r in tied) + f" — each of them {rule}." if tied else
               "Every box's best anchor is one anchor (no ties).")
    st.table(pd.DataFrame(ties).style.hide(axis="index").format({"best IoU": "{:.3f}"}))

    st.subheader("Positive anchors")
    st.dataframe(pd.DataFrame(positive_rows(trace)), hide_index=True, key="targets_positive_table")


stage_fragment(ANCHOR_TARGETS, _live)
