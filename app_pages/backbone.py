"""Backbone features: how coarse the feature map is against the image, and what it responds to."""

import streamlit as st

from app_pages import _presentation as presentation
from app_pages._shared import context, explain, notes, run_trace, show_figure, stage_fragment
from frcnn.analysis.features import cell_size, top_channels
from frcnn.paper_diff import BACKBONE
from frcnn.receptive_field import map_geometry
from frcnn.viz.backbone import feature_figure

ctx = context()
st.title("Backbone features")
explain(
    "The backbone (VGG-16's conv layers in the paper; a light residual network for the default model; a "
    "ResNet or MobileNet with a feature pyramid for torchvision's models) turns the image into a stack of "
    "feature maps. Two numbers of a map are easy to mix up. The **stride** s is how far apart neighbouring "
    "cells are, in network-input pixels (16 for the paper's conv5_3, 8 for the default model): the grid drawn "
    "below. The **receptive field** r is the side of the image patch one cell's value depends on, far larger "
    "than s: 196 px for VGG-16's conv5_3, and 228 px for the RPN's 3×3 window on it, the paper's number. Both "
    "follow layer by layer (kernel k, dilation d, stride t; j is the spacing of the layer's input cells). Every "
    "later stage works on this grid: the RPN slides over it, and RoI pooling crops it. torchvision first pads "
    "the network input to a multiple of 32 px, so an input of H×W px gives a map of exactly",
    r"r_l = r_{l-1} + d_l\,(k_l - 1)\,j_{l-1},\qquad j_l = j_{l-1}\,t_l,\qquad r_0 = j_0 = 1",
    r"H_f \times W_f \times C,\qquad W_f = \left\lceil \frac{32\,\lceil W / 32 \rceil}{s} \right\rceil"
    r"\quad (W = 690,\ s = 8:\ 704 / 8 = 88 \text{ columns, not } \lceil 690 / 8 \rceil = 87)",
)


def _live() -> None:
    c1, c2, c3 = presentation.controls(3)
    trace = run_trace(head=False)
    level = c1.selectbox("Feature level", list(range(len(trace.features.maps))), key="bb_level",
                         format_func=lambda i: f"{trace.features.names[i]} (stride {trace.features.strides[i]})")
    fmap = trace.features.maps[level]
    mode = c2.radio("Show", ["mean over channels", "one channel"], key="bb_mode", horizontal=True)
    channel = None
    if mode == "one channel":
        suggested = top_channels(trace, level)
        channel = c3.number_input(f"Channel (0..{fmap.shape[1] - 1}); most active: {suggested[:5]}", 0,
                                  fmap.shape[1] - 1, suggested[0], key="bb_channel")
    opacity = c3.slider("Heatmap opacity", 0.0, 1.0, 0.55, 0.05, key="bb_opacity") if mode != "one channel" else 0.55
    grid = c1.toggle("Draw the cell grid", value=True, key="bb_grid")
    ch, cw = cell_size(trace, level)
    panel = presentation.panel()  # presentation mode: the figure beside the metrics
    m1, m2, m3, m4 = panel.metrics(4)
    m1.metric("Image", f"{trace.image_size[1]}×{trace.image_size[0]}")
    m2.metric("Network input", f"{trace.preprocess.image_size[1]}×{trace.preprocess.image_size[0]}")
    m3.metric("Feature map", f"{fmap.shape[-1]}×{fmap.shape[-2]}×{fmap.shape[1]}")
    m4.metric("Cell spacing (stride) in image px", f"{cw:.1f}×{ch:.1f}")
    geo = map_geometry(trace.preprocess.image_size, trace.features.strides[level], ctx.tracer.detector)
    field = (f"one cell's receptive field is {geo.receptive_field} input px, the RPN's 3×3 window on it "
             f"{geo.rpn_window} px" if geo.rpn_window else
             "a feature pyramid mixes every coarser level into each finer one: no single receptive field")
    st.caption(f"Network input {geo.input_size[1]}×{geo.input_size[0]} px, padded to {geo.padded_size[1]}×"
               f"{geo.padded_size[0]} (a multiple of 32) → at stride {geo.stride} a {geo.map_size[1]}×"
               f"{geo.map_size[0]} map. Neighbouring cells are {geo.stride} input px apart ({cw:.1f} px of the image "
               f"as shown); {field}.")
    with panel.figure:
        show_figure(lambda: feature_figure(ctx.image_np, trace, level, channel, opacity, grid), key="bb_figure",
                    filename="backbone_features", trace=trace, stages=("preprocess", "backbone"),
                    params=(level, channel, opacity, grid))
    notes(trace)


stage_fragment(BACKBONE, _live)
