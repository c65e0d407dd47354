"""The network's structure and training-mode behaviour (eval parity is in test_reference_parity)."""

from __future__ import annotations

import pytest
import torch

from deen.embedding import EmbeddingConfig
from deen.errors import BadValueError, DeenError
from deen.models import DEEN, TrainingOutput
from deen.models.embedding_network import assemble_embedding


def _count(model: DEEN) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("variant", "classes", "millions"),
                         [("sysu", 713, 42.7), ("regdb", 206, 13.1)])
def test_parameter_counts_match_the_spec(variant, classes, millions):
    assert _count(DEEN(classes, variant)) / 1e6 == pytest.approx(millions, abs=0.05)


@pytest.mark.parametrize(("variant", "dim"), [("sysu", 2048), ("regdb", 1024)])
def test_feature_map_keeps_24x9_with_layer4_stride_1(variant, dim):
    model = DEEN(5, variant).eval()
    with torch.no_grad():
        fmap = model.feature_map(torch.randn(2, 3, 384, 144), torch.tensor([0, 1]))
    assert fmap.shape == (6, dim, 24, 9)


def test_unknown_variant():
    with pytest.raises(DeenError, match="unknown variant 'sysu2'"):
        DEEN(5, "sysu2")


def test_training_output_and_orthogonality_term():
    torch.manual_seed(0)
    model = DEEN(7, "regdb").train()
    images = torch.randn(4, 3, 384, 144)
    out = model(images, torch.tensor([0, 0, 1, 1]))
    assert isinstance(out, TrainingOutput)
    assert out.pool.shape == (12, 1024) and out.logits.shape == (12, 7)
    u, w = out.pool[4:8], out.pool[8:12]
    assert torch.allclose(out.orthogonality, (u * w).sum() / 12)
    (out.logits.sum() + out.orthogonality).backward()
    assert model.dee.branch2.dilated[2].weight.grad is not None
    assert model.neck.bn.bias.grad is None  # BN-neck bias is frozen at 0


def test_training_stems_use_per_modality_batch_statistics():
    """In training each stem's BN sees only its own modality's images, as in the reference."""
    torch.manual_seed(0)
    model = DEEN(3, "regdb").train()
    images = torch.randn(6, 3, 384, 144) * torch.tensor([1, 1, 1, 3, 3, 3]).view(6, 1, 1, 1)
    modality = torch.tensor([0, 0, 0, 1, 1, 1])
    mixed = model.stems(images, modality)
    fresh = DEEN(3, "regdb").train()
    fresh.load_state_dict(model.state_dict())
    assert torch.allclose(mixed[:3], fresh.stems.visible(images[:3]), atol=1e-6)
    assert torch.allclose(mixed[3:], fresh.stems.infrared(images[3:]), atol=1e-6)


def test_eval_stems_select_per_row():
    model = DEEN(3, "regdb").eval()
    images = torch.randn(3, 3, 384, 144)
    with torch.no_grad():
        mixed = model.stems(images, torch.tensor([1, 0, 1]))
        assert torch.equal(mixed[1], model.stems.visible(images[1:2])[0])
        assert torch.equal(mixed[2], model.stems.infrared(images[2:3])[0])


def test_embedding_layout_by_hand():
    """Rows [orig; b1; b2] × [N images; N flips] → [P0, Q0, P1, Q1, P2, Q2] per image."""
    n, d = 2, 3
    pool = torch.arange(3 * 2 * n * d, dtype=torch.float32).reshape(3 * 2 * n, d)
    feat = -pool
    e = assemble_embedding(pool, feat, EmbeddingConfig(flip=True))
    image = 1
    parts = []
    for k in range(3):
        p = pool[k * 2 * n + image] + pool[k * 2 * n + n + image]
        parts += [p, -p]
    assert torch.equal(e[image], torch.cat(parts))
    weighted = assemble_embedding(pool, feat, EmbeddingConfig(flip=True, a=0.25))
    assert torch.allclose(weighted[image, :d], e[image, :d] * 0.5)
    assert torch.allclose(weighted[image, d:2 * d], e[image, d:2 * d] * 0.75 ** 0.5)


def test_a_must_be_a_weight():
    with pytest.raises(BadValueError, match=r"^a=1.5: must be between 0 and 1$"):
        EmbeddingConfig(a=1.5)
