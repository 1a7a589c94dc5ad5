"""RoI sampling and pooling: the foreground / background minibatch the Fast R-CNN head learns from, and one
RoI pooled with RoIPool and RoIAlign side by side, their bins drawn on the feature map."""

import streamlit as st
import torch

from app_pages import _presentation as presentation
from app_pages._shared import bind, context, explain, notes, run_trace, show_figure, stage_fragment
from frcnn.analysis.roi import default_roi, pool_roi, roi_boxes, roi_counts
from frcnn.paper_diff import ROI
from frcnn.viz.roi import (
    POOL_OPS,
    clicked_roi,
    feature_bins_figure,
    pool_note,
    pooled_figure,
    pooled_range,
    roi_descriptions,
    sampling_figure,
)

ctx = context()
st.title("RoI sampling & pooling")
explain(
    "The proposals, with the ground-truth boxes appended, are labelled by their best IoU with a GT box: "
    "**foreground** (that box's class) at IoU ≥ `fg_iou_thresh`, **background** for IoU in "
    "[`bg_iou_thresh_lo`, `bg_iou_thresh_hi`), otherwise ignored. A minibatch of `batch_size_per_image` RoIs, "
    "at most `positive_fraction` of it foreground, trains the head (Fast R-CNN 2.3). The paper (as Fast R-CNN) "
    "draws background from IoU [0.1, 0.5), on the heuristic that RoIs overlapping some object a little are the "
    "hard negatives; torchvision and Detectron draw it from IoU 0, which the default model keeps "
    "(`bg_iou_thresh_lo` = 0: the head also sees the clutter far from every object, which it must reject at test "
    "time). Every RoI is then cut from the feature map into a fixed S×S grid. **RoIPool** (Fast R-CNN, the "
    "paper's) rounds the RoI to whole feature cells and gives bin p the cells from ⌊p h/S⌋ up to ⌈(p+1) h/S⌉: "
    "neighbouring bins share a cell wherever (p+1) h/S is not a whole number, but never leave a gap; each bin "
    "takes its maximum. **RoIAlign** comes from Mask R-CNN (He et al. 2017), not this paper: it keeps the exact "
    "bins and averages bilinear samples, with no rounding.",
    r"\text{fg: } \max_g \mathrm{IoU}(r,g) \ge \theta_{fg} \qquad "
    r"\text{bg: } \theta_{lo} \le \max_g \mathrm{IoU}(r,g) < \theta_{hi}",
    r"\text{the paper: } \theta_{fg} = \theta_{hi} = 0.5,\ \theta_{lo} = 0.1;\qquad \text{torchvision, default: } "
    r"\theta_{lo} = 0",
    r"\text{RoIPool: } y_{pq} = \max_{(i,j)\,\in\,[\lfloor p\frac{h}{S}\rfloor,\lceil (p+1)\frac{h}{S}\rceil)"
    r"\times[\lfloor q\frac{w}{S}\rfloor,\lceil (q+1)\frac{w}{S}\rceil)} x_{ij}",
    r"\text{RoIAlign: } y_{pq} = \frac{1}{n^2}\sum_{k=1}^{n^2} \mathrm{bilinear}\big(x;\ s_k^{pq}\big),"
    r"\quad s_k^{pq} \text{ an } n\times n \text{ grid in the exact bin } (p,q)",
)


