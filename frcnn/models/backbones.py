"""Backbones of the paper's single-feature-map Faster R-CNN.

- ``light``: a small residual network (ResNet basic blocks, widths 32-64-128, dilated convs for a wider
  receptive field, a 1x1 conv to 128 channels) at stride 8, so that 16-px objects span two cells: it
  trains from scratch on a 2-core CPU in hours and traces a 512-px image in a fraction of a second.
  GroupNorm, not BatchNorm: it trains one image at a time, and BatchNorm's running statistics (averages of
  single images' statistics) then normalise a test image differently from how it trained (measured on run 3
  at step 2,000: with them, the RPN scored 38k negative anchors of a held-out scene above 0.5 and found no
  object under 64 px; with the image's own statistics it found most). GroupNorm computes the same thing in
  training and at test, whatever the batch (He et al., "Rethinking ImageNet Pre-training", train detectors
  from scratch with it).
- ``vgg16``: VGG-16's conv1_1 .. conv5_3 (the paper's network), 512 channels at stride 16; ImageNet
  weights through torchvision's weights API when online.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import vgg16
from torchvision.models.resnet import BasicBlock

LIGHT_CHANNELS = 128


GROUPS = 8  # GroupNorm groups in every layer of the light trunk (3 to 16 channels each)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(GROUPS, channels)


def _conv_norm(cin: int, cout: int, stride: int, dilation: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)
    return nn.Sequential(conv, _norm(cout), nn.ReLU(inplace=True))


def _down_block(cin: int, cout: int) -> BasicBlock:
    shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), _norm(cout))
    return BasicBlock(cin, cout, stride=2, downsample=shortcut, norm_layer=_norm)


class DilatedBlock(nn.Module):
    """A residual block of two dilated 3x3 convs (wider context at the same stride): (N, C, H, W) -> same."""

    def __init__(self, channels: int, dilations: tuple[int, int]) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_norm(channels, channels, 1, dilations[0]),
                                  nn.Conv2d(channels, channels, 3, 1, dilations[1], dilations[1], bias=False),
                                  _norm(channels))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(x + self.body(x))


def light_backbone() -> nn.Module:
    """The light trunk, randomly initialised: (N, 3, H, W) -> (N, 128, H/8, W/8).

    Stride 8, not VGG's 16: the synthetic scenes hold objects down to 16 px, which at stride 16 cover one or
    two feature cells; dilated convs (2, 4, 8) give the stride-8 map a receptive field of about 300 px.
    """
    body = nn.Sequential(
        _conv_norm(3, 24, 2), _conv_norm(24, 32, 2),  # stride 4
        BasicBlock(32, 32, norm_layer=_norm),
        _down_block(32, 64), BasicBlock(64, 64, norm_layer=_norm),  # stride 8
        _conv_norm(64, 128, 1, dilation=2), DilatedBlock(128, (4, 8)),
        nn.Conv2d(128, LIGHT_CHANNELS, 1), nn.ReLU(inplace=True),
    )
    body.out_channels = LIGHT_CHANNELS
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
