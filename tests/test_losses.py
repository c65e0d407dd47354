"""Each loss against values computed by hand on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch

from deen.models.deen import TrainingOutput
from deen.train.losses import BatchHardTriplet, CenterPairMining, DEENLoss, LossWeights, euclidean


def test_euclidean_clamps_before_sqrt():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]], requires_grad=True)
    d = euclidean(x, x)
    assert torch.allclose(d, torch.tensor([[1e-6, 5.0], [5.0, 1e-6]]), atol=1e-7)
    d.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_batch_hard_triplet_by_hand():
    # 1-D points: a(0) a(1) b(3) b(7). Hardest pos/neg per anchor:
    # 0: pos 1, neg 3 → relu(1-3+.3)=0;   1: pos 1, neg 2 → 0
    # 3: pos 4, neg 2 → 2.3;              7: pos 4, neg 6 → 0
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    loss = BatchHardTriplet(0.3)(x, torch.tensor([0, 0, 1, 1]))
    assert loss.item() == pytest.approx(2.3 / 4, abs=1e-5)


def test_cpm_by_hand():
    # P = 2 identities, K = 1, D = 1. Original: visible [0, 10], infrared [1, 12];
    # generated: visible [2, 9], infrared [0.5, 11].
    original = torch.tensor([[0.0], [10.0], [1.0], [12.0]])
    generated = torch.tensor([[2.0], [9.0], [0.5], [11.0]])
    a = 0.2

    def side(pos, neg, n1, n2):
        def mean_hinge(others):
            return sum(max(0.0, p - o + a) for p, o in zip(pos, others, strict=True)) / len(pos)

        return mean_hinge(neg) + 0.5 * (mean_hinge(n1) + mean_hinge(n2))

    # visible side: pos_j = |c_r - g_v|, neg_j = |c_v - g_v|, n1 = nearest other g_v, n2 = c_v
    side_v = side([1, 3], [2, 1], [7, 7], [10, 10])
    # infrared side: pos_j = |c_v - g_r|, neg_j = |c_r - g_r|, n1 over g_r, n2 over c_r
    side_r = side([0.5, 1], [0.5, 1], [10.5, 10.5], [11, 11])
    got = CenterPairMining(per_identity=1, margin=a)(original, generated)
    assert got.item() == pytest.approx((side_v + side_r) / 2, abs=1e-5)


def test_cpm_centres_average_k_rows_and_negative_is_detached():
    original = torch.tensor([[0.0], [2.0], [10.0], [10.0], [1.0], [1.0], [12.0], [12.0]])
    generated = torch.tensor([[1.0], [3.0], [9.0], [9.0], [0.5], [0.5], [11.0], [11.0]],
                             requires_grad=True)
    cpm = CenterPairMining(per_identity=2)
    value = cpm(original, generated)  # visible centres (1, 10), generated (2, 9)
    single = CenterPairMining(per_identity=1)(
        torch.tensor([[1.0], [10.0], [1.0], [12.0]]), torch.tensor([[2.0], [9.0], [0.5], [11.0]]))
    assert value.item() == pytest.approx(single.item(), abs=1e-5)
    value.backward()
    assert generated.grad is not None


def test_total_combines_terms_with_weights():
    torch.manual_seed(0)
    pool = torch.rand(12, 5)  # P=1, K=2 → 4 rows per third
    logits = torch.randn(12, 3)
    orthogonality = torch.tensor(2.0)
    labels = torch.tensor([0, 0, 0, 0])
    weights = LossWeights(cpm=0.8, orthogonal=0.1)
    total, terms = DEENLoss(per_identity=2, weights=weights)(
        TrainingOutput(pool, logits, orthogonality), labels)
    expected_id = torch.nn.functional.cross_entropy(logits, labels.repeat(3)).item()
    assert terms["id"] == pytest.approx(expected_id, abs=1e-6)
    assert terms["ort"] == pytest.approx(0.2)
    assert total.item() == pytest.approx(sum(v for k, v in terms.items() if k != "total"),
                                         abs=1e-5)
    assert not math.isnan(terms["cpm"])