def _live() -> None:
    st.subheader("RoI sampling")
    c = presentation.controls(6)
    bind("roi.fg_iou_thresh", "Foreground IoU ≥", (0.0, 1.0), 0.05, container=c[0])
    bind("roi.bg_iou_thresh_hi", "Background IoU <", (0.0, 1.0), 0.05, container=c[1])
    bind("roi.bg_iou_thresh_lo", "Background IoU ≥", (0.0, 1.0), 0.05, container=c[2],
         help="The paper (as Fast R-CNN): 0.1. torchvision's models and the default model: 0, so that the head "
              "also learns to reject RoIs far from every object (see This model vs the paper).")
    bind("roi.batch_size_per_image", "RoIs a minibatch", (1, 512), 1, container=c[3])
    bind("roi.positive_fraction", "Foreground share ≤", (0.0, 1.0), 0.05, container=c[4])
    bind("roi.sample_seed", "Sampling seed", (0, 20), 1, container=c[5])
    trace = run_trace()
    counts = roi_counts(trace)
    panel = presentation.panel()  # presentation mode: the figure beside the metrics and the RoI picker
    if trace.roi_targets is None:
        st.info("No ground truth for this image, so there is no RoI minibatch: add boxes on the **Start** page "
                "(box-select on the image, or promote detections) or upload an annotation file in the sidebar. "
                f"Below, pick one of the {counts['proposals']} proposals the detector pools.")
    else:
        m = panel.metrics(5)
        m[0].metric("Foreground RoIs", counts["foreground"], help=f"{counts['candidates_foreground']} candidates "
                    f"qualified; {counts['gt_in_minibatch']} of the minibatch are GT boxes themselves")
        m[1].metric("Background RoIs", counts["background"], help=f"{counts['candidates_background']} candidates "
                    "qualified")
        m[2].metric("Ignored candidates", counts["ignored"])
        m[3].metric("Candidates", counts["candidates"], help="proposals + GT boxes")
        m[4].metric("Ground-truth boxes", len(trace.gt_boxes))

    rois = roi_boxes(trace)
    n = len(rois)
    signature = (n, tuple(rois[:, 0].tolist()))
    if st.session_state.get("roi_signature") != signature or st.session_state.get("roi_pick", n) >= n:
        # a new minibatch (a threshold or seed moved): the RoI the user looked at stays picked while it is in it
        kept = st.session_state.get("roi_pick_box")
        same = (rois == torch.tensor(kept)).all(dim=1).nonzero() if kept is not None and n else []
        st.session_state.update(roi_signature=signature, roi_pick=int(same[0]) if len(same) else default_roi(trace))
    click = clicked_roi((st.session_state.get("roi_chart") or {}).get("selection"))
    if click is not None and click != st.session_state.get("roi_last_click") and click < n:
        st.session_state.update(roi_last_click=click, roi_pick=click)
    texts = roi_descriptions(trace)
    with panel.side:
        pick = st.selectbox("RoI to pool (or click its centre point on the image)", range(n), key="roi_pick",
                            format_func=lambda i: texts[i]) if n else None
    st.session_state["roi_pick_box"] = rois[pick].tolist() if pick is not None else None
    with panel.figure:
        show_figure(lambda: sampling_figure(ctx.image_np, trace, pick), key="roi_chart", on_select="rerun",
                    selection_mode=("points",), filename="roi_sampling", trace=trace, params=(pick,))

    st.subheader("RoI pooling")
    if pick is None:
        st.warning("No RoI to pool: the proposal stage kept none.")
        st.stop()
    c = presentation.controls(4, "RoI pooling controls")
    used = bind("roi.pool", "Detector pools with", list(POOL_OPS), container=c[0])
    size = bind("roi.output_size", "Output size S", (1, 14), 1, container=c[1])
    ratio = bind("roi.sampling_ratio", "RoIAlign samples a bin side (0: adaptive)", (0, 8), 1, container=c[2])
    pooled = pool_roi(trace, roi_boxes(trace)[pick], size, ratio)
    channel = None
    if c[3].radio("Show", ["mean over channels", "one channel"], key="roi_show", horizontal=True) == "one channel":
        channel = c[3].number_input(f"Channel (0..{pooled.roi_pool.shape[0] - 1})", 0, pooled.roi_pool.shape[0] - 1,
                                    pooled.most_active_channel(), key="roi_channel")
    det = ctx.tracer.detector
    head_size = det.pool_output_size
    note = pool_note(det.defaults.roi.pool, used)
    if note:
        st.warning(note)
    st.caption(f"{texts[pick]} → feature level {trace.features.names[pooled.level]}, "
               f"spatial scale {pooled.spatial_scale:g}. RoIPool's bins (orange) snap to whole cells: "
               "neighbours can overlap, never leave a gap; RoIAlign's bins (blue, Mask R-CNN 2017) are exact. "
               "Hover a bin's centre for its pooled value. Both pooled grids share one colour scale.")
    zrange = pooled_range(pooled, channel)
    for col, op in zip(st.columns(2), POOL_OPS, strict=True):
        with col:
            show_figure(feature_bins_figure(trace, pooled, op, channel, used=op == used, head_size=head_size),
                        key=f"roi_bins_{op}", filename=f"{op}_bins")
            show_figure(pooled_figure(pooled, op, channel, used=op == used, head_size=head_size, zrange=zrange),
                        key=f"roi_pooled_{op}", filename=f"{op}_output")
    notes(trace)


stage_fragment(ROI, _live)
