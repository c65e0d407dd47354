"""Model file → embedder, by the format table (:mod:`deen.formats`): the one way every
consumer (``deen run``, ``eval``, ``gallery``, ``bench``, the demo) opens a model."""

from __future__ import annotations

import os
from pathlib import Path

from deen import formats
from deen.backends.base import Embedder
from deen.embedding import EmbeddingConfig
from deen.errors import DeenError, ParameterError


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
        check_baked_config(f"{path} serves a model that", embedder.config, config)
        if variant is not None and variant != embedder.variant:
            raise DeenError(f"{path}: serves a {embedder.variant} model, not {variant}")
        return embedder
    path = Path(path)
    row = formats.for_path(path)
    assert row.embedder is not None  # for_path only returns rows that have one
    embedder_type: type[Embedder] = formats.load(row.embedder)
    embedder = embedder_type.open(path, config=config, variant=variant, device=device)
    if row.baked_config:
        check_baked_config(path.name, embedder.config, config)
    return embedder


def check_baked_config(model: str, exported: EmbeddingConfig,
                       asked: EmbeddingConfig | None) -> None:
    """An exported model embeds with the settings it was exported with; ``asked`` (None:
    those) must agree. The refusal names a parameter that differs (``flip``, or ``a`` when
    it differs too: the one a caller changed from its default) and says, in words, how the
    model was exported and what to change (``model`` names it: ``deen.onnx``)."""
    if asked is None or asked == exported:
        return
    settings, fixes = [], []
    if asked.flip != exported.flip:
        settings.append(f"flip {'on' if exported.flip else 'off'}")
        fixes.append(f"run {'without' if exported.flip else 'with'} {{flip}}")
    if asked.a != exported.a:
        settings.append("equal part weights" if exported.a is None else f"a={exported.a:g}")
        fixes.append("run without {a}" if exported.a is None
                     else f"run with {{a}} {exported.a:g}")
    blamed = "a" if asked.a != exported.a and asked.a is not None else "flip"
    value = asked.flip if blamed == "flip" else asked.a
    raise ParameterError(blamed, value, f"{model} was exported with {' and '.join(settings)}; "
                         f"{' and '.join(fixes)}, or re-export it", mentions=("flip", "a"))
