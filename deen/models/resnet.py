"""The ResNet-50 parts DEEN is built from: Bottleneck blocks, stages and a stem.

Inner names (``conv1``, ``bn1``, ``downsample.0`` …) follow torchvision's ResNet so that
ImageNet weights and the reference checkpoints map onto them one to one.
"""

from __future__ import annotations

from torch import Tensor, nn


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (carries the stride) → 1×1 expand ×4, with a projection shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def resnet_stage(in_channels: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    """One ResNet stage (``layerN``): the first block changes size, the rest keep it."""
    layers = [Bottleneck(in_channels, width, stride)]
    layers += [Bottleneck(width * Bottleneck.expansion, width) for _ in range(blocks - 1)]
    stage = nn.Sequential(*layers)
    init_resnet_weights(stage)
    return stage


class Stem(nn.Module):
    """ResNet-50's stem: 7×7/2 conv → BN → ReLU → 3×3/2 max-pool (3 → 64 channels, ÷4)."""

    out_channels = 64

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, self.out_channels, 7, stride=2, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(self.out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        init_resnet_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


def init_resnet_weights(module: nn.Module) -> None:
    """torchvision's initialisation with ``zero_init_residual``: He-normal (fan-out)
    convolutions, BN at identity, except each Bottleneck's last BN at zero so that every
    block starts as the identity. Without ImageNet weights this keeps activations at the
    scale of the input (otherwise they grow through the 16 blocks and the non-local MFA)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, Bottleneck):
            nn.init.zeros_(m.bn3.weight)
