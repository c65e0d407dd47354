"""The embedder interface: images and modalities in, one embedding row per image out.

Each backend (PyTorch, ONNX Runtime, OpenVINO, TensorRT) is one small class with a ``run``
method on preprocessed batches; :meth:`Embedder.embed` adds preprocessing and batching on
top, the same for all. :func:`deen.backends.open_embedder` picks the backend from the model
file's suffix.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from deen.embedding import EmbeddingConfig
from deen.errors import DeenError
from deen.modality import Modality, parse_modality
from deen.preprocess import DEFAULT_COLOR_ORDER, ColorOrder, preprocess


class Embedder(abc.ABC):
    """Runs one embedding model. Subclasses implement :meth:`run`."""

    #: Short backend name for reports ("pytorch", "onnxruntime", …).
    backend: str
    variant: str
    config: EmbeddingConfig
    dim: int
    input_size: tuple[int, int]  # (H, W) the model expects
    #: An exported model's manifest (:mod:`deen.backends.artifact`); None for a checkpoint.
    manifest: dict[str, Any] | None = None
    #: Where a checkpoint's weights come from, as an export's manifest records its source
    #: (``kind``, ``checkpoint``, ``sha256``, ``seed``); set when opened from a file.
    checkpoint_source: dict[str, Any] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, config: EmbeddingConfig | None = None,
             variant: str | None = None, device: str | None = None) -> Embedder:
        """Open a model file of this backend's format (:func:`deen.backends.open_embedder`
        picks the class from :mod:`deen.formats`). Exported formats have their embedding
        settings and variant baked in, so they take only ``device``; checkpoints take all."""
        return cls(path, device=device)  # type: ignore[call-arg]

    def adopt(self, manifest: dict[str, Any]) -> None:
        """Take the model's description from its export manifest
        (:mod:`deen.backends.artifact`): its embedding settings, variant, embedding width
        and input size."""
        from deen.backends.artifact import (
            INPUT_IMAGES,
            OUTPUT_EMBEDDING,
            embedding_config_from,
        )

        self.manifest = manifest
        self.config = embedding_config_from(manifest)
        self.variant = manifest["variant"]
        self.dim = int(manifest["output"][OUTPUT_EMBEDDING]["shape"][1])
        self.input_size = tuple(manifest["inputs"][INPUT_IMAGES]["shape"][2:])

    def weights_source(self) -> dict[str, Any] | None:
        """Where the weights come from: the checkpoint (path, SHA-256) an export was made
        from, or the checkpoint itself; None when unknown (a model built in memory)."""
        if self.manifest is not None:
            return self.manifest.get("source")
        return self.checkpoint_source

    def fingerprint(self) -> str | None:
        """The model's identity where it is not a local file (a served model); None when
        the file's own hash identifies it."""
        return None

    @abc.abstractmethod
    def run(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        """N×3×H×W float32 (see :mod:`deen.preprocess`) and N int64 codes → N×dim float32."""

    def embed(
        self,
        images: Sequence[np.ndarray],
        modality: Modality | str | int | Sequence[Modality | str | int],
        color_order: ColorOrder = DEFAULT_COLOR_ORDER,
        batch_size: int = 16,
    ) -> np.ndarray:
        """uint8 images (BGR by default, as OpenCV reads them) → N×dim embeddings.

        ``modality`` is one value for all images or one per image; mixed batches are fine.
        """
        codes = modality_codes(modality, len(images))
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            stop = start + batch_size
            out[start:stop] = self.run(
                preprocess(images[start:stop], color_order, self.input_size), codes[start:stop])
        return out


def modality_codes(
    modality: Modality | str | int | Sequence[Modality | str | int], count: int
) -> np.ndarray:
    """One int64 code per image from a single modality or a per-image sequence."""
    if isinstance(modality, (str, int, Modality)):
        return np.full(count, int(parse_modality(modality)), dtype=np.int64)
    codes = np.array([int(parse_modality(m)) for m in modality], dtype=np.int64)
    if len(codes) != count:
        raise DeenError(f"got {count} images but {len(codes)} modality values")
    return codes


def validated_batch(images: np.ndarray, modality: np.ndarray,
                    size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The input contract of :meth:`Embedder.run`, checked once for every backend.

    Returns C-contiguous float32 images and int64 codes (any integer dtype is accepted).
    """
    images, modality = np.asarray(images), np.asarray(modality)
    if images.dtype != np.float32 or images.ndim != 4 or images.shape[1:] != (3, *size):
        raise DeenError(f"images must be N×3×{size[0]}×{size[1]} float32, "
                        f"got {images.shape} {images.dtype}")
    if modality.shape != (images.shape[0],) or not np.issubdtype(modality.dtype, np.integer):
        raise DeenError(f"modality must hold one integer code per image ({images.shape[0]}), "
                        f"got shape {modality.shape} {modality.dtype}")
    valid = {int(m) for m in Modality}
    if not set(np.unique(modality).tolist()) <= valid:
        raise DeenError(f"modality codes must be {sorted(valid)}, got {np.unique(modality)}")
    return np.ascontiguousarray(images), modality.astype(np.int64, copy=False)
