"""Anchors: the k reference boxes at every feature-map location (paper section 3.1.1).

At a location (i, j) of a level with stride s the k = len(sizes) * len(ratios) anchors are centred on
the point (j * s, i * s) of the network input (torchvision's convention; the grid starts at the image's
top-left corner). An anchor of size S and ratio r = h / w has w = S / sqrt(r), h = S * sqrt(r), so its
area is S^2 whatever the ratio. The maths is torchvision's ``AnchorGenerator`` (``generate_anchors`` for
the k cell anchors, ``grid_anchors`` for the shifts), called with explicit sizes, ratios and strides.

Shapes: L levels; level i has a (Hi, Wi) grid and k_i anchors per location; A = sum_i Hi * Wi * k_i.
Anchors are ordered (level, y, x, k), the order of the RPN head's flattened outputs.
Boxes are (x1, y1, x2, y2) floats in network-input pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.models.detection.anchor_utils import AnchorGenerator

from frcnn.stages.backbone import Features
from frcnn.stages.params import AnchorParams


@dataclass(frozen=True)
class Anchors:
    boxes: Tensor  # (A, 4)
    inside: Tensor  # (A,) bool: the anchor lies wholly inside the resized image
    level: Tensor  # (A,) int64 level index
    cell: tuple[Tensor, ...]  # per level (k_i, 4): the anchors of a location centred on (0, 0)
    grid_sizes: tuple[tuple[int, int], ...]  # per level (Hi, Wi)
    strides: tuple[int, ...]  # per level, px
    sizes: tuple[tuple[float, ...], ...]  # per level
    ratios: tuple[float, ...]

    @property
    def num_per_level(self) -> tuple[int, ...]:
        return tuple(h * w * c.shape[0] for (h, w), c in zip(self.grid_sizes, self.cell, strict=True))

    @property
    def num_per_location(self) -> tuple[int, ...]:
        return tuple(int(c.shape[0]) for c in self.cell)

    def level_start(self, level: int) -> int:
        """Index into ``boxes`` of the first anchor of ``level``."""
        return sum(self.num_per_level[:level])

    def location_index(self, level: int, y: int, x: int) -> Tensor:
        """Indices (k,) into ``boxes`` of the k anchors at grid cell (y, x) of ``level``."""
        offset = self.level_start(level)
        k = self.num_per_location[level]
        start = offset + (y * self.grid_sizes[level][1] + x) * k
        return torch.arange(start, start + k, device=self.boxes.device)


def split_sizes(sizes: Sequence[float], num_levels: int) -> tuple[tuple[float, ...], ...] | None:
    """Sizes shared out over levels in order (FPN: one size per level); None if they do not divide."""
    if num_levels <= 0 or len(sizes) % num_levels:
        return None
    n = len(sizes) // num_levels
    return tuple(tuple(float(s) for s in sizes[i * n:(i + 1) * n]) for i in range(num_levels))


def sizes_per_level(sizes: Sequence[float], trained: Sequence[Sequence[float]]) -> tuple[tuple[float, ...], ...] | None:
    """Sizes for each level of a model whose levels were trained with ``trained``: the same sizes on every
    level when the model has them so (MobileNet FPN), else shared out in order (ResNet FPN: one per level)."""
    if all(tuple(lvl) == tuple(trained[0]) for lvl in trained):
        return (tuple(float(s) for s in sizes),) * len(trained)
    return split_sizes(sizes, len(trained))


def grid_for_stride(padded_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """The (H, W) grid of anchor centres that covers a padded input with the given stride."""
    return math.ceil(padded_size[0] / stride), math.ceil(padded_size[1] / stride)


def make_anchors(
    sizes: Sequence[Sequence[float]],
    ratios: Sequence[float],
    grid_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    image_size: tuple[int, int],
    device: torch.device | str = "cpu",
) -> Anchors:
    """Anchors over one grid per level.

    Args:
        sizes: per level, the anchor sizes sqrt(w * h) in px.
        ratios: h / w, shared by every level.
        grid_sizes: per level (Hi, Wi).
        strides: per level, px between neighbouring centres.
        image_size: (h, w) of the resized image, for the inside-the-image test.
    """
    num_levels = len(grid_sizes)
    generator = AnchorGenerator(tuple(tuple(float(s) for s in lvl) for lvl in sizes),
                                (tuple(float(r) for r in ratios),) * num_levels)
    generator.set_cell_anchors(torch.float32, torch.device(device))
    stride_tensors = [[torch.tensor(s, dtype=torch.int64, device=device)] * 2 for s in strides]
    per_level = generator.grid_anchors([list(g) for g in grid_sizes], stride_tensors)  # L x (Hi*Wi*k, 4)
    boxes = torch.cat(per_level)  # (A, 4)
    level = torch.cat([torch.full((len(a),), i, dtype=torch.int64, device=boxes.device)
                       for i, a in enumerate(per_level)])
    h, w = image_size
    inside = (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] <= w) & (boxes[:, 3] <= h)
    return Anchors(boxes, inside, level, tuple(generator.cell_anchors), tuple(tuple(g) for g in grid_sizes),
                   tuple(int(s) for s in strides), tuple(tuple(float(s) for s in lvl) for lvl in sizes),
                   tuple(float(r) for r in ratios))


@dataclass(frozen=True)
class TrainedAnchors:
    """What the trained RPN head fixes: its anchor sizes per level and its ratios (the module's generator)."""

    sizes: tuple[tuple[float, ...], ...]
    ratios: tuple[float, ...]

    @property
    def num_per_location(self) -> list[int]:
        return [len(s) * len(self.ratios) for s in self.sizes]


def settings_anchors(params: AnchorParams, features: Features, padded_size: tuple[int, int],
                     image_size: tuple[int, int], trained: TrainedAnchors) -> Anchors:
    """The anchors ``params`` describe: on the model's own grids, or for a single-map model with a different
    stride, on the grid of that stride (what the anchor pages show). On an FPN the sizes are shared out over
    the levels (:func:`sizes_per_level`), or are the trained ones where they do not divide."""
    device = features.maps[0].device
    if len(features.maps) == 1:
        stride = int(params.stride)
        grid = features.shapes[0] if stride == features.strides[0] else grid_for_stride(padded_size, stride)
        return make_anchors([params.sizes], params.ratios, [grid], [stride], image_size, device)
    sizes = sizes_per_level(params.sizes, trained.sizes) or trained.sizes
    n = len(sizes)
    return make_anchors(sizes, params.ratios, features.shapes[:n], features.strides[:n], image_size, device)


def rpn_anchors(anchors: Anchors, features: Features, image_size: tuple[int, int],
                trained: TrainedAnchors) -> tuple[Anchors, str, str]:
    """The anchors the RPN decodes: ``anchors`` if the trained head can (same number per location, grids and
    strides), else the anchors it was trained with. Returns (anchors, "settings" | "model", a note why)."""
    trained_k = trained.num_per_location
    n = len(trained_k)
    fits = (list(anchors.num_per_location) == trained_k and list(anchors.grid_sizes) == list(features.shapes[:n])
            and list(anchors.strides) == list(features.strides[:n]))
    if fits:
        return anchors, "settings", ""
    model_anchors = make_anchors(trained.sizes, trained.ratios, features.shapes[:n], features.strides[:n],
                                 image_size, features.maps[0].device)
    why = (f"the RPN head was trained with {trained_k[0]} anchors per location at stride "
           f"{features.strides[0]}; the settings give {anchors.num_per_location[0]} at stride "
           f"{anchors.strides[0]}, so proposals use the model's own anchors "
           f"(sizes {list(trained.sizes)}, ratios {list(trained.ratios)})")
    return model_anchors, "model", why
