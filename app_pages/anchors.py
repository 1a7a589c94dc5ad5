"""Anchors: the k reference boxes at every feature-map location, from sizes, ratios and a stride; the k anchors
of a clicked location; and how well the anchors can match the ground truth at best."""

import pandas as pd
import streamlit as st

from app_pages import _presentation as presentation
from app_pages._shared import (
    apply_setting,
    bind,
    context,
    explain,
    notes,
    run_trace,
    settings,
    show_figure,
    stage_fragment,
)
from frcnn.analysis.anchor_stats import recall_by_size
from frcnn.analysis.anchors import anchor_counts, coverage, coverage_rows
from frcnn.paper_diff import ANCHORS
from frcnn.viz.anchors import anchors_figure

# floats, as the settings hold them: a multiselect matches its value to its options by their text
SIZES = [16.0, 24.0, 32.0, 48.0, 64.0, 96.0, 128.0, 192.0, 256.0, 384.0, 512.0, 768.0, 1024.0]
RATIOS = [0.25, 0.33, 0.5, 1.0, 2.0, 3.0, 4.0]
SCALES = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
BASES = [4, 8, 16, 32, 64]
STATIC_ROWS = 30  # ground-truth boxes shown as a static table; more get a scrolling data grid


def _apply_scales() -> None:
    """Base size × scales -> anchors.sizes (the list widget is re-read from the settings on its next run)."""
    sizes = tuple(sorted({float(st.session_state["anchors_base"] * s) for s in st.session_state["anchors_scales"]}))
    if apply_setting("anchors.sizes", sizes):
        st.session_state.pop("set:anchors.sizes", None)


def _size_controls() -> None:
    if st.radio("Anchor sizes as", ["a list of sizes", "scales on a base size"], key="anchors_size_mode",
                horizontal=True) == "a list of sizes":
        own = context().tracer.detector.defaults.anchors.sizes  # the model's own, so a removed one comes back
        bind("anchors.sizes", "Sizes (px, √(w·h) on the network's input)", SIZES + [float(v) for v in own],
             help="The paper: 128, 256, 512 (scales 8, 16, 32 on a 16-px base).")
        return
    base = st.session_state.setdefault("anchors_base", 16)
    st.session_state["anchors_scales"] = [float(s / base) for s in settings().anchors.sizes]  # follow the settings
    left, right = st.columns([1, 2])
    left.select_slider("Base size (px)", BASES, key="anchors_base", on_change=_apply_scales)
    right.multiselect("Scales", sorted(set(SCALES) | set(st.session_state["anchors_scales"])), key="anchors_scales",
                      format_func=lambda v: f"{v:g}", on_change=_apply_scales, help="sizes = base × scales")
    st.caption(f"sizes = {base} × scales = {', '.join(f'{s:g}' for s in settings().anchors.sizes)} px")


ctx = context()
st.title("Anchors")
explain(
    "At every location of the backbone's feature map the RPN looks at **k = sizes × ratios** reference boxes, "
    "the *anchors*, all centred on that location (stride s pixels apart on the network's input). An anchor of "
    "size S and ratio r = h / w has the area S² whatever its ratio (torchvision rounds its corners to whole "
    "pixels). This app uses torchvision's centres, (j s, i s): the top-left corner of cell (i, j), since every "
    "model here was trained with torchvision's anchor generator. The paper's code centres them in the middle of "
    "the cell's s×s pixels, half a stride (minus half a pixel) further right and down; a trained RPN's "
    "regression absorbs the offset, but a model must be used with its own convention. The RPN later scores each "
    "anchor and regresses it into a proposal; training labels it by its IoU with the ground truth, so an object "
    "that no anchor overlaps well is hard to learn: the *best-possible recall* below counts the ground-truth "
    "boxes whose best anchor reaches an IoU of 0.5 or 0.7.",
    r"w = \frac{S}{\sqrt{r}},\quad h = S\sqrt{r},\quad A = H_f \cdot W_f \cdot k",
    r"\text{centre} = (j\,s,\ i\,s) \text{ (torchvision, used here)},\qquad "
    r"\left(\tfrac{s-1}{2} + j\,s,\ \tfrac{s-1}{2} + i\,s\right) \text{ (the paper's code)}",
    r"\mathrm{IoU}(a, g) = \frac{|a \cap g|}{|a \cup g|}",
)


