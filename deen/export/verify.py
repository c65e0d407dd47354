"""Export verification: the same real-looking inputs through a reference and a candidate
embedder, compared case by case (Polygraphy's comparator idea, for embeddings).

Inputs are generated people of both modalities (:mod:`deen.synthetic`), not zeros: a graph
that mixes up stems, flips or rows fails here even when its shapes are right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deen.backends.base import Embedder
from deen.errors import DeenError
from deen.export.compare import Comparison, Tolerance, compare
from deen.modality import Modality
from deen.preprocess import preprocess
from deen.synthetic import make_people, render_person

VIS, IR = Modality.VISIBLE, Modality.INFRARED
#: (case name, modality of each image): batch 1 of each modality, and a mixed batch of 5.
VERIFICATION_CASES: tuple[tuple[str, tuple[Modality, ...]], ...] = (
    ("visible", (VIS,)),
    ("infrared", (IR,)),
    ("mixed", (VIS, IR, IR, VIS, IR)),
)


@dataclass(frozen=True)
class VerificationReport:
    reference: str
    candidate: str
    tolerance: Tolerance
    comparisons: tuple[Comparison, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons)

    @property
    def max_abs_diff(self) -> float:
        return max(c.max_abs_diff for c in self.comparisons)

    @property
    def min_cosine(self) -> float:
        return min(c.min_cosine for c in self.comparisons)

    def to_dict(self) -> dict[str, object]:
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "tolerance": {"max_abs_diff": self.tolerance.max_abs_diff,
                          "min_cosine": self.tolerance.min_cosine},
            "cases": [c.to_dict() for c in self.comparisons],
            "max_abs_diff": self.max_abs_diff,
            "min_cosine": self.min_cosine,
            "passed": self.passed,
        }

    def summary(self) -> str:
        """One line; a bound that is not checked (int8 is judged by cosine alone, its
        element-wise differences being the quantisation's) says so instead of "inf"."""
        bound = (f"tolerance {self.tolerance.max_abs_diff:g}"
                 if math.isfinite(self.tolerance.max_abs_diff) else "not bounded")
        return (f"{self.candidate} vs {self.reference}: max abs diff {self.max_abs_diff:.3g} "
                f"({bound}), min cosine {self.min_cosine:.7f} "
                f"(tolerance {self.tolerance.min_cosine:g})")


def verification_batch(
    modalities: tuple[Modality, ...], seed: int, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed images of distinct generated people with the given modalities."""
    rng = np.random.default_rng(seed)
    people = make_people(len(modalities), seed=seed)
    images = [render_person(p, m, rng) for p, m in zip(people, modalities, strict=True)]
    return preprocess(images, size=size), np.array([int(m) for m in modalities], dtype=np.int64)


def verify_embedder(reference: Embedder, candidate: Embedder, tolerance: Tolerance,
                    seed: int = 0, subject: str = "export") -> VerificationReport:
    """Every case of :data:`VERIFICATION_CASES` through both embedders, compared.

    A reference that itself gives non-finite embeddings (a degenerate checkpoint: the
    reference model divides by a pooled feature's norm, which can be zero) leaves nothing to
    verify against; that is a :class:`DeenError` naming ``subject`` and the cause, not a
    failed comparison that would blame the export.
    """
    comparisons = []
    for index, (name, modalities) in enumerate(VERIFICATION_CASES):
        images, codes = verification_batch(modalities, seed + index, reference.input_size)
        expected = reference.run(images, codes)
        if not np.isfinite(expected).all():
            raise DeenError(f"{subject}: {reference.backend} itself gives non-finite "
                            f"embeddings for the generated {name} images, so there is "
                            "nothing to verify against; the checkpoint is degenerate (e.g. "
                            "a pooled feature of norm zero); no file written")
        comparisons.append(compare(name, expected, candidate.run(images, codes), tolerance))
    return VerificationReport(reference.backend, candidate.backend, tolerance, tuple(comparisons))
