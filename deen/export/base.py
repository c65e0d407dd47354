"""The exporter contract shared by every engine: one settings type in, one result type out,
and one way to report a failed verification.

Each engine module (``onnx_export``, ``openvino_export``, ``tensorrt_build``, ``triton``)
provides ``export(model, out, settings) -> ExportResult``, named in its row of
:mod:`deen.formats`; its engine-specific knobs travel in ``settings.options`` as the
dataclass the row names (``options_type``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from deen.embedding import EmbeddingConfig
from deen.errors import BadValueError, DeenError
from deen.preprocess import DEFAULT_INPUT_SIZE

if TYPE_CHECKING:
    from deen.export.verify import VerificationReport
    from deen.models.checkpoint import SourceInfo
    from deen.models.deen import DEEN

DEFAULT_OPSET = 18  # also the lowest: PyTorch's exporter writes 18 for any lower opset


def check_opset(opset: int) -> int:
    """``opset`` if the exporter writes it: from :data:`DEFAULT_OPSET` up to the newest
    that the installed ONNX knows."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not DEFAULT_OPSET <= opset <= newest:
        raise BadValueError("opset", opset, f"must lie between {DEFAULT_OPSET} and {newest} "
                            "(the exporter writes no older opset; ONNX here knows none newer)")
    return opset


@dataclass(frozen=True)
class ExportSettings:
    """What an export is asked for, the same fields for every engine.

    ``source``: the checkpoint's provenance for the manifest. ``calib``: int8 calibration
    crops or videos (default: generated people). ``onnx_path``: build from this verified
    fp32 (or, for TensorRT int8, QDQ) deen ONNX export instead of exporting one.
    ``options``: the engine's own options dataclass (its row's ``options_type``), or None
    for its defaults.
    """

    config: EmbeddingConfig
    source: SourceInfo
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    precision: str = "fp32"
    calib: Path | None = None
    opset: int = DEFAULT_OPSET
    dee_op: str = "standard"
    onnx_path: Path | None = None
    options: Any = field(default=None)

    def __post_init__(self) -> None:
        check_opset(self.opset)


@dataclass(frozen=True)
class ExportResult:
    """The written model (file or folder), its manifest file and contents, and the
    verification that let it be written. ``companions``: other files that belong to the
    model (an IR's weights). ``usage``: a line on how to use what was written, if any."""

    model_path: Path
    manifest_path: Path | None
    manifest: dict[str, Any]
    verification: VerificationReport | None
    companions: tuple[Path, ...] = ()
    usage: str = ""

    def summary(self) -> str:
        return self.verification.summary() if self.verification is not None else "verified"


class Exporter(Protocol):
    """``export(model, out, settings)``: build, verify against PyTorch fp32, and only then
    write ``out`` (and its manifest); raise :class:`~deen.errors.DeenError` and leave
    nothing behind otherwise."""

    def __call__(self, model: DEEN, out: Path, settings: ExportSettings) -> ExportResult: ...


def require_verified(report: VerificationReport, out: Path, what: str = "export") -> None:
    """Raise the one-line error of a failed verification, naming the failing cases."""
    if not report.passed:
        failed = "; ".join(c.describe() for c in report.comparisons if not c.passed)
        raise DeenError(f"{out}: {what} failed verification ({failed}); no file written")
