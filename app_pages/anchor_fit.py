"""Anchor fit: how well the current anchors can cover a whole dataset's ground truth, and the sizes and ratios
k-means on the boxes' shapes suggests instead."""

import pandas as pd
import streamlit as st

from app_pages._shared import context, explain, plain, reset_widgets, set_settings, settings, show_figure
from frcnn import FrcnnError
from frcnn.anchor_fit import AnchorFit, dataset_items, fit_anchors, suggest_anchors
from frcnn.data.annotations import load_coco_dataset_boxes
from frcnn.data.dataset import ShapesScenes
from frcnn.settings import Settings
from frcnn.viz.anchor_fit import anchor_fit_figure


@st.cache_data(show_spinner="Drawing the synthetic scenes...", max_entries=8)
def _scenes(n: int, seed: int) -> list:
    return list(dataset_items(ShapesScenes(n, seed)))


@st.cache_data(show_spinner="Reading the annotations...", max_entries=4)
def _uploaded(data: bytes, name: str) -> tuple[list, tuple[str, ...]]:
    boxes = load_coco_dataset_boxes(data, name=name)
    return boxes.items, boxes.report


@st.cache_data(show_spinner="Matching every box to its best anchor...", max_entries=32,
               hash_funcs={Settings: lambda s: repr(s.select(("input.min_size", "input.max_size", "anchors.sizes",
                                                                "anchors.ratios", "anchors.stride",
                                                                "rpn.ignore_cross_boundary")))})
def _fit(key: str, _items: list, s: Settings) -> AnchorFit:
    return fit_anchors(_items, s)


def _rows(fit: AnchorFit) -> pd.DataFrame:
    summary = fit.summary()
    rows = [{"size": "all", "boxes": summary["boxes"], "recall@0.5": summary["recall@0.5"],
             "recall@0.7": summary["recall@0.7"], "mean_iou": summary["mean_iou"]}, *summary["by_size"]]
    return pd.DataFrame(rows).rename(columns={"mean_iou": "mean best IoU"})


PERCENT = {c: st.column_config.NumberColumn(format="percent") for c in ("recall@0.5", "recall@0.7")}

ctx = context()
st.title("Anchor fit")
explain(
    "The RPN can only learn an object that some anchor overlaps well: with the paper's thresholds an anchor "
    "is positive at IoU >= 0.7 (or as the best anchor of a box). Over a whole dataset, the **best-possible "
    "recall** counts the ground-truth boxes whose best anchor reaches 0.5 or 0.7 IoU, with every image resized "
    "as the model resizes it. **k-means** on the boxes' (w, h), with 1 - IoU of centred boxes as the distance "
    "(YOLOv2's anchor clustering), finds shapes that fit the data; grouping their sizes and ratios gives a "
    "sizes x ratios grid, which is what the anchor generator makes.",
    r"d(b, c) = 1 - \mathrm{IoU}(b, c),\qquad \text{recall}_t = \frac{|\{g : \max_a \mathrm{IoU}(a, g) \ge t\}|}"
    r"{|\{g\}|}",
)
source = st.radio("Dataset", ["synthetic", "upload"], horizontal=True, key="fit_source",
                  format_func={"synthetic": "built-in synthetic scenes",
                               "upload": "a COCO dataset (annotations.json, or a zip holding it)"}.get)
items, key = None, ""
if source == "synthetic":
    c1, c2 = st.columns(2)
    n = c1.slider("Scenes", 20, 1000, 100, 20, key="fit_n")
    seed = int(c2.number_input("Seed", 0, 2**31 - 1, 1, key="fit_seed"))
    items, key = _scenes(n, seed), f"shapes:{n}:{seed}"
else:
    upload = st.file_uploader("COCO annotations", type=["json", "zip"], key="fit_upload",
                              help="Only the annotations are read (image sizes come from their width/height).")
    if upload is None:
        st.info("Upload a COCO annotations.json (or a zip of a COCO folder) to fit the anchors to your data.")
        st.stop()
    try:
        items, report = _uploaded(upload.getvalue(), upload.name)
    except FrcnnError as exc:
        st.error(plain(exc))
        st.stop()
    for line in report:
        st.caption(plain(line))
    key = f"upload:{upload.file_id}"

s = settings()
try:
    fit = _fit(key, items, s)
except FrcnnError as exc:
    st.error(plain(exc))
    st.stop()
a = s.anchors
st.caption(f"Anchors from the current settings: sizes {', '.join(f'{v:g}' for v in a.sizes)}; ratios "
           f"{', '.join(f'{v:g}' for v in a.ratios)}; stride {a.stride}; input {s.input.min_size}/{s.input.max_size} "
           f"px; {'only anchors inside the image' if s.rpn.ignore_cross_boundary else 'all anchors'} (change them "
           "on the Anchors page).")
if ctx.tracer.detector.multi_level:
    st.info("This model spreads its anchor sizes over FPN levels with strides of their own; the fit here lays "
            f"every size on one grid of stride {a.stride}, so it approximates where the anchors sit (the shapes, "
            "and so the recall's main term, are exact).")
m = st.columns(4)
m[0].metric("Boxes", f"{len(fit.best_iou):,}")
m[1].metric("Recall @ IoU 0.5", f"{fit.recall(0.5):.1%}")
m[2].metric("Recall @ IoU 0.7", f"{fit.recall(0.7):.1%}")
m[3].metric("Mean best IoU", f"{fit.mean_best_iou:.3f}")

st.subheader("Suggested by k-means")
c1, c2 = st.columns(2)
# as many as the settings have (the default model has 10 sizes), up to what the settings allow
num_sizes = int(c1.number_input("Sizes", 1, 16, min(len(a.sizes), 16), key="fit_num_sizes"))
num_ratios = int(c2.number_input("Ratios", 1, 8, min(len(a.ratios), 8), key="fit_num_ratios"))
try:
    sizes, ratios = suggest_anchors(fit.shapes, num_sizes, num_ratios)
    suggested = _fit(key, items, s.replace({"anchors.sizes": sizes, "anchors.ratios": ratios}))
except FrcnnError as exc:
    st.error(plain(exc))
    st.stop()
st.caption(f"sizes {', '.join(f'{v:g}' for v in sizes)}; ratios {', '.join(f'{v:g}' for v in ratios)}")
d = st.columns(3)
d[0].metric("Recall @ IoU 0.5", f"{suggested.recall(0.5):.1%}", f"{suggested.recall(0.5) - fit.recall(0.5):+.1%}")
d[1].metric("Recall @ IoU 0.7", f"{suggested.recall(0.7):.1%}", f"{suggested.recall(0.7) - fit.recall(0.7):+.1%}")
d[2].metric("Mean best IoU", f"{suggested.mean_best_iou:.3f}",
            f"{suggested.mean_best_iou - fit.mean_best_iou:+.3f}")
if st.button("Use the suggested anchors", key="fit_apply",
             help="Sets anchors.sizes and anchors.ratios. A trained RPN head decodes them only if their number "
                  "per location is the one it was trained with; otherwise proposals keep the model's anchors."):
    set_settings(s.replace({"anchors.sizes": sizes, "anchors.ratios": ratios}))
    reset_widgets()
    st.rerun()

show_figure(anchor_fit_figure(fit, (sizes, ratios)), key="fit_figure", filename="anchor_fit")
left, right = st.columns(2)
left.markdown("**Current anchors**")
left.dataframe(_rows(fit), hide_index=True, column_config=PERCENT, key="fit_current_table")
right.markdown("**Suggested anchors**")
right.dataframe(_rows(suggested), hide_index=True, column_config=PERCENT, key="fit_suggested_table")
