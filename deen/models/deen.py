"""The DEEN network (paper Fig. 3, spec §1–§5).

    visible stem ┐
                 ├─ layer1 ─ MFA1 ─ layer2 ─ MFA2 ─ layer3 ─ MFA3 ─ DEE ─ layer4 ─ GAP ─ BN-neck
    infrared stem┘                                   (regdb: MFA2 ─ DEE ─ layer3 ─ GAP)

Variants: ``sysu``/``llcm`` (DEE on 1024 channels, 2048-d embedding) and ``regdb`` (DEE on
512 channels after MFA2, no MFA3 or layer4, 1024-d embedding). layer4 has stride 1.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from deen.errors import DeenError
from deen.modality import Modality
from deen.models.dee import DEE
from deen.models.mfa import MFA
from deen.models.resnet import Stem, resnet_stage
from deen.variants import DEFAULT_VARIANT, VARIANTS, Variant, get_variant

__all__ = ["DEEN", "VARIANTS", "EvalOutput", "TrainingOutput", "Variant", "get_variant"]


class TrainingOutput(NamedTuple):
    """Training-mode forward (spec §5). Rows: [input rows; branch 1; branch 2] (3B)."""

    pool: Tensor  # 3B × D, pooled features (triplet and CPM losses)
    logits: Tensor  # 3B × #identities, classifier on the BN-neck feature (identity loss)
    orthogonality: Tensor  # Σ_images ⟨branch-1 pool, branch-2 pool⟩ / 3B; the loss scales it by λ2


class EvalOutput(NamedTuple):
    """Eval-mode forward (spec §5): L2-normalised rows, [input rows; branch 1; branch 2]."""

    pool: Tensor  # 3B × D
    feat: Tensor  # 3B × D


class ModalityStems(nn.Module):
    """The two modality-specific stems; ``modality`` (one code per image) selects the stem."""

    def __init__(self) -> None:
        super().__init__()
        self.visible = Stem()
        self.infrared = Stem()

    def forward(self, images: Tensor, modality: Tensor) -> Tensor:
        is_infrared = modality == Modality.INFRARED
        if self.training:
            # Training BatchNorm normalises with batch statistics, which must come from one
            # modality at a time as in the reference (each stem sees only its own images).
            out: Tensor | None = None
            for stem, rows in ((self.visible, ~is_infrared), (self.infrared, is_infrared)):
                if rows.any():
                    stem_out = stem(images[rows])
                    if out is None:
                        out = stem_out.new_empty(images.shape[0], *stem_out.shape[1:])
                    out[rows] = stem_out
            if out is None:
                raise DeenError("a training batch must hold at least one image")
            return out
        # Inference BatchNorm is per image: run both stems and pick per row. This is a plain
        # element-wise select, so a mixed batch exports to ONNX without data-dependent shapes.
        select = is_infrared.reshape(-1, 1, 1, 1)
        return torch.where(select, self.infrared(images), self.visible(images))


class BNNeck(nn.Module):
    """BatchNorm1d on the pooled feature (bias frozen at 0) and a bias-free classifier."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, pool: Tensor) -> Tensor:
        return self.bn(pool)


class DEEN(nn.Module):
    """Diverse Embedding Expansion Network.

    ``forward(images, modality)`` takes N images (N×3×H×W, normalised as in
    :mod:`deen.preprocess`) and N modality codes (:class:`~deen.modality.Modality`). In
    training mode it returns :class:`TrainingOutput`; in eval mode :class:`EvalOutput`. Both
    have 3N rows because DEE expands the batch. ``dee_impl`` selects DEE's implementation
    (``"reference"``, ``"fused"`` or ``"auto"``: the faster on the input's device; see
    :mod:`deen.models.dee`); every choice computes the same function.
    """

    def __init__(self, num_classes: int, variant: str = DEFAULT_VARIANT,
                 dee_impl: str = "auto") -> None:
        super().__init__()
        self.variant = get_variant(variant)
        self.num_classes = num_classes
        self.stems = ModalityStems()
        self.layer1 = resnet_stage(64, 64, blocks=3, stride=1)
        self.mfa1 = MFA(256, 64, low_stride=1)
        self.layer2 = resnet_stage(256, 128, blocks=4, stride=2)
        self.mfa2 = MFA(512, 256, low_stride=2)
        self.layer3 = resnet_stage(512, 256, blocks=6, stride=2)
        if self.variant.last_stage == 3:
            self.dee = DEE(512, impl=dee_impl)
        else:
            self.mfa3 = MFA(1024, 512, low_stride=2)
            self.dee = DEE(1024, impl=dee_impl)
            self.layer4 = resnet_stage(1024, 512, blocks=3, stride=1)  # stride 1: keeps 24×9
        self.neck = BNNeck(self.variant.embedding_dim, num_classes)

    def set_dee_impl(self, impl: str) -> None:
        self.dee.set_impl(impl)

    def feature_map(self, images: Tensor, modality: Tensor) -> Tensor:
        """The last stage's feature map, 3N rows: [input rows; branch 1; branch 2]."""
        x = self.stems(images, modality)
        x = self.mfa1(self.layer1(x), x)
        x = self.mfa2(self.layer2(x), x)
        if self.variant.last_stage == 3:
            return self.layer3(self.dee(x))
        x = self.mfa3(self.layer3(x), x)
        return self.layer4(self.dee(x))

    def forward(self, images: Tensor, modality: Tensor) -> TrainingOutput | EvalOutput:
        pool = self.feature_map(images, modality).mean(dim=(2, 3))  # GAP
        feat = self.neck(pool)
        if self.training:
            return TrainingOutput(pool, self.neck.classifier(feat), orthogonality(pool))
        # The reference divides by the norm with no epsilon.
        return EvalOutput(pool / pool.norm(dim=1, keepdim=True),
                          feat / feat.norm(dim=1, keepdim=True))


def orthogonality(pool: Tensor) -> Tensor:
    """Σ over images of ⟨u, w⟩ for the two generated rows u, w of one image, / 3N (spec §8)."""
    _, branch1, branch2 = pool.chunk(3, dim=0)
    return (branch1 * branch2).sum() / pool.shape[0]
