"""A trace's feature maps as numbers: one level's values (mean over channels, or one channel), its most active
channels, and the size of one cell in the image's pixels. K channels, Hi x Wi the level's grid."""

from __future__ import annotations

import numpy as np
import torch

from frcnn.trace import Trace


def feature_map_values(trace: Trace, level: int = 0, channel: int | None = None) -> np.ndarray:
    """(Hi, Wi) float64 one feature level, averaged over channels or one channel."""
    fmap = trace.features.maps[level][0]  # (K, Hi, Wi)
    return (fmap.mean(0) if channel is None else fmap[channel]).detach().float().cpu().numpy().astype(np.float64)


def top_channels(trace: Trace, level: int = 0, k: int = 8) -> list[int]:
    """The k channels with the highest mean activation (the most active, a useful first look)."""
    fmap = trace.features.maps[level][0]  # (K, Hi, Wi)
    return torch.topk(fmap.mean(dim=(1, 2)), min(k, fmap.shape[0])).indices.tolist()


def cell_size(trace: Trace, level: int = 0) -> tuple[float, float]:
    """(height, width) of one feature cell in original-image pixels: the stride divided by the resize scale."""
    stride = trace.features.strides[level]
    sy, sx = trace.preprocess.scale
    return stride / sy, stride / sx
