"""The embedding: one vector per image whose dot product is the reference similarity (spec §6).

For image x and its horizontal flip x', with p_k / b_k the L2-normalised pool / feat rows
of DEE output k ∈ {0, 1, 2}:  P_k = p_k(x) + p_k(x'),  Q_k = b_k(x) + b_k(x')  (summed, not
re-normalised). The vector is ``[P0, Q0, P1, Q1, P2, Q2]`` (6·D values), so that

    ⟨e(q), e(g)⟩ = Σ_k ⟨P_k(q), P_k(g)⟩ + Σ_k ⟨Q_k(q), Q_k(g)⟩        ("all", the reported S)

With ``a`` set, the P parts are scaled by √a and the Q parts by √(1−a), giving S_a. With
flip off, P_k = p_k(x) and Q_k = b_k(x). :class:`deen.models.embedding_network.EmbeddingNetwork`
is the one module that computes this; the PyTorch embedder runs it and the ONNX export traces
it. This module is the layout's one place and needs no PyTorch, so that the runtime can read
exported models without loading it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from deen.errors import BadValueError

NUM_EMBEDDINGS = 3  # DEE output rows per image: original, branch 1, branch 2
PARTS = ("P0", "Q0", "P1", "Q1", "P2", "Q2")  # the layout, in order; each part is D wide


@dataclass(frozen=True)
class EmbeddingConfig:
    """How images become vectors. Recorded in every export manifest."""

    flip: bool = True  # average over the horizontal flip, as the reference protocol does
    a: float | None = None  # None: S ("all"); else S_a with P·√a and Q·√(1−a) (paper: 0.1)

    def __post_init__(self) -> None:
        if self.a is not None and not 0.0 <= self.a <= 1.0:
            raise BadValueError("a", self.a, "must be between 0 and 1")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        """The settings in words, for messages: ``flip on, equal part weights``."""
        weights = "equal part weights" if self.a is None else f"a={self.a:g}"
        return f"flip {'on' if self.flip else 'off'}, {weights}"


def embedding_layout(dim: int, config: EmbeddingConfig) -> dict[str, object]:
    """Machine-readable description of the vector, for manifests and readers."""
    return {
        "parts": list(PARTS),
        "part_dim": dim,
        "dim": dim * len(PARTS),
        "P": "sum over flips of L2-normalised pool rows" if config.flip else
             "L2-normalised pool rows",
        "Q": "sum over flips of L2-normalised BN-neck rows" if config.flip else
             "L2-normalised BN-neck rows",
        "P_scale": 1.0 if config.a is None else math.sqrt(config.a),
        "Q_scale": 1.0 if config.a is None else math.sqrt(1.0 - config.a),
        "similarity": "dot product",
    }


def cosine_similarity(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Every query row against every gallery row: the cosine of their embeddings, in
    [−1, 1]. This is the one score users see (the demo, ``deen run``'s matches, the gallery,
    events); the reference's unnormalised S (the dot product) is used only where the
    evaluation protocol ranks by it."""
    def unit(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.float64)
        norms = np.linalg.norm(rows, axis=-1, keepdims=True)
        return rows / np.where(norms > 0, norms, 1.0)

    return unit(np.atleast_2d(queries)) @ unit(np.atleast_2d(gallery)).T
