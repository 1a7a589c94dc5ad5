"""Backbones of the paper's single-feature-map Faster R-CNN (stride 16).

- ``light``: ResNet-18's stem and its first three stages (conv1 .. layer3): 256 channels at stride 16,
  about 2.8 M parameters, fast enough on a 2-core CPU to trace a 512-px image well under a second.
- ``vgg16``: VGG-16's conv1_1 .. conv5_3 (the paper's network), 512 channels at stride 16; ImageNet
  weights through torchvision's weights API when online.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18, vgg16


def light_backbone() -> nn.Module:
    """ResNet-18 conv1 .. layer3, randomly initialised: (1, 3, H, W) -> (1, 256, H/16, W/16)."""
    net = resnet18(weights=None)
    body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
    body.out_channels = 256
    return body


def vgg16_backbone() -> nn.Module:
    """VGG-16 up to conv5_3 + ReLU (the last max-pool dropped): (1, 3, H, W) -> (1, 512, H/16, W/16)."""
    net = vgg16(weights=None)
    body = net.features[:-1]
    body.out_channels = 512
    return body


def vgg16_fc_head() -> tuple[nn.Module, int]:
    """fc6 and fc7 of VGG-16 as the box head on 7x7 RoIs: (R, 512, 7, 7) -> (R, 4096)."""
    net = vgg16(weights=None)
    fc6, relu6, drop6, fc7, relu7, drop7 = list(net.classifier.children())[:6]
    return nn.Sequential(nn.Flatten(start_dim=1), fc6, relu6, drop6, fc7, relu7, drop7), 4096
