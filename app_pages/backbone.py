"""Backbone features: how coarse the feature map is against the image, and what it responds to."""

import streamlit as st

from app_pages._shared import context, explain, notes, run_trace, show_figure
from frcnn.viz.backbone import cell_size, feature_figure, top_channels

ctx = context()
st.title("Backbone features")
explain(
    "The backbone (VGG-16's conv layers in the paper; a light residual network for the default model; a "
    "ResNet or MobileNet with a feature pyramid for torchvision's models) turns the image into a stack of "
    "feature maps. Each cell of a map sees a patch of the image; neighbouring cells are **stride** pixels "
    "apart (16 for the paper's conv5_3). Every later stage works on this grid: the RPN slides over it, and RoI "
    "pooling crops it. An H×W input gives a map of about",
    r"\left\lceil \tfrac{H}{s} \right\rceil \times \left\lceil \tfrac{W}{s} \right\rceil \times C,"
    r"\qquad s = 16 \text{ (VGG-16 conv5\_3)}",
)


def _live() -> None:
    """The page below its explanation: a widget here reruns only this part (st.fragment), not the sidebar, the title
    and the explanation."""
    trace = run_trace(head=False)
    levels = list(range(len(trace.features.maps)))
    c1, c2, c3 = st.columns(3)
    level = c1.selectbox("Feature level", levels, key="bb_level",
                         format_func=lambda i: f"{trace.features.names[i]} (stride {trace.features.strides[i]})")
    fmap = trace.features.maps[level]
    mode = c2.radio("Show", ["mean over channels", "one channel"], key="bb_mode", horizontal=True)
    channel = None
    if mode == "one channel":
        suggested = top_channels(trace, level)
        channel = c3.number_input(f"Channel (0..{fmap.shape[1] - 1}); most active: {suggested[:5]}", 0,
                                  fmap.shape[1] - 1, suggested[0], key="bb_channel")
    opacity = c3.slider("Heatmap opacity", 0.0, 1.0, 0.55, 0.05, key="bb_opacity") if mode != "one channel" else 0.55
    grid = st.toggle("Draw the cell grid", value=True, key="bb_grid")
    ch, cw = cell_size(trace, level)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Image", f"{trace.image_size[1]}×{trace.image_size[0]}")
    m2.metric("Network input", f"{trace.preprocess.image_size[1]}×{trace.preprocess.image_size[0]}")
    m3.metric("Feature map", f"{fmap.shape[-1]}×{fmap.shape[-2]}×{fmap.shape[1]}")
    m4.metric("One cell in image pixels", f"{cw:.1f}×{ch:.1f}")
    show_figure(lambda: feature_figure(ctx.image_np, trace, level, channel, opacity, grid), key="bb_figure",
                filename="backbone_features", trace=trace, stages=("preprocess", "backbone"),
                params=(level, channel, opacity, grid))
    notes(trace)


st.fragment(_live)()
