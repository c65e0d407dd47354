"""The export manifest: what a deployed model file expects and produces, and where it came from.

Written by every exporter (:mod:`deen.export`) and read by every backend, so it lives in the
backends layer. Written twice: inside the artifact (ONNX metadata property
``deen.manifest``, OpenVINO runtime info ``deen_manifest``), so the model describes itself
wherever it is copied, and beside it as ``<file>.json`` with the verification results added
(a TensorRT engine has only the file beside it). Readers take the input convention and the
embedding layout from here rather than assuming them.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deen import __version__
from deen.embedding import EmbeddingConfig, embedding_layout
from deen.errors import DeenError
from deen.modality import Modality
from deen.preprocess import preprocessing_manifest

if TYPE_CHECKING:  # only a type here: reading an artifact needs no PyTorch
    from deen.models.checkpoint import SourceInfo

MANIFEST_FORMAT = "deen-export-manifest"
MANIFEST_VERSION = 1
METADATA_KEY = "deen.manifest"
INPUT_IMAGES = "images"
INPUT_MODALITY = "modality"
OUTPUT_EMBEDDING = "embedding"
#: The Triton model-config parameter holding the export manifest (JSON) in a repository.
MANIFEST_PARAMETER = "deen_manifest"


def manifest_path_for(model_path: str | Path) -> Path:
    """``model.onnx`` → ``model.onnx.json``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def library_versions() -> dict[str, str]:
    import numpy
    import onnx
    import onnxruntime
    import torch

    return {
        "deen": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
    }


def build_manifest(*, engine: str, variant: str, num_classes: int, embedding_dim: int,
                   config: EmbeddingConfig, source: SourceInfo, opset: int,
                   input_size: tuple[int, int], precision: str = "fp32",
                   dee_op: str = "standard") -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "engine": engine,
        "variant": variant,
        "num_classes": num_classes,
        "inputs": {
            INPUT_IMAGES: {"shape": ["batch", 3, *input_size], "dtype": "float32",
                           "preprocessing": preprocessing_manifest(input_size)},
            INPUT_MODALITY: {"shape": ["batch"], "dtype": "int64",
                             "values": {m.name.lower(): int(m) for m in Modality}},
        },
        "output": {OUTPUT_EMBEDDING: {"shape": ["batch", 6 * embedding_dim], "dtype": "float32",
                                      "layout": embedding_layout(embedding_dim, config)}},
        "embedding": config.to_dict(),
        "precision": precision,
        "dee_op": dee_op,  # "custom": DEE is one deen.ops::DeeConv node (cpp_ext/dee_conv.h)
        "opset": opset,
        "dynamic_batch": True,
        "source": asdict(source),
        "versions": library_versions(),
        "created_unix": int(time.time()),
    }


def parse_manifest(text: str, origin: str) -> dict[str, Any]:
    """Parse and check a manifest; ``origin`` names where it came from for error messages."""
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeenError(f"{origin}: manifest is not valid JSON ({exc.msg})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise DeenError(f"{origin}: not a deen export manifest")
    if manifest.get("format_version") != MANIFEST_VERSION:
        raise DeenError(f"{origin}: manifest version {manifest.get('format_version')!r} "
                        f"is not supported (expected {MANIFEST_VERSION})")
    return manifest


def embedding_config_from(manifest: dict[str, Any]) -> EmbeddingConfig:
    settings = manifest["embedding"]
    return EmbeddingConfig(flip=bool(settings["flip"]), a=settings["a"])
