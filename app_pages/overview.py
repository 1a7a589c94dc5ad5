"""Start: the whole pipeline on the current image, the count and time at each stage, and the ground truth
(upload it in the sidebar, draw it here with a box selection, or promote the model's detections)."""

from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from app_pages import _ground_truth as ground_truth
from app_pages import _presentation as presentation
from app_pages._shared import (
    ALL_STAGES,
    context,
    download_trace,
    explain,
    fragment,
    notes,
    paper_box,
    plain,
    run_trace,
    show_figure,
)
from frcnn.data.picker import clean_user_truth, drawn_truth
from frcnn.models.registry import DEFAULT_CHECKPOINT
from frcnn.viz.detections import detections_figure
from frcnn.viz.overview import pipeline_dot, stage_times_figure

DRAW_FROM = 0.5  # detections drawn from this score (the detector keeps the paper's 0.05, for mAP)


def weights_label(weights: str) -> str:
    """Where the weights came from, for visitors: a file's name, never its path on the server; the shipped model
    with its model card."""
    if weights == str(DEFAULT_CHECKPOINT):
        return f"{DEFAULT_CHECKPOINT.name}, model card: docs/model\\_card.md"
    return plain(Path(weights).name if "/" in weights or "\\" in weights else weights, 80)


ctx = context()
st.title("Faster R-CNN, stage by stage")
trace = run_trace()
st.caption(f"Model **{trace.model}** ({weights_label(trace.weights)}) on **{trace.device}** · "
           f"image **{plain(ctx.image_name, 80)}** "
           f"{trace.image_size[1]}×{trace.image_size[0]} px → network input {trace.preprocess.image_size[1]}×"
           f"{trace.preprocess.image_size[0]} · {len(trace.gt_boxes)} ground-truth boxes")
explain(
    "Faster R-CNN finds objects in two stages. A **Region Proposal Network** slides over the backbone's feature "
    "map and, at every location, scores k reference boxes (*anchors*) for objectness and regresses them into "
    "*proposals*. The **Fast R-CNN head** pools a fixed-size feature grid from each proposal (RoI pooling), "
    "classifies it and refines its box. Each network has its own multi-task loss. The RPN's is the paper's "
    "equation 1 below: i runs over the anchors of a minibatch, pᵢ is the predicted probability that anchor i "
    "is an object and p\\*ᵢ its label (1 positive, 0 negative), tᵢ the four predicted box deltas and t\\*ᵢ the "
    "targets of its ground-truth box; L_cls is the log loss, L_reg the smooth-L1 loss, counted for positives "
    "only (p\\*ᵢ L_reg). The paper normalises by N_cls = 256 (the minibatch size) and N_reg ≈ 2400 (the anchor "
    "locations of a 1000×600 image at stride 16) and weights the box term by λ = 10, so that both terms weigh "
    "about the same (torchvision: both by the minibatch, λ = 1; see the Losses page). The head is trained with "
    "Fast R-CNN's loss. Each page of this app shows one stage of the trace below; changing a setting re-runs "
    "only the stages after it.",
    r"L(\{p_i\},\{t_i\}) = \frac{1}{N_{cls}}\sum_i L_{cls}(p_i, p_i^*) + "
    r"\lambda \frac{1}{N_{reg}} \sum_i p_i^* L_{reg}(t_i, t_i^*),\qquad "
    r"N_{cls} = 256,\ N_{reg} \approx 2400,\ \lambda = 10",
)
paper_box(ALL_STAGES)  # every row of the table, with its stage
figures = presentation.slot()  # presentation mode: the detections above the pipeline, on screen
st.subheader("Pipeline")
st.graphviz_chart(pipeline_dot(trace), width="stretch")
left, right = figures.columns([3, 2])
with left:
    st.subheader("Detections and ground truth")
    hidden = int((trace.detections.scores < DRAW_FROM).sum())
    if hidden:
        st.caption(f"Drawn: the detections scoring at least {DRAW_FROM:g}; the legend's \"scoring under "
                   f"{DRAW_FROM:g}\" shows the other {hidden} (the Detections page draws from any score).")
    figure_slot = st.container()  # the toggle goes under the figure: nothing more above it
    labelled = presentation.label_toggle("overview_labels")  # "class score" labels, on for a room
    with figure_slot:
        show_figure(lambda: detections_figure(ctx.image_np, trace, title=None, min_score=DRAW_FROM,
                                              label_boxes=labelled),
                    key="overview_image", on_select="rerun", selection_mode=("box",), filename="detections",
                    trace=trace, params=(DRAW_FROM, labelled))
