"""The one table of model formats: what each engine is called, which files it reads and
writes, which precisions it has, how it is exported, run and verified, and where it runs.

Every consumer reads this table instead of keeping its own list: ``deen export``'s
``--engine``/``--precision`` choices and checks, :func:`deen.backends.open_embedder` (model
file suffix → embedder), ``deen bench``'s backends and their default, the benchmark scripts,
and export verification (tolerances against PyTorch fp32). Adding an engine is one
:class:`Format` row (:func:`register`) plus its two modules: an exporter (the
:class:`deen.export.base.Exporter` contract) and an embedder (a
:class:`deen.backends.base.Embedder`).

Code is named by ``"module:attribute"`` strings and imported only when used, so reading the
table (the CLI's ``--help``, say) loads no runtime.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from deen.errors import BadValueError, DeenError, ParameterError


class Device(str, Enum):
    """Where a format's embedder runs."""

    CPU = "cpu"
    GPU = "gpu"
    ANY = "cpu or gpu"


@dataclass(frozen=True)
class Tolerance:
    """An export passes when every element is within ``max_abs_diff`` of the reference and
    every row's cosine similarity to the reference row is at least ``min_cosine``."""

    max_abs_diff: float
    min_cosine: float

    def describe(self) -> str:
        bound = ("no bound on abs diff" if self.max_abs_diff == float("inf")
                 else f"max abs diff <= {self.max_abs_diff:g}")
        return f"{bound}, cosine >= {self.min_cosine:g}"


#: int8 and half precisions change every value a little: their bound is on direction, which
#: is what ranking uses.
_DIRECTION_ONLY = float("inf")


@dataclass(frozen=True)
class BenchBackend:
    """One ``deen bench`` backend of a format: a name, the precision it builds, whether it is
    in the default list, keyword options for a format built from the model in memory (e.g.
    ``compile`` for PyTorch), and where it runs when that is narrower than its format's
    device (``None``: the format's)."""

    name: str
    precision: str
    default: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)
    device: Device | None = None


@dataclass(frozen=True)
class Format:
    """One row of the table.

    ``suffixes``: the model files of this format, the first being what an export writes
    (empty for a folder). ``exporter``/``embedder``: ``"module:attribute"`` of the export
    function and the embedder class (``None`` where the format has none: checkpoints are not
    exported, a Triton repository is served, not opened). ``tolerances``: per precision, the
    verification bound against PyTorch fp32. ``baked_config``: flip and ``a`` are part of the
    exported file (a request for others is an error). ``from_fp32_onnx``: the exporter builds
    from the verified fp32 ONNX export, which callers may share. ``preflight``: a check of
    the settings run before any checkpoint is loaded (e.g. TensorRT's presence).
    ``options_type``: the engine's own options dataclass, filled from settings of the same
    names. ``dee_ops``: the DEE operator forms the exporter can write.
    """

    name: str
    runtime: str
    description: str
    suffixes: tuple[str, ...]
    precisions: tuple[str, ...]
    device: Device
    exporter: str | None = None
    embedder: str | None = None
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    bench: tuple[BenchBackend, ...] = ()
    baked_config: bool = True
    from_fp32_onnx: bool = False
    preflight: str | None = None
    options_type: str | None = None
    dee_ops: tuple[str, ...] = ("standard",)
    output: str = "FILE"

    @property
    def exportable(self) -> bool:
        return self.exporter is not None

    def tolerance(self, precision: str) -> Tolerance:
        try:
            return self.tolerances[precision]
        except KeyError:
            raise ParameterError("precision", precision,
                                 f"the {self.name} format states no tolerance for it") from None

    def check_export(self, out: Path, precision: str, dee_op: str = "standard") -> None:
        """What every export checks first, from this row: precision, DEE form, file name."""
        if precision not in self.precisions:
            raise BadValueError("precision", precision,
                                 f"the {self.name} engine takes {', '.join(self.precisions)}")
        if dee_op not in self.dee_ops:
            raise BadValueError("dee_op", dee_op,
                                 f"the {self.name} engine writes DEE as "
                                 f"{' or '.join(self.dee_ops)} operators")
        if self.suffixes and out.suffix.lower() not in self.suffixes:
            raise BadValueError("out", out, f"the {self.name} engine writes a file ending in "
                                f"{' or '.join(self.suffixes)}")


