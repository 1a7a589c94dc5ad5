"""The anchor-fit figure: every ground-truth box of a dataset as a point (width, height) on log axes,
coloured by its best anchor IoU, with the anchor shapes (and suggested ones) drawn over it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator

from frcnn.anchor_fit import AnchorFit
from frcnn.viz.common import fit_legend


def anchor_shapes(sizes: Sequence[float], ratios: Sequence[float]) -> np.ndarray:
    """(R * S, 2) widths and heights of the anchors torchvision lays: ``AnchorGenerator.generate_anchors`` (w =
    size / sqrt(ratio), h = size * sqrt(ratio), ratio = h / w, then the corners rounded to whole pixels around the
    centre: size 22, ratio 0.5 is 32 x 16, not 31.11 x 15.56). Ratios outer, sizes inner, as torchvision orders
    them."""
    if not len(sizes) or not len(ratios):
        return np.zeros((0, 2))
    base = AnchorGenerator().generate_anchors(list(sizes), list(ratios), dtype=torch.float64)  # (R * S, 4)
    return torch.stack([base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]], dim=1).numpy()


def anchor_fit_figure(fit: AnchorFit, suggested: tuple[Sequence[float], Sequence[float]] | None = None,
                      max_points: int = 20_000, height: int = 560) -> go.Figure:
    wh = fit.shapes.numpy().astype(np.float32)  # (G, 2); float32 as every figure sends (frcnn.viz.common)
    best = fit.best_iou.numpy().astype(np.float32)
    if len(wh) > max_points:  # an even thinning keeps the picture and the browser light
        keep = np.linspace(0, len(wh) - 1, max_points).astype(int)
        wh, best = wh[keep], best[keep]
    fig = go.Figure()
    fig.add_trace(go.Scattergl(
        x=wh[:, 0], y=wh[:, 1], mode="markers", name=f"ground truth ({len(fit.best_iou):,})",
        marker=dict(size=5, color=best, colorscale="RdYlGn", cmin=0, cmax=1, opacity=0.7,
                    colorbar=dict(title="best anchor IoU", thickness=12)),
        customdata=np.stack([best, np.sqrt(wh[:, 0] * wh[:, 1]), wh[:, 1] / wh[:, 0]], axis=1).astype(np.float32),
        hovertemplate="w %{x:.1f} px, h %{y:.1f} px<br>size %{customdata[1]:.1f}, h/w %{customdata[2]:.2f}"
                      "<br>best anchor IoU %{customdata[0]:.2f}<extra></extra>"))
    for name, (sizes, ratios), symbol, colour in [("anchors", (fit.sizes, fit.ratios), "diamond", "#1f4e9c"),
                                                   *([("suggested", suggested, "star", "#d62728")]
                                                     if suggested else [])]:
        shapes = anchor_shapes(sizes, ratios)
        labels = [f"{s:g} px, ratio {r:g}" for r in ratios for s in sizes]
        fig.add_trace(go.Scatter(x=shapes[:, 0], y=shapes[:, 1], mode="markers", name=f"{name} ({len(shapes)})",
                                 marker=dict(symbol=symbol, size=13, color=colour, line=dict(width=1, color="white")),
                                 text=labels, hovertemplate=f"{name}: %{{text}}<br>w %{{x:.1f}}, h %{{y:.1f}}"
                                                            "<extra></extra>"))
    fig.update_xaxes(type="log", title="width (px, network input)")
    fig.update_yaxes(type="log", title="height (px, network input)", scaleanchor="x")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.01, x=0),
                      title=dict(text=f"{len(fit.best_iou):,} ground-truth boxes and the anchor shapes", y=0.99))
    return fit_legend(fig)
