"""Two numbers of a feature map that are easy to mix up, computed from the model, not written by hand:

- the **stride** s: neighbouring cells are s network-input pixels apart (8 for the default model, 16 for VGG-16
  conv5_3), and the map of an input side W has ``ceil(32 * ceil(W / 32) / s)`` cells along it, because
  torchvision pads the input to a multiple of 32 first (``SIZE_DIVISIBLE``): a 690-px side is padded to 704 and
  gives 88 cells at stride 8, not ceil(690 / 8) = 87;
- the **receptive field** r: the side of the input patch one cell's value depends on, far larger than s. By the
  standard recurrence over the layers, with r = 1 and j = 1 (the jump, input pixels between neighbouring cells)
  at the input, a layer of kernel k, dilation d and stride t makes r += d (k - 1) j and j *= t; the branches of
  a residual block start from the same (r, j) and the block's r is the largest. VGG-16 conv5_3 sees 196 px; the
  RPN's 3 x 3 window on it sees 196 + 2 * 16 = 228 px, the paper's number (its section 3.1).

A feature pyramid (FPN) mixes every coarser level into each finer one, so one "receptive field" of a level is
not a number this recurrence gives: :func:`receptive_field` returns None for any module it does not know.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import FrozenBatchNorm2d

from frcnn.stages.preprocess import SIZE_DIVISIBLE

# layers that keep every value's dependence where it is (pointwise, or a norm over channels at one place)
_POINTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.SiLU, nn.Sigmoid, nn.Identity, nn.Dropout,
              nn.BatchNorm2d, FrozenBatchNorm2d)


@dataclass(frozen=True)
class Field:
    """``size``: receptive field side in input px; ``jump``: input px between neighbouring output cells."""

    size: int = 1
    jump: int = 1


def _pair(value: int | tuple[int, ...]) -> int:
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise _Unknown
        return int(value[0])
    return int(value)


class _Unknown(Exception):
    """A module the recurrence does not know (or a non-square kernel): no receptive field."""


def _window(f: Field, kernel: int, stride: int, dilation: int = 1) -> Field:
    return Field(f.size + dilation * (kernel - 1) * f.jump, f.jump * stride)


def _through(module: nn.Module, f: Field, local: tuple[type, ...]) -> Field:
    if isinstance(module, nn.Conv2d):
        return _window(f, _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation))
    if isinstance(module, nn.MaxPool2d):
        return _window(f, _pair(module.kernel_size), _pair(module.stride or module.kernel_size),
                       _pair(module.dilation))
    if isinstance(module, nn.AvgPool2d):
        return _window(f, _pair(module.kernel_size), _pair(module.stride or module.kernel_size))
    if isinstance(module, local):
        return f
    if isinstance(module, nn.Sequential):
        for child in module:
            f = _through(child, f, local)
        return f
    if isinstance(module, (BasicBlock, Bottleneck)):
        convs = [module.conv1, module.conv2] + ([module.conv3] if isinstance(module, Bottleneck) else [])
        return _residual(f, convs, module.downsample, local)
    body = getattr(module, "body", None)  # frcnn.models.backbones.DilatedBlock: x + body(x)
    if type(module).__name__ == "DilatedBlock" and isinstance(body, nn.Module):
        return _residual(f, [body], None, local)
    raise _Unknown  # a GroupNorm when not counted local, a feature pyramid, an SE block, ...


def _residual(f: Field, main: list[nn.Module], shortcut: nn.Module | None, local: tuple[type, ...]) -> Field:
    out = f
    for m in main:
        out = _through(m, out, local)
    side = _through(shortcut, f, local) if shortcut is not None else f
    if side.jump != out.jump:
        raise _Unknown
    return Field(max(out.size, side.size), out.jump)


def receptive_field(module: nn.Module, norms_local: bool = True) -> Field | None:
    """The receptive field and jump of ``module``'s output by the recurrence; None for a module it does not know
    (a feature pyramid, a squeeze-and-excitation block).

    ``norms_local``: count GroupNorm as local (its statistics are over the whole map, so strictly every cell
    depends on every pixel; the field given is the one of the convolutions, what "receptive field" means for a
    conv net)."""
    try:
        return _through(module, Field(), _POINTWISE + ((nn.GroupNorm,) if norms_local else ()))
    except _Unknown:
        return None


def rpn_receptive_field(detector) -> Field | None:  # noqa: ANN001 - a frcnn.models.Detector
    """The receptive field of one RPN window: the backbone, then the RPN head's 3 x 3 conv(s) (228 px for VGG-16,
    the paper's number); None for a feature pyramid."""
    backbone = receptive_field(detector.module.backbone)
    if backbone is None:
        return None
    head = receptive_field(detector.module.rpn.head.conv)
    if head is None:
        return None
    # the head's layers act on the map, whose cells are backbone.jump input px apart
    return Field(backbone.size + (head.size - 1) * backbone.jump, backbone.jump * head.jump)


@dataclass(frozen=True)
class MapGeometry:
    """One feature level of one network input: sizes are (H, W) in network-input px, the map's in cells."""

    input_size: tuple[int, int]  # the resized image
    padded_size: tuple[int, int]  # padded to a multiple of SIZE_DIVISIBLE
    stride: int
    map_size: tuple[int, int]
    receptive_field: int | None  # of one cell of the backbone's map (None: a feature pyramid)
    rpn_window: int | None  # of the RPN's 3 x 3 window on it (the paper: 228 px for VGG-16)


def map_geometry(input_size: tuple[int, int], stride: int, detector) -> MapGeometry:  # noqa: ANN001 - a Detector
    """Stride, padded size, map size and receptive fields of a level of ``detector`` for a network input of
    ``input_size`` (H, W) (a trace's ``preprocess.image_size``)."""
    h, w = input_size
    backbone = receptive_field(detector.module.backbone)
    window = rpn_receptive_field(detector)
    return MapGeometry((h, w), (padded_side(h), padded_side(w)), stride, (map_side(h, stride), map_side(w, stride)),
                       backbone.size if backbone else None, window.size if window else None)


def padded_side(side: int, divisible: int = SIZE_DIVISIBLE) -> int:
    """A network-input side padded up to a multiple of ``divisible`` (torchvision's batching)."""
    return int(math.ceil(side / divisible) * divisible)


def map_side(side: int, stride: int, divisible: int = SIZE_DIVISIBLE) -> int:
    """Cells along a feature map for a network-input side of ``side`` px: ``ceil(padded_side / stride)``
    (690 px at stride 8: 704 / 8 = 88)."""
    return int(math.ceil(padded_side(side, divisible) / stride))