with right:
    st.subheader("Time per stage")
    room = presentation.is_on()  # a row per stage tall enough for the room's font, labels short
    show_figure(stage_times_figure(trace, row_px=40 if room else 26, short=room), key="overview_times",
                filename="stage_times")
    notes(trace)
    download_trace(trace)


def _ground_truth() -> None:
    """The ground-truth editor: its widgets rerun only this part (st.fragment); a change to the ground truth reruns
    the page (st.rerun), whose every stage then traces with it."""
    st.subheader("Ground truth")
    st.caption("Select a rectangle on the image (box select in the figure's toolbar) to add a box; edit or delete "
               "rows below; or promote the detections above a score.")
    names = list(ctx.class_names[1:])
    cls = st.selectbox("Class of a new box", names, key="gt_class")
    boxes = ctx.gt_boxes if ctx.gt_boxes is not None else torch.zeros(0, 4)
    labels = ctx.gt_labels if ctx.gt_labels is not None else torch.zeros(0, dtype=torch.int64)
    selection = (st.session_state.get("overview_image") or {}).get("selection")  # the figure's box
    new_box = None
    if selection and selection.get("box"):
        box = selection["box"][-1]
        xs, ys = sorted(box["x"]), sorted(box["y"])
        new_box = (round(xs[0], 1), round(ys[0], 1), round(xs[-1], 1), round(ys[-1], 1))
    image_key = st.session_state[ground_truth.CURRENT]  # edits below are this image's ground truth only
    size = (ctx.image.shape[-1], ctx.image.shape[-2])  # (width, height)
    if new_box is not None and st.session_state.get("last_drawn") != (image_key, new_box):
        st.session_state["last_drawn"] = (image_key, new_box)
        b, new_label = drawn_truth(new_box, names.index(cls) + 1, size)  # the annotation files' rules
        if len(b):
            ground_truth.put_current(torch.cat([boxes, b]), torch.cat([labels, new_label]))
            st.rerun()
    table = pd.DataFrame({"class": [ctx.class_names[i] if 0 < i < len(ctx.class_names) else str(i)
                                    for i in labels.tolist()],
                          "x1": boxes[:, 0].tolist(), "y1": boxes[:, 1].tolist(), "x2": boxes[:, 2].tolist(),
                          "y2": boxes[:, 3].tolist()})
    edited = st.data_editor(table, num_rows="dynamic", key=f"gt_table:{image_key}", hide_index=True,
                            column_config={"class": st.column_config.SelectboxColumn(options=names, required=True)})
    c1, c2, c3 = st.columns(3)
    if c1.button("Apply table edits", key="gt_apply"):
        rows = edited[edited["class"].isin(names)]  # a row without a class is incomplete
        table_boxes, table_labels, _ = clean_user_truth(  # the annotation files' rules: empty or NaN dropped
            torch.tensor(rows[["x1", "y1", "x2", "y2"]].to_numpy(dtype=float, na_value=float("nan"))),
            torch.tensor([names.index(c) + 1 for c in rows["class"]], dtype=torch.int64), size)
        ground_truth.put_current(table_boxes, table_labels)
        if len(table_boxes) < len(edited):
            st.session_state["settings_message"] = f"Dropped {len(edited) - len(table_boxes)} incomplete or empty rows."
        st.rerun()
    threshold = c2.slider("Promote detections scoring at least", 0.0, 1.0, 0.5, 0.05, key="promote_thresh")
    if c2.button("Promote detections to ground truth", key="gt_promote"):
        keep = trace.detections.scores >= threshold
        ground_truth.put_current(trace.detections.boxes[keep].cpu(), trace.detections.labels[keep].cpu())
        st.rerun()
    if c3.button("Clear ground truth", key="gt_clear"):
        ground_truth.put_current(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
        st.rerun()


fragment(_ground_truth)
