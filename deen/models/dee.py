"""DEE, the diverse embedding expansion module (paper §3.2, spec §3).

Each of two branches reduces the feature to C/4 channels with three 3×3 convolutions of
dilation 1, 2 and 3, averages them (the reference divides the sum by 3, the paper does
not), applies ReLU and expands back to C with a 1×1 convolution. The original feature and
both generated ones are stacked along the batch axis, so every layer after DEE sees 3B rows,
at inference too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

DILATIONS = (1, 2, 3)


class DEEBranch(nn.Module):
    """One generation branch: mean of three dilated 3×3 convs → ReLU → 1×1 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        reduced = channels // 4
        self.dilated = nn.ModuleList(
            nn.Conv2d(channels, reduced, 3, padding=d, dilation=d, bias=False) for d in DILATIONS
        )
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        a1, a2, a3 = (conv(x) for conv in self.dilated)
        return self.expand(torch.relu((a1 + a2 + a3) / 3))


class DEE(nn.Module):
    """Original feature plus two generated ones, concatenated on the batch axis (B → 3B)."""

    def __init__(self, channels: int, dropout: float = 0.01) -> None:
        super().__init__()
        self.branch1 = DEEBranch(channels)
        self.branch2 = DEEBranch(channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(torch.cat([x, self.branch1(x), self.branch2(x)], dim=0))
