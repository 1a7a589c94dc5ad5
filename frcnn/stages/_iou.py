"""IoU of many boxes against many, in row chunks, so memory stays bounded at any box count.

``box_iou(a, b)`` makes an (N, M) matrix and several (N, M, 2) intermediates: 10,000 ground-truth boxes against
150,000 anchors would ask for about 50 GB. Every consumer here only reduces the matrix (a maximum over rows or
columns, a comparison), so it is computed ``CHUNK_ELEMENTS`` IoUs at a time (about 75 MB of intermediates)
and reduced chunk by chunk. Ties keep the first index, as ``Tensor.max(dim)`` does.

Shapes: rows (N, 4), cols (M, 4), boxes (x1, y1, x2, y2).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torchvision.ops import box_iou

CHUNK_ELEMENTS = 1 << 21  # IoUs computed at once (fastest here too: 8 x 150,000 beat 128 x 150,000 by 2x)


def iou_chunks(rows: Tensor, cols: Tensor) -> Iterator[tuple[int, Tensor]]:
    """``(start, box_iou(rows[start:start + n], cols))`` for consecutive chunks of ``rows``."""
    step = max(1, CHUNK_ELEMENTS // max(1, len(cols)))
    for start in range(0, len(rows), step):
        yield start, box_iou(rows[start:start + step], cols)  # (n, M)


def best_row_per_column(rows: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
    """For each column box: the highest IoU with any row box and that row's index, ``(M,)`` and ``(M,)``
    (0 and 0 without rows). The same as ``box_iou(rows, cols).max(dim=0)``."""
    best = cols.new_full((len(cols),), -1.0)
    index = torch.zeros(len(cols), dtype=torch.int64, device=cols.device)
    for start, iou in iou_chunks(rows, cols):
        value, at = iou.max(dim=0)  # (M,)
        better = value > best  # strictly: an earlier row keeps a tie
        best, index = torch.where(better, value, best), torch.where(better, at + start, index)
    return best.clamp(min=0.0), index


def best_column_per_row(rows: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
    """For each row box: the highest IoU with any column box and its index, ``(N,)`` and ``(N,)``. The same as
    ``box_iou(rows, cols).max(dim=1)``; needs at least one column."""
    values = rows.new_zeros(len(rows))
    indices = torch.zeros(len(rows), dtype=torch.int64, device=rows.device)
    for start, iou in iou_chunks(rows, cols):  # written in place: small tensors kept between the chunks'
        v, i = iou.max(dim=1)                  # large ones would pin the heap
        values[start:start + len(v)], indices[start:start + len(v)] = v, i
    return values, indices
