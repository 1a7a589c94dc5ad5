"""Backbone: the convolutional feature maps the RPN and the RoI head share.

Shapes: input (1, 3, Hp, Wp); level i is (1, C, Hi, Wi) with stride_i = Hp / Hi (16 for the paper's
single map, 4..64 for an FPN).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass(frozen=True)
class Features:
    maps: tuple[Tensor, ...]  # per level, (1, C, Hi, Wi)
    names: tuple[str, ...]  # level names as the backbone returns them ("0" for a single map)
    strides: tuple[int, ...]  # input px per feature cell, per level

    def as_dict(self) -> OrderedDict[str, Tensor]:
        return OrderedDict(zip(self.names, self.maps, strict=True))

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        return tuple((int(m.shape[-2]), int(m.shape[-1])) for m in self.maps)


def run_backbone(backbone: nn.Module, images: Tensor) -> Features:
    """Run ``backbone`` on ``images`` (1, 3, Hp, Wp); a plain tensor output becomes level "0"."""
    out = backbone(images)
    if isinstance(out, Tensor):
        out = OrderedDict([("0", out)])
    names = tuple(out.keys())
    maps = tuple(out.values())
    strides = tuple(max(1, round(images.shape[-2] / m.shape[-2])) for m in maps)
    return Features(maps, names, strides)