_FORMATS: dict[str, Format] = {}


def register(row: Format) -> Format:
    """Add a row (replacing one of the same name)."""
    _FORMATS[row.name] = row
    return row


def unregister(name: str) -> None:
    _FORMATS.pop(name, None)


@contextmanager
def registered(row: Format) -> Iterator[Format]:
    """A row present only inside the block (for tests and plug-ins tried in place)."""
    previous = _FORMATS.get(row.name)
    register(row)
    try:
        yield row
    finally:
        unregister(row.name)
        if previous is not None:
            register(previous)


def formats() -> tuple[Format, ...]:
    return tuple(_FORMATS.values())


def get(name: str) -> Format:
    try:
        return _FORMATS[name]
    except KeyError:
        raise BadValueError("engine", name, f"choose one of {', '.join(_FORMATS)}") from None


def export_engines() -> tuple[str, ...]:
    """The names ``deen export --engine`` takes."""
    return tuple(f.name for f in _FORMATS.values() if f.exportable)


def export_precisions() -> tuple[str, ...]:
    """Every precision some exporter takes, in table order."""
    return tuple(dict.fromkeys(p for f in _FORMATS.values() if f.exportable
                               for p in f.precisions))


def model_suffixes() -> tuple[str, ...]:
    """Suffixes of the model files :func:`deen.backends.open_embedder` opens."""
    return tuple(s for f in _FORMATS.values() if f.embedder for s in f.suffixes)


#: The address of a model served by ``deen serve`` (:mod:`deen.backends.triton_backend`).
SERVED_MODEL = "triton://HOST:PORT/NAME"


def model_suffix_help() -> str:
    """The models :func:`deen.backends.open_embedder` opens, for help texts: each format's
    suffixes and runtime, and a served model's address."""
    kinds = [f"{'/'.join(f.suffixes)} ({f.runtime})" for f in _FORMATS.values()
             if f.embedder and f.suffixes]
    return f"{', '.join(kinds)} or a served model {SERVED_MODEL}"


def for_path(path: str | os.PathLike[str]) -> Format:
    """The row whose embedder opens ``path``, by suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    for row in _FORMATS.values():
        if row.embedder is not None and suffix in row.suffixes:
            return row
    raise DeenError(f"{path}: unknown model file type {suffix or '(no suffix)'!r}; "
                    f"expected one of {', '.join(model_suffixes())}")


def is_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is read as a training checkpoint (embedding settings apply to it)
    rather than an export (settings baked in)."""
    try:
        return not for_path(path).baked_config
    except DeenError:
        return False


def bench_backends() -> dict[str, tuple[Format, BenchBackend]]:
    """Every ``deen bench`` backend by name, with its row."""
    return {b.name: (f, b) for f in _FORMATS.values() for b in f.bench}


def default_bench_backends() -> list[str]:
    return [name for name, (_, b) in bench_backends().items() if b.default]


def cpu_bench_backends() -> list[str]:
    """The ``deen bench`` backends that can run on a CPU."""
    return [name for name, (f, b) in bench_backends().items()
            if (b.device or f.device) is not Device.GPU]