def _live() -> None:
    controls = presentation.box()  # presentation mode: one collapsed expander for the anchors' and the view's
    c1, c2 = presentation.columns([3, 2], controls)
    with c1:
        _size_controls()
    with c2:
        bind("anchors.ratios", "Ratios (h / w)", RATIOS, help="The paper: 0.5, 1, 2.")
        bind("anchors.stride", "Stride (px between centres)", (4, 64), 4,
             help="The backbone's total stride; another value draws anchors the trained RPN head cannot use.")
    trace = run_trace(head=False)
    a = trace.anchors
    counts = anchor_counts(trace)
    panel = presentation.panel()  # presentation mode: the figure beside the metrics, the notes below
    m = panel.metrics(5)
    m[0].metric("Anchors", f"{counts['total']:,}")
    m[1].metric("Inside the image", f"{counts['inside']:,}")
    m[2].metric("Per location (k)", counts["per_location"])
    m[3].metric("Grid (W×H)", counts["grid"])
    m[4].metric("Stride (px)", counts["stride"])
    if trace.anchors_source == "model":
        st.info("**Proposals do not use these anchors.** The trained RPN head predicts a score and a box for each "
                "anchor it was trained with, so the RPN proposals (and all after them) use the model's own anchors; "
                "this page and the anchor targets show the settings' anchors (why, in the note below).")
    notes(trace)

    v1, v2, v3, v4 = presentation.columns(4, controls if presentation.is_on() else st)
    level = v1.selectbox("Feature level", range(len(a.grid_sizes)), key="anchors_level",
                         format_func=lambda i: f"level {i} (stride {a.strides[i]})") if len(a.grid_sizes) > 1 else 0
    scope = v1.radio("Draw", ["inside", "all", "location"], key="anchors_scope",
                     format_func={"all": "all anchors", "inside": "anchors inside the image",
                                  "location": "only the chosen location"}.get)
    colour_by = v2.radio("One colour per", ["size", "ratio"], key="anchors_colour_by", horizontal=True)
    every_key = f"anchors_every_{a.strides[level]}"
    every = v2.slider("Every n-th location", 1, 16,  # about 128 px apart, unless the user (or a kept value) chose
                      None if every_key in st.session_state else min(16, max(1, 128 // a.strides[level])),
                      key=every_key,
                      help="Thin the drawing: the anchors of every n-th location in each direction, around the "
                           "chosen one (1: every location, and every location's centre can be clicked).")
    sizes = v3.multiselect("Show sizes", a.sizes[level], default=a.sizes[level], key=f"anchors_show_sizes_{a.sizes}",
                           format_func=lambda v: f"{v:g}")
    ratios = v4.multiselect("Show ratios", a.ratios, default=a.ratios, key=f"anchors_show_ratios_{a.ratios}",
                            format_func=lambda v: f"{v:g}")

    selection = (st.session_state.get("anchors_image") or {}).get("selection", {})
    if selection.get("points"):  # a click: remember where, so a redrawn figure keeps the chosen location
        st.session_state["anchors_point"] = (selection["points"][-1]["x"], selection["points"][-1]["y"])
    point = st.session_state.get("anchors_point")
    cov = coverage(trace, inside_only=trace.settings.rpn.ignore_cross_boundary)
    st.caption("Click an anchor centre (white dot) to see the k anchors of that location (on a large grid every few "
               "centres are drawn; Every n-th location = 1 draws them all). Sizes are in the network "
               f"input's pixels; the image is shown at its own size, {1 / trace.preprocess.scale[1]:.2f}× the input.")
    with panel.figure:
        show_figure(lambda: anchors_figure(ctx.image_np, trace, point, level, colour_by, sizes, ratios, scope, every,
                                           cov),
                    key="anchors_image", on_select="rerun", selection_mode=("points",), filename="anchors",
                    trace=trace, params=(point, level, colour_by, tuple(sizes), tuple(ratios), scope, every))

    st.subheader("Best anchor for each ground-truth box")
    if not len(trace.gt_boxes):
        st.warning("No ground truth for this image: upload an annotation file in the sidebar, or draw boxes on the "
                   "Start page, to see how well these anchors cover the objects.")
    else:
        r = st.columns(3)
        r[0].metric("Best-possible recall @ IoU 0.5", f"{cov.recall(0.5):.0%}")
        r[1].metric("Best-possible recall @ IoU 0.7", f"{cov.recall(0.7):.0%}")
        r[2].metric("Ground-truth boxes", len(trace.gt_boxes))
        st.caption("Among " + ("the anchors inside the image (rpn.ignore_cross_boundary is on)"
                               if trace.settings.rpn.ignore_cross_boundary else "all anchors") + ".")
        left, right = st.columns([3, 2])
        best = pd.DataFrame(coverage_rows(trace, cov))
        if len(best) <= STATIC_ROWS:  # a static table: no data grid to lay out again on every move of a slider
            left.table(best.style.hide(axis="index").format(precision=3))
        else:
            left.dataframe(best, hide_index=True, key="anchors_best_table")
        by_size = pd.DataFrame(recall_by_size(trace.gt_boxes, cov.best_iou))
        right.table(by_size.style.hide(axis="index").format({"recall@0.5": "{:.0%}", "recall@0.7": "{:.0%}"},
                                                            na_rep="-"))


stage_fragment(ANCHORS, _live)
