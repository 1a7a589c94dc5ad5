"""Compare: the same image through two settings side by side (what differs highlighted), and sweeps of one
setting over a set of images (proposal recall against post-NMS top-N; detection precision and recall against
the score threshold and the NMS IoU)."""

import pandas as pd
import streamlit as st
import torch

from app_pages import _presentation as presentation
from app_pages._shared import (
    bind,
    context,
    explain,
    fragment,
    guard,
    run_trace,
    settings,
    show_figure,
    show_settings_message,
)
from frcnn.analysis.compare import only_in, what_boxes
from frcnn.analysis.sweeps import PLOTTED, run_sweep, sweeps_of
from frcnn.data.dataset import ShapesScenes
from frcnn.data.shapes import CLASS_NAMES
from frcnn.settings import parse_assignments
from frcnn.viz.compare import comparison_figure, sweep_figure

SWEEPS = sweeps_of("recall") | sweeps_of("detections")  # the library's one table: the ones over a set of images


ctx = context()
st.title("Compare settings")
explain(
    "**A** is the session's current settings; **B** is A with the changes you type. Both trace the same image "
    "through the same model (the shared cache re-runs only the stages a change reaches). Boxes one side has and "
    "the other lacks (no box of the same class at IoU >= 0.9) are drawn in orange. Below, a **sweep** runs one "
    "setting through several values over a set of images and plots what it does to recall and precision.")


def _live() -> None:
    """The page below its explanation: a widget here reruns only this part (st.fragment), not the sidebar, the title
    and the explanation."""

    controls = presentation.box()  # presentation mode: A's settings, B's changes and their table in one expander
    c1, c2 = presentation.columns(2, controls)
    bind("rpn.nms_thresh", "A: RPN NMS IoU", (0.0, 1.0), 0.05, container=c1,
         help="A's own setting (the session's); B follows it unless B's changes name it.")
    bind("roi.score_thresh", "A: score threshold", (0.0, 1.0), 0.01, container=c2,
         help="A's own setting (the session's); B follows it unless B's changes name it.")
    show_settings_message()
    a = settings()
    text = controls.text_area("B: changes to A, one KEY=VALUE per line", "rpn.nms_thresh=0.5\nroi.score_thresh=0.3",
                        key="compare_b", help="Any key of `python -m frcnn keys`, e.g. anchors.sizes=64,128,256")
    with guard(stop=True):
        b = a.replace(parse_assignments([line.strip() for line in text.splitlines() if line.strip()], "B:"))
    diff = b.diff(a)
    if not diff:
        st.info("B equals A: type a change above.")
    stage = controls.radio("Boxes", ["detections", "proposals"], horizontal=True, key="compare_stage")
    trace_a, trace_b = run_trace(a), run_trace(b)
    controls.dataframe(pd.DataFrame([{"setting": k, "A": str(va), "B": str(vb)} for k, (vb, va) in diff.items()]),
                 hide_index=True, key="compare_diff")

    left, right = st.columns(2)
    for col, name, t, other in ((left, "A", trace_a, trace_b), (right, "B", trace_b, trace_a)):
        boxes, labels, _ = what_boxes(t, stage)
        o_boxes, o_labels, _ = what_boxes(other, stage)
        n_only = int(only_in(boxes, labels, o_boxes, o_labels).sum())
        with col:
            st.metric(f"{name}: {stage}", len(boxes), f"{n_only} only in {name}", delta_color="off")
            show_figure(lambda t=t, other=other, name=name, boxes=boxes: comparison_figure(
                ctx.image_np, t, other, stage, f"{name}: {len(boxes)} {stage}"), key=f"compare_fig_{name}",
                filename=f"compare_{name}", trace=t, params=(stage, tuple(sorted(other.keys.items()))))

    counts = pd.DataFrame({"A": trace_a.counts(), "B": trace_b.counts()})
    counts["B - A"] = counts["B"] - counts["A"]
    st.dataframe(counts.style.apply(lambda row: ["background-color: #ffe0b2" if row["B - A"] else "" for _ in row],
                                    axis=1), key="compare_counts")
    if trace_a.losses is not None and trace_b.losses is not None:
        la, lb = trace_a.losses.as_dict(), trace_b.losses.as_dict()
        st.dataframe(pd.DataFrame({"A": la, "B": lb}).T, key="compare_losses")

    st.subheader("Sweep")
    c1, c2, c3 = st.columns([2, 2, 1])
    kind = c1.selectbox("What", list(SWEEPS), key="sweep_kind")
    shapes_model = ctx.class_names == CLASS_NAMES
    sources = ["image"] + (["scenes"] if shapes_model else [])
    source = c2.radio("Over", sources, horizontal=True, key="sweep_source",
                      format_func={"image": "this image (needs ground truth)", "scenes": "synthetic scenes"}.get)
    n = c3.number_input("Scenes", 2, 200, 10, key="sweep_n", disabled=source != "scenes")
    spec = SWEEPS[kind]
    if st.button("Run the sweep", key="sweep_run", type="primary"):
        if source == "image":
            if ctx.gt_boxes is None or not len(ctx.gt_boxes):
                st.error("This image has no ground truth: load an annotation file or draw boxes on the Start page.")
                st.stop()
            labels = ctx.gt_labels if ctx.gt_labels is not None else torch.ones(len(ctx.gt_boxes), dtype=torch.int64)
            items = [(ctx.image, ctx.gt_boxes, labels)]
        else:
            scenes = ShapesScenes(int(n), 1)
            items = [scenes[i] for i in range(len(scenes))]
        bar = st.progress(0.0, text=f"Sweeping {spec.key} over {len(items)} image(s)...")
        result = run_sweep(ctx.tracer, items, a, spec, progress=bar.progress)
        bar.empty()
        st.session_state["sweep_result"] = (result, PLOTTED[spec.measure])
    result, metrics = st.session_state.get("sweep_result") or (None, ())
    if result is not None:
        show_figure(sweep_figure(result, metrics), key="sweep_figure", filename="sweep")
        st.dataframe(pd.DataFrame({result.key: result.values, **result.metrics}), hide_index=True, key="sweep_table")


fragment(_live)
