"""Model file → backend, by suffix: the one table every consumer (``deen run``, ``eval``,
``gallery``, ``bench``, the demo) opens models through."""

from __future__ import annotations

import os
from pathlib import Path

from deen.backends.base import Embedder
from deen.embedding import EmbeddingConfig
from deen.errors import DeenError

TORCH_SUFFIXES = (".t", ".pth", ".pt")
ONNX_SUFFIXES = (".onnx",)
OPENVINO_SUFFIXES = (".xml",)
ENGINE_SUFFIXES = (".engine", ".plan")
MODEL_SUFFIXES = TORCH_SUFFIXES + ONNX_SUFFIXES + OPENVINO_SUFFIXES + ENGINE_SUFFIXES


def _check_config(path: Path, embedder: Embedder, config: EmbeddingConfig | None) -> Embedder:
    """An exported artifact has flip and ``a`` baked in: a request for others is an error."""
    if config is not None and config != embedder.config:
        raise DeenError(f"{path}: was exported with {embedder.config}, not {config}; "
                        "re-export to change flip or a")
    return embedder


def open_embedder(
    path: str | os.PathLike[str],
    *,
    config: EmbeddingConfig | None = None,
    variant: str | None = None,
    device: str | None = None,
) -> Embedder:
    """Open a model file with the backend its suffix names.

    ``.t``/``.pth``/``.pt`` → PyTorch (``config`` and ``variant`` apply; ``device`` defaults
    to CUDA when present); ``.onnx`` → ONNX Runtime; ``.xml`` (with its ``.bin``) → OpenVINO
    (``device`` is an OpenVINO device name, default ``CPU``); ``.engine``/``.plan`` →
    TensorRT. For the exported kinds flip and layout are baked in and a ``config`` that
    disagrees with the manifest is an error.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        from deen.backends.torch_backend import TorchEmbedder

        return TorchEmbedder.from_checkpoint(path, config=config, variant=variant, device=device)
    if suffix in ONNX_SUFFIXES:
        from deen.backends.onnxrt_backend import OnnxRuntimeEmbedder

        return _check_config(path, OnnxRuntimeEmbedder(path, device=device), config)
    if suffix in OPENVINO_SUFFIXES:
        from deen.backends.openvino_backend import OpenVinoEmbedder

        return _check_config(path, OpenVinoEmbedder(path, device=device), config)
    if suffix in ENGINE_SUFFIXES:
        from deen.backends.tensorrt_backend import TensorRTEmbedder

        return _check_config(path, TensorRTEmbedder(path), config)
    raise DeenError(f"{path}: unknown model file type {suffix or '(no suffix)'!r}; "
                    f"expected one of {', '.join(MODEL_SUFFIXES)}")
