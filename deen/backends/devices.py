"""Where a model runs: the ``device`` every embedder takes, checked against what this machine
has before the model loads, so that a device that is not here is one clear line
(``device=cuda: no CUDA GPU here (this PyTorch is a CPU-only build)``) rather than a quiet
fallback to the CPU or a runtime's own error.

``device`` is ``None`` (the runtime's default), ``cpu``, ``cuda`` or ``cuda:N`` for every
backend; an OpenVINO model also takes OpenVINO's device names (``CPU``, ``GPU``, ``NPU``,
``AUTO``, ``HETERO:GPU,CPU``, …), checked against ``openvino.Core().available_devices``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from deen.errors import BadValueError, ParameterError

_CUDA = re.compile(r"cuda(?::(\d+))?")
#: Where the NVIDIA driver lists the GPUs it drives (one folder per GPU).
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")
#: OpenVINO's devices that stand for others (listed after a colon): always offered.
OPENVINO_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")


def is_cuda(device: str | None) -> bool:
    """Whether ``device`` asks for a CUDA GPU (``cuda`` or ``cuda:N``)."""
    return device is not None and _CUDA.fullmatch(device) is not None


def cuda_index(device: str) -> int:
    """The GPU ``cuda:N`` names (0 for ``cuda``)."""
    match = _CUDA.fullmatch(device)
    return int(match.group(1) or 0) if match else 0


def no_cuda(device: str, runtime: str, why: str) -> ParameterError:
    """The one error for a CUDA device that ``runtime`` cannot use: ``no CUDA GPU here``
    (``why`` says, in the runtime's words, what it found), or, where the NVIDIA driver does
    list a GPU, that the runtime cannot use it."""
    if _nvidia_gpus(NVIDIA_GPUS):
        return ParameterError("device", device, f"{runtime} cannot use the CUDA GPU here "
                              f"({why})")
    return ParameterError("device", device, f"no CUDA GPU here ({why})")


def _check_generic(device: str | None, runtime: str) -> None:
    if device is not None and device != "cpu" and not is_cuda(device):
        raise BadValueError("device", device, f"{runtime} runs on cpu or cuda (cuda:N for "
                            "the Nth GPU)")


def torch_device(device: str | None) -> str:
    """The PyTorch device for ``device``: CUDA when there is a GPU for ``None``; a CUDA device
    PyTorch cannot use is refused."""
    import torch

    _check_generic(device, "PyTorch")
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if is_cuda(device):
        if not torch.cuda.is_available():
            raise no_cuda(device, "PyTorch", "this PyTorch is a CPU-only build"
                          if torch.version.cuda is None
                          else f"PyTorch {torch.__version__} finds none")
        count = torch.cuda.device_count()
        if cuda_index(device) >= count:
            raise ParameterError("device", device, f"PyTorch finds {count} CUDA GPU"
                                 f"{'s' if count != 1 else ''} here (cuda:0 to cuda:{count - 1})")
    return device


#: ONNX Runtime's providers, preferred first; only those this build offers are used.
ONNXRUNTIME_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def onnxruntime_providers(device: str | None) -> list[Any]:
    """The providers an ONNX Runtime session is given for ``device``: CUDA (when this build
    has it) then CPU for ``None``; CPU only for ``cpu``; for ``cuda``/``cuda:N`` that GPU
    then CPU, refused when this build has no CUDA provider. A session that did not start
    its CUDA provider is refused by :func:`check_onnxruntime_session`."""
    import onnxruntime as ort

    _check_generic(device, "ONNX Runtime")
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if is_cuda(device):
        if "CUDAExecutionProvider" not in available:
            raise no_cuda(device, "ONNX Runtime", "this ONNX Runtime has no CUDA provider; it "
                          "has " + ", ".join(p.removesuffix("ExecutionProvider")
                                             for p in available))
        return [("CUDAExecutionProvider", {"device_id": cuda_index(device)}),
                "CPUExecutionProvider"]
    return [p for p in ONNXRUNTIME_PROVIDERS if p in available]


def check_onnxruntime_session(device: str | None, providers: list[str]) -> None:
    """ONNX Runtime falls back to the CPU when its CUDA provider cannot start (no GPU, no
    driver); asked for a CUDA device, that is an error."""
    if is_cuda(device) and "CUDAExecutionProvider" not in providers:
        raise no_cuda(str(device), "ONNX Runtime", "ONNX Runtime's CUDA provider did not "
                      "start")


def openvino_device(device: str | None, core: Any) -> str:
    """The OpenVINO device for ``device``: ``CPU`` for ``None`` or ``cpu``; an OpenVINO name
    if ``core`` offers it (a virtual device, e.g. ``AUTO:GPU,CPU``, if it offers each device
    listed after the colon). OpenVINO does not run on CUDA GPUs: ``cuda`` is refused."""
    available = list(core.available_devices)
    listed = ", ".join(available)
    if device is None or device == "cpu":
        return "CPU"
    if is_cuda(device):
        if not _nvidia_gpus(NVIDIA_GPUS):
            raise no_cuda(device, "OpenVINO", f"OpenVINO's devices here: {listed}")
        raise ParameterError("device", device, "OpenVINO does not run on CUDA GPUs (its devices "
                             f"here: {listed}); on a CUDA GPU use the .onnx export or a "
                             "TensorRT engine")
    name, _, parts = device.partition(":")
    physical = {d.split(".")[0] for d in available} | set(available)
    if name in OPENVINO_VIRTUAL_DEVICES:
        missing = [p for p in parts.split(",") if p and p not in physical]
    else:
        missing = [device] if device not in physical else []
    if missing:
        raise ParameterError("device", device, f"OpenVINO has no {', '.join(missing)} here "
                             f"(its devices here: {listed}; also "
                             f"{', '.join(OPENVINO_VIRTUAL_DEVICES)})")
    return device


def _nvidia_gpus(folder: Path) -> bool:
    """Whether the NVIDIA driver lists a GPU (``/proc/driver/nvidia/gpus/<bus id>``)."""
    try:
        return any(folder.iterdir())
    except OSError:
        return False
