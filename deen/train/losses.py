"""The DEEN losses as the reference computes them (spec §8).

Rows of a training batch after DEE: [O; G1; G2] thirds, each [visible P·K; infrared P·K],
each identity's K rows consecutive, identities in the same order in both halves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deen.models.deen import TrainingOutput


def euclidean(x: Tensor, y: Tensor) -> Tensor:
    """Pairwise distances; squared distances are clamped at 1e-12 before the square root."""
    squared = (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return squared.clamp(min=1e-12).sqrt()


class BatchHardTriplet(nn.Module):
    """Hardest positive and hardest negative per anchor, margin hinge, mean over anchors."""

    def __init__(self, margin: float = 0.3) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        distances = euclidean(features, features)
        same = labels[:, None] == labels[None, :]
        hardest_positive = distances.masked_fill(~same, float("-inf")).max(dim=1).values
        hardest_negative = distances.masked_fill(same, float("inf")).min(dim=1).values
        return F.relu(hardest_positive - hardest_negative + self.margin).mean()


class CenterPairMining(nn.Module):
    """CPM(O, G) for one generated third G against the original third O (spec §8)."""

    def __init__(self, per_identity: int, margin: float = 0.2) -> None:
        super().__init__()
        self.per_identity, self.margin = per_identity, margin

    def _centres(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        visible, infrared = rows.chunk(2)
        return (visible.reshape(-1, self.per_identity, rows.shape[1]).mean(1),
                infrared.reshape(-1, self.per_identity, rows.shape[1]).mean(1))

    def _side(self, other: Tensor, generated: Tensor, own: Tensor) -> Tensor:
        """Pull the generated centre to the other modality's, away from its own."""
        def hinge(x: Tensor) -> Tensor:
            return F.relu(x + self.margin).mean()

        positive = euclidean(other, generated).diagonal()
        negative = euclidean(own, generated).diagonal().detach()
        off_diagonal = torch.eye(len(own), dtype=torch.bool, device=own.device)
        nearest_generated = euclidean(generated, generated).masked_fill(off_diagonal,
                                                                         float("inf")).min(1).values
        nearest_own = euclidean(own, own).masked_fill(off_diagonal, float("inf")).min(1).values
        return hinge(positive - negative) + 0.5 * (hinge(positive - nearest_generated)
                                                   + hinge(positive - nearest_own))

    def forward(self, original: Tensor, generated: Tensor) -> Tensor:
        c_v, c_r = self._centres(original)
        g_v, g_r = self._centres(generated)
        return (self._side(c_r, g_v, c_v) + self._side(c_v, g_r, c_r)) / 2


@dataclass(frozen=True)
class LossWeights:
    cpm: float = 0.8  # λ1
    orthogonal: float = 0.01  # λ2: the reference code's default (the paper says 0.1)
    triplet_margin: float = 0.3
    cpm_margin: float = 0.2  # α


class DEENLoss(nn.Module):
    """L_total = L_id + L_tri + λ1·L_cpm + λ2·L_ort; returns the total and each term."""

    def __init__(self, per_identity: int, weights: LossWeights | None = None) -> None:
        super().__init__()
        self.weights = weights or LossWeights()
        self.triplet = BatchHardTriplet(self.weights.triplet_margin)
        self.cpm = CenterPairMining(per_identity, self.weights.cpm_margin)

    def forward(self, output: TrainingOutput, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        rows_labels = labels.repeat(3)  # [l_v, l_r] for each of the three thirds
        identity = F.cross_entropy(output.logits, rows_labels)
        triplet = self.triplet(output.pool, rows_labels)
        original, generated1, generated2 = output.pool.chunk(3)
        cpm = self.weights.cpm * (self.cpm(original, generated1) + self.cpm(original, generated2))
        orthogonal = self.weights.orthogonal * output.orthogonality
        total = identity + triplet + cpm + orthogonal
        terms = {"id": identity, "tri": triplet, "cpm": cpm, "ort": orthogonal, "total": total}
        return total, {name: float(value.detach()) for name, value in terms.items()}
