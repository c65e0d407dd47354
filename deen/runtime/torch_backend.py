"""PyTorch embedder: runs :class:`~deen.embedding.EmbeddingNetwork` eagerly."""

from __future__ import annotations

import os

import numpy as np
import torch

from deen.embedding import EmbeddingConfig, EmbeddingNetwork
from deen.models.checkpoint import load_checkpoint
from deen.models.deen import DEEN
from deen.preprocess import DEFAULT_INPUT_SIZE
from deen.runtime.embedder import Embedder, validated_batch


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchEmbedder(Embedder):
    backend = "pytorch"

    def __init__(self, model: DEEN, config: EmbeddingConfig | None = None,
                 device: str | None = None,
                 input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> None:
        self.device = torch.device(device or default_device())
        self.input_size = tuple(input_size)
        self.network = EmbeddingNetwork(model, config).to(self.device).eval()
        self.config = self.network.config
        self.variant = model.variant.name
        self.dim = self.network.dim

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], *, config: EmbeddingConfig | None = None,
                        variant: str | None = None, device: str | None = None) -> TorchEmbedder:
        loaded = load_checkpoint(path, variant=variant)
        return cls(loaded.model, config, device, loaded.input_size)

    @torch.inference_mode()
    def run(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        images, modality = validated_batch(images, modality, self.input_size)
        out = self.network(torch.from_numpy(images).to(self.device),
                           torch.from_numpy(modality).to(self.device))
        return out.float().cpu().numpy()
