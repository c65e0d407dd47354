"""What a TensorRT engine needs from the machine it runs on, shared by the builder
(:mod:`deen.export.tensorrt_build`) and the runner (:mod:`deen.backends.tensorrt_backend`):
TensorRT itself and a GPU, and a manifest that matches both. Plain Python except for the
import of ``tensorrt``, so it is tested everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deen.errors import DeenError

INSTALL_HINT = ("TensorRT 10+ and an NVIDIA GPU with CUDA are needed: on such a machine, "
                "pip install tensorrt (or use the NGC TensorRT container)")



def require_tensorrt() -> Any:
    """The ``tensorrt`` module (10 or later) when it and a CUDA GPU are here, else a one-line
    :class:`DeenError` saying what is missing and how to install it."""
    try:
        import tensorrt as trt
    except ImportError:
        raise DeenError(f"TensorRT is not installed. {INSTALL_HINT}") from None
    if int(trt.__version__.split(".")[0]) < 10:
        raise DeenError(f"TensorRT {trt.__version__} is too old. {INSTALL_HINT}")
    import torch

    if not torch.cuda.is_available():
        raise DeenError(f"TensorRT needs a CUDA GPU and none is visible. {INSTALL_HINT}")
    return trt



def check_engine_manifest(manifest: dict[str, Any], trt_version: str, gpu: str,
                          compute_capability: tuple[int, int], path: Path) -> None:
    """Refuse, with one line, an engine built for another TensorRT or GPU (TensorRT itself
    would fail to deserialise it, or crash). Version-/hardware-compatible builds relax the
    version / GPU checks as TensorRT does."""
    info = manifest.get("tensorrt")
    if manifest.get("engine") != "tensorrt" or not isinstance(info, dict):
        raise DeenError(f"{path}: its manifest does not describe a TensorRT engine")
    build = info.get("build", {})
    built_major = str(info.get("version", "")).split(".")[0]
    if not build.get("version_compatible") and info.get("version") != trt_version:
        raise DeenError(f"{path}: built with TensorRT {info.get('version')}, this is "
                        f"{trt_version}; rebuild it with this TensorRT")
    if build.get("version_compatible") and built_major != trt_version.split(".")[0]:
        raise DeenError(f"{path}: version-compatible engines need TensorRT {built_major}.x, "
                        f"this is {trt_version}")
    built_cc = tuple(info.get("compute_capability", ()))
    if build.get("hardware_compatible"):
        if compute_capability < (8, 0):
            raise DeenError(f"{path}: a hardware-compatible engine needs an Ampere or newer "
                            f"GPU; {gpu} is sm_{compute_capability[0]}{compute_capability[1]}")
    elif built_cc != tuple(compute_capability):
        raise DeenError(f"{path}: built for {info.get('gpu')} (sm_{''.join(map(str, built_cc))})"
                        f", this GPU is {gpu} (sm_{compute_capability[0]}"
                        f"{compute_capability[1]}); rebuild it here")



def split_batches(count: int, max_batch: int) -> list[tuple[int, int]]:
    """[start, stop) slices of at most ``max_batch`` rows covering ``count`` rows."""
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")
    return [(start, min(start + max_batch, count)) for start in range(0, count, max_batch)]
