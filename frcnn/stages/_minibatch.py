"""Seeded draws of the balanced minibatch with torchvision's ``BalancedPositiveNegativeSampler``.

The sampler draws with the global RNG (``torch.randperm``). A trace must be repeatable and threads must
not disturb each other, so every draw forks the RNG, seeds it, and holds a lock while it does.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler

_RNG_LOCK = threading.Lock()


def sample_minibatch(
    labels: Tensor, batch_size_per_image: int, positive_fraction: float, seed: int
) -> tuple[Tensor, Tensor]:
    """Draw at most ``batch_size_per_image`` of the labelled items, at most ``positive_fraction`` positive.

    Args:
        labels: (N,) with 1 (or any value >= 1) positive, 0 negative, -1 ignored.
    Returns:
        (positive indices, negative indices), int64 tensors into ``labels``.
    """
    sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
    devices = [labels.device.index or 0] if labels.is_cuda else []
    with _RNG_LOCK, torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        pos_mask, neg_mask = sampler([labels])
    return torch.where(pos_mask[0])[0], torch.where(neg_mask[0])[0]
