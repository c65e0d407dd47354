"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), as commonly used in ReID evaluation.

Re-ranks with Jaccard distances between k-reciprocal neighbour sets of query and gallery
items, mixed with the original distance. Costs O((Q+G)²) memory; meant for evaluation.
"""

from __future__ import annotations

import numpy as np


def k_reciprocal_rerank(query: np.ndarray, gallery: np.ndarray, k1: int = 20, k2: int = 6,
                        lambda_value: float = 0.3) -> np.ndarray:
    """Q×G re-ranked distances from L2-comparable query and gallery features."""
    num_q = len(query)
    features = np.concatenate([query, gallery]).astype(np.float32)
    squared = (features * features).sum(1)
    original = np.maximum(squared[:, None] + squared[None, :] - 2 * features @ features.T, 0)
    original = original / np.maximum(original.max(axis=0, keepdims=True), 1e-12)
    total = len(features)
    ranking = np.argsort(original, axis=1, kind="stable")
    k1 = min(k1, total - 1)

    def reciprocal(index: int, k: int) -> np.ndarray:
        forward = ranking[index, : k + 1]
        backward = ranking[forward, : k + 1]
        return forward[np.any(backward == index, axis=1)]

    weights = np.zeros((total, total), dtype=np.float32)
    for i in range(total):
        expansion = reciprocal(i, k1)
        merged = expansion
        for candidate in expansion:
            candidate_set = reciprocal(candidate, round(k1 / 2))
            if len(np.intersect1d(candidate_set, expansion)) > 2 / 3 * len(candidate_set):
                merged = np.append(merged, candidate_set)
        merged = np.unique(merged)
        w = np.exp(-original[i, merged])
        weights[i, merged] = w / w.sum()
    if k2 > 1:  # local query expansion
        weights = np.stack([weights[ranking[i, :k2]].mean(axis=0) for i in range(total)])

    jaccard = np.zeros((num_q, total - num_q), dtype=np.float32)
    gallery_weights = weights[num_q:]
    for i in range(num_q):
        jaccard[i] = 1 - np.minimum(weights[i][None, :], gallery_weights).sum(1) / \
            np.maximum(weights[i][None, :], gallery_weights).sum(1).clip(min=1e-12)
    return jaccard * (1 - lambda_value) + original[:num_q, num_q:] * lambda_value
