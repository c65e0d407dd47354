"""Comparing two backends' embeddings: the numbers and the verdict against a tolerance.

The tolerances themselves are part of each format's row in :mod:`deen.formats` (one per
precision), so a new engine states its bound there instead of inventing its own check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from deen.formats import Tolerance

__all__ = ["Comparison", "Tolerance", "compare", "row_cosines"]


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
