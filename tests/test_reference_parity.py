"""The core acceptance check: a checkpoint written in the reference code's format,
loaded by deen, embeds images exactly as the spec's reference model does (max abs diff ≤ 1e-4),
for both variants and both modalities, with BN statistics far from identity.

The comparison is against ``reference_spec.py``, an independent functional computation of the
spec on the reference tensor names: it shares no code with the package.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import person_images
from reference_spec import reference_eval_forward, reference_similarity, reference_test_features

from deen.backends.torch_backend import TorchEmbedder
from deen.embedding import EmbeddingConfig
from deen.modality import Modality
from deen.models.checkpoint import load_checkpoint
from deen.preprocess import preprocess

TOLERANCE = 1e-4
VIS, IR = Modality.VISIBLE, Modality.INFRARED


def test_test_checkpoints_have_non_identity_batchnorm(reference_state):
    state = reference_state("regdb")
    assert (state["visible_module.visible.bn1.running_var"] - 1).abs().mean() > 0.1
    assert state["bottleneck.running_mean"].abs().mean() > 0.01
    assert state["MFA1.CNL.W.1.weight"].abs().min() > 0.04  # zero-initialised in training


@pytest.mark.parametrize("variant", ["sysu", "regdb"])
@pytest.mark.parametrize("modality", [VIS, IR], ids=["visible", "infrared"])
def test_eval_forward_matches_reference(variant, modality, reference_state, reference_checkpoint):
    model = load_checkpoint(reference_checkpoint(variant)).model
    images = torch.from_numpy(preprocess(person_images([modality] * 2, seed=5)))
    with torch.no_grad():
        pool, feat = model(images, torch.full((2,), int(modality)))
    modal = "visible" if modality == VIS else "infrared"
    ref_pool, ref_feat = reference_eval_forward(reference_state(variant), images, modal, variant)
    assert pool.shape == ref_pool.shape == (6, model.variant.embedding_dim)
    assert (pool - ref_pool).abs().max() <= TOLERANCE
    assert (feat - ref_feat).abs().max() <= TOLERANCE


@pytest.mark.parametrize("variant", ["sysu", "regdb"])
def test_embedding_dot_product_is_reference_similarity(variant, reference_state,
                                                       reference_checkpoint):
    """Mixed batch through the embedder vs the reference test loop, per modality."""
    state = reference_state(variant)
    embedder = TorchEmbedder.from_checkpoint(reference_checkpoint(variant), device="cpu")
    modalities = [VIS, IR, VIS, IR]
    images = person_images(modalities, seed=9)
    embeddings = embedder.embed(images, modalities)

    batch = torch.from_numpy(preprocess(images))
    gallery = reference_test_features(state, batch[[0, 2]], "visible", variant)
    query = reference_test_features(state, batch[[1, 3]], "infrared", variant)
    for rows, (p, q) in (([0, 2], gallery), ([1, 3], query)):
        expected = torch.cat([p[0], q[0], p[1], q[1], p[2], q[2]], dim=1).numpy()
        assert np.abs(embeddings[rows] - expected).max() <= TOLERANCE

    similarity = embeddings[[1, 3]] @ embeddings[[0, 2]].T
    expected_similarity = reference_similarity(query, gallery).numpy()
    assert np.abs(similarity - expected_similarity).max() <= TOLERANCE * 10  # sums of 6·D terms


def test_a_weighting_and_no_flip(reference_state, reference_checkpoint):
    state = reference_state("regdb")
    images = person_images([VIS, IR], seed=3)
    batch = torch.from_numpy(preprocess(images))

    weighted = TorchEmbedder.from_checkpoint(reference_checkpoint("regdb"), device="cpu",
                                             config=EmbeddingConfig(flip=True, a=0.1))
    e = weighted.embed(images, [VIS, IR])
    query = reference_test_features(state, batch[1:], "infrared", "regdb")
    gallery = reference_test_features(state, batch[:1], "visible", "regdb")
    assert abs(float(e[1] @ e[0]) - float(reference_similarity(query, gallery, a=0.1))) <= 1e-4

    unflipped = TorchEmbedder.from_checkpoint(reference_checkpoint("regdb"), device="cpu",
                                              config=EmbeddingConfig(flip=False))
    e = unflipped.embed(images, [VIS, IR])
    p, q = reference_test_features(state, batch[:1], "visible", "regdb", flip=False)
    expected = torch.cat([p[0], q[0], p[1], q[1], p[2], q[2]], dim=1).numpy()
    assert np.abs(e[:1] - expected).max() <= TOLERANCE
