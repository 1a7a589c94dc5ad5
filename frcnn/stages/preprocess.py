"""Preprocess: resize the image so its shorter side is ``min_size`` (longer side at most ``max_size``),
normalise with the backbone's mean and std, and pad to a multiple of 32 (torchvision's
``GeneralizedRCNNTransform``, used as is).

Shapes: the original image is (3, H, W) uint8; the network input is (1, 3, Hp, Wp) float with the resized
image of (h, w) in its top-left corner. Boxes map between the two by the per-axis ratios h / H and w / W.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from frcnn.settings import InputSettings

SIZE_DIVISIBLE = 32  # torchvision pads the batch to a multiple of this


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
    image: Tensor, settings: InputSettings, image_mean: list[float], image_std: list[float]
) -> Preprocessed:
    """Args: image (3, H, W) uint8 or float in [0, 1], on the model's device."""
    if image.dtype == torch.uint8:
        image = image.float().div_(255.0)
    transform = GeneralizedRCNNTransform(settings.min_size, settings.max_size, image_mean, image_std,
                                         size_divisible=SIZE_DIVISIBLE)
    transform.eval()  # eval uses min_size as given (training would draw from a tuple)
    image_list, _ = transform([image])
    (h, w) = image_list.image_sizes[0]
    H, W = int(image.shape[-2]), int(image.shape[-1])
    return Preprocessed(image_list.tensors, (int(h), int(w)), (H, W), (h / H, w / W))


def to_original(boxes: Tensor, scale: tuple[float, float]) -> Tensor:
    """Boxes (N, 4) from network-input pixels to original-image pixels."""
    sy, sx = scale
    return boxes / boxes.new_tensor([sx, sy, sx, sy])


def to_network(boxes: Tensor, scale: tuple[float, float]) -> Tensor:
    """Boxes (N, 4) from original-image pixels to network-input pixels."""
    sy, sx = scale
    return boxes * boxes.new_tensor([sx, sy, sx, sy])
