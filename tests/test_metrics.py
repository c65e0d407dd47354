"""The vectorised metric function against a straightforward per-query loop written from the
spec (§9) the way the reference evaluation code loops, on random matrices with ties."""

from __future__ import annotations

import numpy as np
import pytest

from deen.errors import DeenError
from deen.eval.metrics import IgnoreRule, evaluate_ranking


def loop_metrics(distmat, q_pids, g_pids, q_camids, g_camids, rule, dedup, max_rank=20):
    """One query at a time, as in the reference eval_sysu / eval_llcm / eval_regdb."""
    indices = np.argsort(distmat, axis=1, kind="stable")
    all_cmc, all_ap, all_inp = [], [], []
    for q in range(distmat.shape[0]):
        order = indices[q]
        if rule == "sysu":
            remove = (q_camids[q] == 3) & (g_camids[order] == 2)
        elif rule == "llcm":
            remove = (g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q])
        else:
            remove = np.zeros(len(order), bool)
        keep = ~remove
        ranked_ids = g_pids[order][keep]
        orig_cmc = (ranked_ids == q_pids[q]).astype(np.int32)
        if not orig_cmc.any():
            continue
        if dedup:
            first = np.unique(ranked_ids, return_index=True)[1]
            collapsed = ranked_ids[sorted(first)]
            cmc = (collapsed == q_pids[q]).astype(np.int32).cumsum()
        else:
            cmc = orig_cmc.cumsum()
            cmc[cmc > 1] = 1
        cmc = np.concatenate([cmc, np.full(max(0, max_rank - len(cmc)), cmc[-1])])
        all_cmc.append(cmc[:max_rank])
        hits = orig_cmc.cumsum()
        last = np.max(np.where(orig_cmc == 1))
        all_inp.append(hits[last] / (last + 1.0))
        precision = hits / np.arange(1, len(hits) + 1)
        all_ap.append((precision * orig_cmc).sum() / orig_cmc.sum())
    return np.mean(all_cmc, axis=0), np.mean(all_ap), np.mean(all_inp), len(all_ap)


def random_problem(rng, num_q, num_g, num_ids, num_cams, ties):
    distances = rng.random((num_q, num_g))
    if ties:  # few distinct values: many ties, which the stable order must break alike
        distances = np.round(distances * 4) / 4
    q_ids = rng.integers(0, num_ids, num_q)
    g_ids = rng.integers(0, num_ids, num_g)
    q_cams = rng.integers(1, num_cams + 1, num_q)
    g_cams = rng.integers(1, num_cams + 1, num_g)
    return distances, q_ids, g_ids, q_cams, g_cams


@pytest.mark.parametrize("rule", ["none", "sysu", "llcm"])
@pytest.mark.parametrize("dedup", [False, True])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorised_equals_loop(rule, dedup, ties, dtype):
    rng = np.random.default_rng(abs(hash((rule, dedup, ties))) % 2**32)
    for _ in range(3):
        problem = random_problem(rng, num_q=60, num_g=80, num_ids=15, num_cams=6, ties=ties)
        problem = (problem[0].astype(dtype) - 0.5, *problem[1:])  # negative distances too
        cmc, m_ap, m_inp, valid = loop_metrics(*problem, rule=rule, dedup=dedup)
        got = evaluate_ranking(*problem, rule=IgnoreRule(rule), dedup_cmc=dedup, chunk=17)
        assert got.num_queries == valid
        assert np.allclose(got.cmc, cmc) and got.mAP == pytest.approx(m_ap)
        assert got.mINP == pytest.approx(m_inp)


def test_hand_computed_example():
    # One query (id 1, camera 3); gallery ids/cameras by rank: (2,1) (1,2) (1,1) (2,4) (1,5).
    distances = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    g_ids, g_cams = np.array([2, 1, 1, 2, 1]), np.array([1, 2, 1, 4, 5])
    plain = evaluate_ranking(distances, np.array([1]), g_ids, np.array([3]), g_cams)
    assert plain.rank(1) == 0 and plain.rank(5) == 1
    assert plain.mAP == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3)
    assert plain.mINP == pytest.approx(3 / 5)
    sysu = evaluate_ranking(distances, np.array([1]), g_ids, np.array([3]), g_cams,
                            rule=IgnoreRule.SYSU_CAM3_CAM2, dedup_cmc=True)
    # camera-2 item dropped: ranks (2,1) (1,1) (2,4) (1,5) → AP (1/2 + 2/4) / 2, INP 2/4
    assert sysu.mAP == pytest.approx(0.5) and sysu.mINP == pytest.approx(0.5)
    assert sysu.rank(1) == 0 and sysu.rank(2) == 1


def test_no_valid_query_is_an_error():
    with pytest.raises(DeenError, match="no query has a true match"):
        evaluate_ranking(np.zeros((1, 2)), np.array([5]), np.array([1, 2]))


def test_query_identity_absent_from_gallery_is_skipped():
    distances = np.array([[0.2, 0.1], [0.3, 0.4]], dtype=np.float32)
    got = evaluate_ranking(distances, np.array([7, 1]), np.array([1, 2]))
    assert got.num_queries == 1 and got.rank(1) == 1.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(DeenError, match="does not fit"):
        evaluate_ranking(np.zeros((2, 3)), np.array([1]), np.array([1, 2, 3]))


def test_k_reciprocal_rerank_keeps_clear_clusters():
    """Three tight identity clusters: re-ranked distances are finite, Q×G, and still rank
    every query's whole identity first (mAP 1)."""
    from deen.eval.rerank import k_reciprocal_rerank

    rng = np.random.default_rng(0)
    centres = np.eye(3, 8) * 4
    gallery_ids = np.repeat(np.arange(3), 4)
    gallery = centres[gallery_ids] + rng.normal(0, 0.1, (12, 8))
    query = centres[[0, 1, 2]] + rng.normal(0, 0.1, (3, 8))
    plain = ((query[:, None] - gallery[None]) ** 2).sum(-1)
    reranked = k_reciprocal_rerank(query, gallery, k1=4, k2=2)
    assert reranked.shape == (3, 12) and np.isfinite(reranked).all()
    assert (gallery_ids[reranked.argmin(axis=1)] == [0, 1, 2]).all()
    assert (gallery_ids[plain.argmin(axis=1)] == [0, 1, 2]).all()
    metrics = evaluate_ranking(reranked.astype(np.float32), np.arange(3), gallery_ids)
    assert metrics.mAP == pytest.approx(1.0)
