"""Preprocess: resize the image so its shorter side is ``min_size`` (longer side at most ``max_size``),
normalise with the backbone's mean and std, and pad to a multiple of 32 (torchvision's
``GeneralizedRCNNTransform``, used as is).

An image much larger than the network input (more than ``PRESHRINK`` times its size per side: a 24-megapixel
photo for a 512-px input) is first shrunk as uint8 with antialiasing, to ``PRESHRINK`` times the network
size, so the float copies the transform makes stay small (memory bounded by the input settings, not by the
upload); the transform then resizes the rest of the way, as usual.

Shapes: the original image is (3, H, W) uint8; the network input is (1, 3, Hp, Wp) float with the resized
image of (h, w) in its top-left corner. Boxes map between the two by the per-axis ratios h / H and w / W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.transforms.v2.functional import resize

from frcnn.errors import FrcnnError
from frcnn.settings import InputSettings
from frcnn.stages.params import PreprocessParams

SIZE_DIVISIBLE = 32  # torchvision pads the batch to a multiple of this
PRESHRINK = 2  # images over this many times the network input size (per side) are first shrunk as uint8


@dataclass(frozen=True)
class Preprocessed:
    tensor: Tensor  # (1, 3, Hp, Wp) normalised, zero-padded network input
    image_size: tuple[int, int]  # (h, w) of the resized image inside the padding
    original_size: tuple[int, int]  # (H, W) of the original image
    scale: tuple[float, float]  # (h / H, w / W)

    @property
    def padded_size(self) -> tuple[int, int]:
        return int(self.tensor.shape[-2]), int(self.tensor.shape[-1])


def preprocess(
    image: Tensor, params: PreprocessParams | InputSettings, image_mean: list[float], image_std: list[float]
) -> Preprocessed:
    """Args: image (3, H, W) uint8 or float in [0, 1], on the model's device; params: the stage's record (or
    the ``input`` section). Training calls it too, with the batch's drawn shorter side as ``min_size``."""
    settings = PreprocessParams.coerce(params)
    H, W = int(image.shape[-2]), int(image.shape[-1])
    factor = network_scale((H, W), settings)
    if min(H, W) * factor < 1:  # torchvision's transform would make a 0-px side and fail
        raise FrcnnError(f"a {W}x{H} image is too thin for the network input: at input.max_size="
                         f"{settings.max_size} its shorter side would be under 1 px")
    if factor * PRESHRINK < 1:
        size = [max(1, round(H * factor * PRESHRINK)), max(1, round(W * factor * PRESHRINK))]
        image = resize(image, size, antialias=True)  # uint8 stays uint8: no full-size float copy
    if image.dtype == torch.uint8:
        image = image.float().div_(255.0)
    transform = GeneralizedRCNNTransform(settings.min_size, settings.max_size, image_mean, image_std,
                                         size_divisible=SIZE_DIVISIBLE)
    transform.eval()  # eval uses min_size as given (training would draw from a tuple)
    image_list, _ = transform([image])
    (h, w) = image_list.image_sizes[0]
    return Preprocessed(image_list.tensors, (int(h), int(w)), (H, W), (h / H, w / W))


def network_scale(size: tuple[int, int], settings: PreprocessParams | InputSettings) -> float:
    """The factor torchvision's transform resizes an image of ``size`` (H, W) by: shorter side to ``min_size``
    unless that takes the longer side over ``max_size``."""
    short, long = min(size), max(size)
    return min(settings.min_size / short, settings.max_size / long)


def network_size(size: tuple[int, int], params: PreprocessParams | InputSettings
                 ) -> tuple[tuple[int, int], tuple[int, int]]:
    """For an image of ``size`` (H, W): the (h, w) :func:`preprocess` resizes it to (torchvision floors the
    resized sides) and the (Hp, Wp) of the padded network input, without touching any pixels."""
    factor = network_scale(size, params)
    resized = (max(1, int(size[0] * factor)), max(1, int(size[1] * factor)))
    padded = (math.ceil(resized[0] / SIZE_DIVISIBLE) * SIZE_DIVISIBLE,
              math.ceil(resized[1] / SIZE_DIVISIBLE) * SIZE_DIVISIBLE)
    return resized, padded


def to_original(boxes: Tensor, scale: tuple[float, float]) -> Tensor:
    """Boxes (N, 4) from network-input pixels to original-image pixels."""
    sy, sx = scale
    return boxes / boxes.new_tensor([sx, sy, sx, sy])


def to_network(boxes: Tensor, scale: tuple[float, float]) -> Tensor:
    """Boxes (N, 4) from original-image pixels to network-input pixels."""
    sy, sx = scale
    return boxes * boxes.new_tensor([sx, sy, sx, sy])
