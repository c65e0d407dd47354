"""Comparing two backends' embeddings: the numbers, the tolerance, the verdict.

Tolerances live here and nowhere else, one per kind of export (``<backend>-<precision>``),
so a new backend adds its line instead of inventing its own check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """An export passes when every element is within ``max_abs_diff`` of the reference and
    every row's cosine similarity to the reference row is at least ``min_cosine``."""

    max_abs_diff: float
    min_cosine: float


#: The stated tolerances, by export kind.
TOLERANCES: dict[str, Tolerance] = {
    "onnx-fp32": Tolerance(max_abs_diff=1e-4, min_cosine=0.99999),
    # int8 changes every value a little: the bound is on direction (what ranking uses).
    "onnx-int8": Tolerance(max_abs_diff=float("inf"), min_cosine=0.98),
    # TensorRT: fp32 may pick other (TF32-free) kernels, so a little looser than ONNX fp32;
    # fp16 halves the mantissa; int8 runs the same QDQ graph as ONNX Runtime's int8.
    "tensorrt-fp32": Tolerance(max_abs_diff=1e-3, min_cosine=0.9999),
    "tensorrt-fp16": Tolerance(max_abs_diff=float("inf"), min_cosine=0.999),
    "tensorrt-int8": Tolerance(max_abs_diff=float("inf"), min_cosine=0.98),
    # OpenVINO: fp32 uses its own (oneDNN) kernels, so 1e-3 absolute as for TensorRT fp32;
    # bf16 keeps 8 mantissa bits through ~60 layers; int8 is NNCF's post-training recipe.
    "openvino-fp32": Tolerance(max_abs_diff=1e-3, min_cosine=0.9999),
    "openvino-bf16": Tolerance(max_abs_diff=float("inf"), min_cosine=0.99),
    "openvino-int8": Tolerance(max_abs_diff=float("inf"), min_cosine=0.98),
}


@dataclass(frozen=True)
class Comparison:
    """One case: a batch embedded by the reference and by the candidate backend."""

    case: str
    batch: int
    max_abs_diff: float
    min_cosine: float
    passed: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return (f"{self.case}: batch {self.batch}, max abs diff {self.max_abs_diff:.3g}, "
                f"min cosine {self.min_cosine:.7f} [{verdict}]")


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    denom = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return (a64 * b64).sum(axis=1) / np.maximum(denom, np.finfo(np.float64).tiny)


def compare(case: str, reference: np.ndarray, candidate: np.ndarray,
            tolerance: Tolerance) -> Comparison:
    """Compare two N×D embedding batches; a shape mismatch or a non-finite value fails."""
    if reference.shape != candidate.shape:
        return Comparison(case, len(reference), float("inf"), -1.0, False)
    max_abs = float(np.abs(reference.astype(np.float64) - candidate).max())
    min_cos = float(row_cosines(reference, candidate).min())
    finite = bool(np.isfinite(candidate).all())
    passed = finite and max_abs <= tolerance.max_abs_diff and min_cos >= tolerance.min_cosine
    return Comparison(case, len(reference), max_abs, min_cos, passed)
