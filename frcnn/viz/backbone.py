"""Backbone features: the feature map's grid over the image (the stride made visible) and activation
heatmaps (mean over channels, or one channel) overlaid on the image; the numbers come from
:mod:`frcnn.analysis.features`."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from frcnn.analysis.features import cell_size, feature_map_values
from frcnn.trace import Trace
from frcnn.viz.common import HIGHLIGHT, add_heatmap, add_path, image_figure, segments_path


def feature_figure(image: np.ndarray, trace: Trace, level: int = 0, channel: int | None = None,
                   opacity: float = 0.55, show_grid: bool = True, height: int = 620) -> go.Figure:
    """The image, the activation heatmap of one level over it, and the cell grid (every cell = one stride)."""
    fig = image_figure(image, height=height)
    values = feature_map_values(trace, level, channel)
    ch, cw = cell_size(trace, level)
    what = "mean over channels" if channel is None else f"channel {channel}"
    add_heatmap(fig, values, (ch, cw), name=what, opacity=opacity, colorscale="Inferno",
                hovertemplate="cell (row %{y:.0f} px, col %{x:.0f} px): %{z:.3f}<extra>" + what + "</extra>")
    if show_grid:  # one path shape: the columns' and the rows' lines
        h, w = image.shape[:2]
        rows, cols = values.shape
        xs = np.array([j * cw for j in range(cols + 1) if j * cw <= w], dtype=np.float64)
        ys = np.array([i * ch for i in range(rows + 1) if i * ch <= h], dtype=np.float64)
        seg_x = np.concatenate([np.stack([xs, xs], 1), np.tile([0.0, w], (len(ys), 1))])  # (L, 2): x0, x1
        seg_y = np.concatenate([np.tile([0.0, h], (len(xs), 1)), np.stack([ys, ys], 1)])  # (L, 2): y0, y1
        add_path(fig, segments_path(seg_x, seg_y), HIGHLIGHT, f"feature cells ({cols}×{rows})", width=0.6,
                 opacity=0.6)
    return fig
