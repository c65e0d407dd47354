"""Model file → embedder, by the format table (:mod:`deen.formats`): the one way every
consumer (``deen run``, ``eval``, ``gallery``, ``bench``, the demo) opens a model."""

from __future__ import annotations

import os
from pathlib import Path

from deen import formats
from deen.backends.base import Embedder
from deen.embedding import EmbeddingConfig
from deen.errors import DeenError


def model_suffixes() -> tuple[str, ...]:
    """Suffixes of the model files :func:`open_embedder` opens (from the format table)."""
    return formats.model_suffixes()


def open_embedder(
    path: str | os.PathLike[str],  # a file, or triton://HOST:PORT/NAME
    *,
    config: EmbeddingConfig | None = None,
    variant: str | None = None,
    device: str | None = None,
) -> Embedder:
    """Open a model file with the embedder its format row names (by suffix), or a model
    served by ``deen serve`` (``triton://HOST:PORT/NAME``, :mod:`deen.backends.triton_backend`).

    Checkpoints (``.t``/``.pth``/``.pt`` → PyTorch) take ``config`` and ``variant``;
    ``device`` defaults to CUDA when present. Exported files (``.onnx`` → ONNX Runtime,
    ``.xml`` with its ``.bin`` → OpenVINO, ``device`` an OpenVINO device name, default
    ``CPU``; ``.engine``/``.plan`` → TensorRT) have flip and layout baked in, and a
    ``config`` that disagrees with the manifest is an error.
    """
    from deen.backends.triton_backend import TritonEmbedder, is_triton_url

    if is_triton_url(path):  # a served model (deen serve), not a file
        embedder: Embedder = TritonEmbedder(str(path), device=device)
        if config is not None and config != embedder.config:
            raise DeenError(f"{path}: serves a model exported with {embedder.config}, not "
                            f"{config}")
        if variant is not None and variant != embedder.variant:
            raise DeenError(f"{path}: serves a {embedder.variant} model, not {variant}")
        return embedder
    path = Path(path)
    row = formats.for_path(path)
    assert row.embedder is not None  # for_path only returns rows that have one
    embedder_type: type[Embedder] = formats.load(row.embedder)
    embedder = embedder_type.open(path, config=config, variant=variant, device=device)
    if row.baked_config and config is not None and config != embedder.config:
        raise DeenError(f"{path}: was exported with {embedder.config}, not {config}; "
                        "re-export to change flip or a")
    return embedder
