"""DEE, the diverse embedding expansion module (paper §3.2, spec §3).

Each of two branches reduces the feature to C/4 channels with three 3×3 convolutions of
dilation 1, 2 and 3, averages them (the reference divides the sum by 3, the paper does
not), applies ReLU and expands back to C with a 1×1 convolution. The original feature and
both generated ones are stacked along the batch axis, so every layer after DEE sees 3B rows,
at inference too.

Two implementations of the same function (``impl``): ``"reference"`` runs the six dilated
convolutions as written; ``"fused"`` runs both branches' dilated convolutions as one
``deen::dee_conv`` operator (:mod:`deen.ops.dee_conv`) on a weight folded from the six
kernels. ``"auto"`` picks, per device, the one measured faster (:data:`PREFERRED_IMPL`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

DILATIONS = (1, 2, 3)
IMPLS = ("auto", "reference", "fused")
#: The faster implementation per device type, by ``benchmarks/dee_conv.py`` (results in
#: ``benchmarks/results/*/dee_conv*.json``). CUDA stays on the reference until the fused
#: kernel has been measured on a GPU.
PREFERRED_IMPL = {"cpu": "reference", "cuda": "reference"}


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

    def __init__(self, channels: int, dropout: float = 0.01, impl: str = "auto") -> None:
        super().__init__()
        self.branch1 = DEEBranch(channels)
        self.branch2 = DEEBranch(channels)
        self.dropout = nn.Dropout(dropout)
        # The fused operator's weight, folded once for inference (not saved in checkpoints);
        # refreshed whenever it could go stale: set_impl, eval() and load_state_dict.
        self.register_buffer("fused_weight", torch.empty(0), persistent=False)
        self.register_load_state_dict_post_hook(lambda module, _: module.refresh_fused())
        self.impl = "reference"
        self.set_impl(impl)

    def set_impl(self, impl: str) -> None:
        if impl not in IMPLS:
            raise ValueError(f"dee_impl {impl!r}: choose one of {', '.join(IMPLS)}")
        self.impl = impl
        self.refresh_fused()

    def fold(self) -> Tensor:
        """Both branches' six dilated kernels as the fused operator's 25×C×(C/2) weight."""
        from deen.ops.dee_conv import fold_branch_kernels

        return fold_branch_kernels([[conv.weight for conv in b.dilated]
                                    for b in (self.branch1, self.branch2)])

    def refresh_fused(self) -> None:
        may_fuse = self.impl == "fused" or (self.impl == "auto" and
                                            "fused" in PREFERRED_IMPL.values())
        with torch.no_grad():
            self.fused_weight = self.fold().detach() if may_fuse else \
                self.fused_weight.new_empty(0)

    def train(self, mode: bool = True) -> DEE:
        super().train(mode)
        if not mode:
            self.refresh_fused()  # training may have changed the kernels
        return self

    def resolved_impl(self, device: torch.device) -> str:
        return PREFERRED_IMPL.get(device.type, "reference") if self.impl == "auto" else self.impl

    def forward(self, x: Tensor) -> Tensor:
        if self.resolved_impl(x.device) == "fused":
            generated = self._generate_fused(x)
        else:
            generated = (self.branch1(x), self.branch2(x))
        return self.dropout(torch.cat([x, *generated], dim=0))

    def _generate_fused(self, x: Tensor) -> tuple[Tensor, Tensor]:
        from deen.ops.dee_conv import dee_conv

        # Training folds live so gradients reach the six kernels; inference uses the cache.
        weight = self.fold() if self.training or self.fused_weight.numel() == 0 \
            else self.fused_weight
        reduced = dee_conv(x, weight.to(x.dtype))
        half = reduced.shape[1] // 2
        return (self.branch1.expand(reduced[:, :half]),
                self.branch2.expand(reduced[:, half:]))