def load(target: str) -> Any:
    """The object a ``"module:attribute"`` string names."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def tolerance(engine: str, precision: str) -> Tolerance:
    """The verification tolerance of ``engine`` (a row name) at ``precision``."""
    return get(engine).tolerance(precision)


# ---------------------------------------------------------------------------------------
# The rows. Tolerances: fp32 exports match PyTorch to float rounding (ONNX Runtime, 1e-4);
# runtimes with their own kernels (oneDNN in OpenVINO, TensorRT's tactics) to 1e-3; reduced
# precisions are bounded on cosine only.

register(Format(
    name="pytorch", runtime="pytorch", device=Device.ANY,
    description="a checkpoint (the authors' {'net': ...} or deen's), run by PyTorch eagerly",
    suffixes=(".t", ".pth", ".pt"), precisions=("fp32", "bf16", "fp16"),
    embedder="deen.backends.torch_backend:TorchEmbedder", baked_config=False,
    bench=(BenchBackend("pytorch-fp32", "fp32"), BenchBackend("pytorch-bf16", "bf16"),
           BenchBackend("pytorch-fp16", "fp16", default=False, device=Device.GPU),
           BenchBackend("pytorch-compile", "fp32", default=False,
                        options={"compile": True}))))

register(Format(
    name="onnx", runtime="onnxruntime", device=Device.ANY, output="FILE.onnx",
    description="one ONNX graph (standard operators, or DEE as the fused DeeConv node), "
                "run by ONNX Runtime",
    suffixes=(".onnx",), precisions=("fp32", "int8"), dee_ops=("standard", "custom"),
    exporter="deen.export.onnx_export:export",
    embedder="deen.backends.onnxrt_backend:OnnxRuntimeEmbedder",
    tolerances={"fp32": Tolerance(1e-4, 0.99999),
                "int8": Tolerance(_DIRECTION_ONLY, 0.98)},
    bench=(BenchBackend("onnxruntime-fp32", "fp32"), BenchBackend("onnxruntime-int8", "int8"))))

register(Format(
    name="openvino", runtime="openvino", device=Device.CPU, output="FILE.xml",
    description="an OpenVINO IR (FILE.xml + FILE.bin) for CPU edge boxes; int8 by NNCF",
    suffixes=(".xml",), precisions=("fp32", "bf16", "int8"), from_fp32_onnx=True,
    exporter="deen.export.openvino_export:export",
    embedder="deen.backends.openvino_backend:OpenVinoEmbedder",
    # bf16 keeps 8 mantissa bits through ~60 layers; int8 is NNCF's post-training recipe.
    tolerances={"fp32": Tolerance(1e-3, 0.9999), "bf16": Tolerance(_DIRECTION_ONLY, 0.99),
                "int8": Tolerance(_DIRECTION_ONLY, 0.98)},
    bench=(BenchBackend("openvino-fp32", "fp32"), BenchBackend("openvino-bf16", "bf16"),
           BenchBackend("openvino-int8", "int8"))))

register(Format(
    name="trt", runtime="tensorrt", device=Device.GPU, output="FILE.engine",
    description="a TensorRT engine (TensorRT 10+, one GPU model), built from the ONNX export",
    suffixes=(".engine", ".plan"), precisions=("fp32", "fp16", "int8"),
    dee_ops=("standard", "custom"),
    exporter="deen.export.tensorrt_build:export",
    embedder="deen.backends.tensorrt_backend:TensorRTEmbedder",
    preflight="deen.export.tensorrt_build:preflight",
    options_type="deen.export.tensorrt_build:TrtBuildOptions",
    # fp32 may pick other (TF32-free) kernels; fp16 halves the mantissa; int8 runs the same
    # QDQ graph as ONNX Runtime's int8.
    tolerances={"fp32": Tolerance(1e-3, 0.9999), "fp16": Tolerance(_DIRECTION_ONLY, 0.999),
                "int8": Tolerance(_DIRECTION_ONLY, 0.98)},
    # fp16, the usual deployment; skipped where TensorRT or a GPU is missing.
    bench=(BenchBackend("tensorrt", "fp16", default=False),)))

register(Format(
    name="triton", runtime="triton", device=Device.ANY, output="REPO/",
    description="a Triton Inference Server model repository (the ONNX export, and a "
                "TensorRT plan with the TensorRT option)",
    suffixes=(), precisions=("fp32", "fp16", "int8"),
    exporter="deen.export.triton:export", preflight="deen.export.triton:preflight",
    options_type="deen.export.triton:TritonOptions"))
