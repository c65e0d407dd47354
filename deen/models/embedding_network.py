"""The embedding computed in PyTorch: DEEN rows → the layout of :mod:`deen.embedding`."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from deen.embedding import NUM_EMBEDDINGS, PARTS, EmbeddingConfig
from deen.models.deen import DEEN


def assemble_embedding(pool: Tensor, feat: Tensor, config: EmbeddingConfig) -> Tensor:
    """Eval-mode DEEN rows → one vector per image.

    ``pool`` and ``feat`` are (3·M) × D, ordered [original; branch 1; branch 2] over M input
    rows; with flip, the M rows are the N images followed by their N flips.
    """
    dim = pool.shape[1]
    views = 2 if config.flip else 1
    p = pool.reshape(NUM_EMBEDDINGS, views, -1, dim).sum(dim=1)  # 3 × N × D
    q = feat.reshape(NUM_EMBEDDINGS, views, -1, dim).sum(dim=1)
    if config.a is not None:
        p = p * math.sqrt(config.a)
        q = q * math.sqrt(1.0 - config.a)
    parts = torch.stack([p, q], dim=1)  # 3 × 2 × N × D: k, (P, Q), image
    return parts.permute(2, 0, 1, 3).reshape(-1, len(PARTS) * dim)


class EmbeddingNetwork(nn.Module):
    """DEEN in eval mode plus flip and layout: ``(images, modality) → N × 6D embeddings``."""

    def __init__(self, model: DEEN, config: EmbeddingConfig | None = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.config = config or EmbeddingConfig()

    @property
    def dim(self) -> int:
        return len(PARTS) * self.model.variant.embedding_dim

    def forward(self, images: Tensor, modality: Tensor) -> Tensor:
        if self.config.flip:
            images = torch.cat([images, images.flip(-1)], dim=0)
            modality = torch.cat([modality, modality], dim=0)
        pool, feat = self.model(images, modality)
        return assemble_embedding(pool, feat, self.config)
