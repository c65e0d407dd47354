"""PyTorch embedder: runs :class:`~deen.models.embedding_network.EmbeddingNetwork` eagerly."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from deen.backends.base import Embedder, validated_batch
from deen.backends.devices import torch_device
from deen.embedding import EmbeddingConfig
from deen.errors import BadValueError, DeenError
from deen.models.checkpoint import load_checkpoint
from deen.models.deen import DEEN
from deen.models.embedding_network import EmbeddingNetwork
from deen.preprocess import DEFAULT_INPUT_SIZE


def default_device() -> str:
    return torch_device(None)


#: The autocast dtype of each precision of the ``pytorch`` format (:mod:`deen.formats`).
#: bf16 is for CPUs (and GPUs) that have it, fp16 for GPUs; the embedding is returned in
#: float32 either way.
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchEmbedder(Embedder):
    """``precision`` runs the network under autocast (``bf16``/``fp16``); ``compile`` wraps it
    in :func:`torch.compile` (the first call then compiles, which takes a while)."""

    backend = "pytorch"

    def __init__(self, model: DEEN, config: EmbeddingConfig | None = None,
                 device: str | None = None,
                 input_size: tuple[int, int] = DEFAULT_INPUT_SIZE, precision: str = "fp32",
                 compile: bool = False) -> None:
        if precision not in AUTOCAST_DTYPES:
            raise BadValueError("precision", precision,
                                 f"choose one of {', '.join(AUTOCAST_DTYPES)}")
        self.device = torch.device(torch_device(device))
        if precision == "fp16" and self.device.type != "cuda":
            raise DeenError("fp16 needs a CUDA device; on a CPU use bf16")
        self.input_size = tuple(input_size)
        self.network = EmbeddingNetwork(model, config).to(self.device).eval()
        self.config = self.network.config
        self.variant = model.variant.name
        self.dim = self.network.dim
        self.precision = precision
        self._forward = torch.compile(self.network) if compile else self.network
        suffix = "" if precision == "fp32" else f"-{precision}"
        self.backend = f"pytorch{suffix}{'-compile' if compile else ''}"

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, config: EmbeddingConfig | None = None,
             variant: str | None = None, device: str | None = None) -> TorchEmbedder:
        return cls.from_checkpoint(path, config=config, variant=variant, device=device)

    @classmethod
    def from_model(cls, model: DEEN, *, config: EmbeddingConfig | None = None,
                   device: str | None = None, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
                   precision: str = "fp32", compile: bool = False) -> TorchEmbedder:
        """The model in memory (``deen bench`` builds its PyTorch backends this way)."""
        return cls(model, config, device, input_size, precision=precision, compile=compile)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], *, config: EmbeddingConfig | None = None,
                        variant: str | None = None, device: str | None = None) -> TorchEmbedder:
        torch_device(device)  # a device that is not here fails before the checkpoint loads
        loaded = load_checkpoint(path, variant=variant)
        embedder = cls(loaded.model, config, device, loaded.input_size)
        embedder.checkpoint_source = dataclasses.asdict(loaded.source)
        return embedder

    @torch.inference_mode()
    def run(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        images, modality = validated_batch(images, modality, self.input_size)
        dtype = AUTOCAST_DTYPES[self.precision]
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            out = self._forward(torch.from_numpy(images).to(self.device),
                                torch.from_numpy(modality).to(self.device))
        return out.float().cpu().numpy()
