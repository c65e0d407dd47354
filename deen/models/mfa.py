"""MFA, the multistage feature aggregation block (paper §3.4, spec §2).

``MFA(x_h, x_l) = PNL(CNL(x_h, x_l), x_l)``: a channel-wise then a spatial non-local
aggregation of the feature before a stage (``low``) into the feature after it (``high``).

Two things differ from the paper's text and are reproduced on purpose, because trained
checkpoints depend on them: neither aggregation uses a softmax (the affinity is divided by
its last dimension's size), and PNL reshapes its C/r-channel maps with a plain row-major
view to C channels (memory reinterpretation, not a transpose).
"""

from __future__ import annotations

from torch import Tensor, nn


def _projection(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """The ``W`` of a non-local block: 1×1 conv then BN whose affine starts at zero, so a
    freshly initialised block is the identity (output = W(Y) + x_h = x_h)."""
    bn = nn.BatchNorm2d(out_channels)
    nn.init.zeros_(bn.weight)
    nn.init.zeros_(bn.bias)
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride), bn)


class ChannelAggregation(nn.Module):
    """CNL: a C_l×C_l channel affinity between ``high`` and ``low`` re-weights ``low``."""

    def __init__(self, high_channels: int, low_channels: int, low_stride: int) -> None:
        super().__init__()
        self.g = nn.Conv2d(low_channels, low_channels, 1)
        self.theta = nn.Conv2d(high_channels, low_channels, 1)
        self.phi = nn.Conv2d(low_channels, low_channels, 1, stride=low_stride)
        self.out = _projection(low_channels, high_channels, stride=low_stride)

    def forward(self, high: Tensor, low: Tensor) -> Tensor:
        batch, channels = low.shape[:2]
        g = self.g(low).flatten(2)  # B × C_l × N_l
        theta = self.theta(high).flatten(2)  # B × C_l × N_h
        phi = self.phi(low).flatten(2).transpose(1, 2)  # B × N_h × C_l
        affinity = theta @ phi / channels  # B × C_l × C_l, no softmax
        y = (affinity @ g).reshape(batch, channels, *low.shape[2:])
        return self.out(y) + high


class SpatialAggregation(nn.Module):
    """PNL: a position affinity between ``high`` and ``low`` (channels reduced by r)."""

    def __init__(self, high_channels: int, low_channels: int, reduction: int = 2) -> None:
        super().__init__()
        inner = low_channels // reduction
        self.g = nn.Conv2d(low_channels, inner, 1)
        self.theta = nn.Conv2d(high_channels, inner, 1)
        self.phi = nn.Conv2d(low_channels, inner, 1)
        self.out = _projection(inner, high_channels)

    def forward(self, high: Tensor, low: Tensor) -> Tensor:
        batch, channels = low.shape[:2]
        # Row-major reinterpretation of B × C_l/r × H × W as B × C_l × (H·W/r), as the
        # reference's view does.
        g = self.g(low).reshape(batch, channels, -1).transpose(1, 2)  # B × N_l/r × C_l
        theta = self.theta(high).reshape(batch, channels, -1).transpose(1, 2)  # B × N_h/r × C_l
        phi = self.phi(low).reshape(batch, channels, -1)  # B × C_l × N_l/r
        affinity = theta @ phi / phi.shape[-1]  # B × N_h/r × N_l/r, no softmax
        y = (affinity @ g).transpose(1, 2).reshape(batch, -1, *high.shape[2:])
        return self.out(y) + high


class MFA(nn.Module):
    """Channel then spatial aggregation of the pre-stage feature into the post-stage one."""

    def __init__(self, high_channels: int, low_channels: int, low_stride: int) -> None:
        super().__init__()
        self.cnl = ChannelAggregation(high_channels, low_channels, low_stride)
        self.pnl = SpatialAggregation(high_channels, low_channels)

    def forward(self, high: Tensor, low: Tensor) -> Tensor:
        return self.pnl(self.cnl(high, low), low)
