"""Re-identification metrics as the reference evaluation computes them (spec §9), vectorised.

:func:`evaluate_ranking` takes a distance matrix, query/gallery identities and cameras and a
protocol rule, and returns CMC, mAP and mINP. It processes queries in chunks so that memory
stays bounded (a 4,000 × 4,000 evaluation runs in about a second on one core).

Conventions, all the reference's:
- the gallery is ranked by ascending distance; ties keep gallery order (a stable sort, so the
  result is deterministic; the reference's unstable quicksort leaves tie order unspecified);
- ``ignore`` rules remove gallery items per query before anything is counted: SYSU-MM01 drops
  camera-2 images for camera-3 queries, LLCM drops images of the query's identity taken by the
  query's camera;
- ``dedup_cmc``: SYSU-MM01 and LLCM compute CMC on the ranked list collapsed to the first
  occurrence of each identity; RegDB uses the plain list. mAP and mINP always use the full list;
- queries with no true match left in the gallery are skipped (not counted as failures);
- mINP per query = (number of true matches) / (rank of the hardest true match).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from deen.errors import DeenError

CMC_RANKS = (1, 5, 10, 20)


class IgnoreRule(str, Enum):
    """Which gallery items a query does not see."""

    NONE = "none"  # RegDB
    SYSU_CAM3_CAM2 = "sysu"  # query from camera 3 ignores gallery images from camera 2
    SAME_ID_SAME_CAMERA = "llcm"  # same identity and same camera as the query


@dataclass(frozen=True)
class Metrics:
    cmc: np.ndarray  # cmc[k] = fraction of valid queries matched within the top k+1
    mAP: float  # named as in every ReID paper
    mINP: float
    num_queries: int  # valid queries (with at least one true match)

    def rank(self, k: int) -> float:
        return float(self.cmc[k - 1])

    def to_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {f"rank{k}": self.rank(k) for k in CMC_RANKS
                                       if k <= len(self.cmc)}
        out.update(mAP=self.mAP, mINP=self.mINP, num_queries=self.num_queries)
        return out


def ignore_mask(rule: IgnoreRule, q_ids: np.ndarray, g_ids: np.ndarray, q_cams: np.ndarray,
                g_cams: np.ndarray) -> np.ndarray | None:
    """Boolean Q×G matrix, True where the gallery item is removed for the query."""
    if rule == IgnoreRule.NONE:
        return None
    if rule == IgnoreRule.SYSU_CAM3_CAM2:
        return (q_cams[:, None] == 3) & (g_cams[None, :] == 2)
    if rule == IgnoreRule.SAME_ID_SAME_CAMERA:
        return (q_ids[:, None] == g_ids[None, :]) & (q_cams[:, None] == g_cams[None, :])
    raise DeenError(f"unknown ignore rule {rule!r}")


def _orderable_int32(values: np.ndarray) -> np.ndarray:
    """float32 → int32 with the same order (IEEE bits, negative values flipped)."""
    bits = values.view(np.int32)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def _ranked_order(distances: np.ndarray, original_index: np.ndarray,
                  ignored: np.ndarray | None) -> np.ndarray:
    """Per row, column indices by ascending distance, ties by ``original_index`` (a stable
    sort in the caller's gallery order), with ignored columns moved to the end."""
    if distances.dtype == np.float32:
        # One unique int64 key per item (distance bits, then original index): any sort of
        # unique keys is the stable order, and numpy's vectorised integer sort is ~3× faster
        # than a stable float sort.
        keys = (_orderable_int32(distances).astype(np.int64) << 32) | original_index[None, :]
        if ignored is not None:
            keys[ignored] = np.iinfo(np.int64).max
        return np.argsort(keys, axis=1)
    # Other dtypes: a stable sort in the caller's order, ignored items as NaN (sorted last).
    restore = np.argsort(original_index)
    values = distances[:, restore].astype(np.float64)
    if ignored is not None:
        values[ignored[:, restore]] = np.nan
    return np.argsort(original_index)[np.argsort(values, axis=1, kind="stable")]


def evaluate_ranking(distances: np.ndarray, q_ids: np.ndarray, g_ids: np.ndarray,
                     q_cams: np.ndarray | None = None, g_cams: np.ndarray | None = None, *,
                     rule: IgnoreRule = IgnoreRule.NONE, dedup_cmc: bool = False,
                     max_rank: int = 20, chunk: int = 1024) -> Metrics:
    """CMC (ranks 1…max_rank), mAP and mINP of a Q×G distance matrix (smaller = closer).

    float32 distances (what embeddings give) take the fast path; other dtypes are exact too.
    """
    distances = np.asarray(distances)
    q_ids, g_ids = np.asarray(q_ids), np.asarray(g_ids)
    num_q, num_g = distances.shape if distances.ndim == 2 else (-1, -1)
    if distances.ndim != 2 or q_ids.shape != (num_q,) or g_ids.shape != (num_g,):
        raise DeenError(f"distance matrix {distances.shape} does not fit {q_ids.shape} query "
                        f"and {g_ids.shape} gallery identities")
    if not np.isfinite(distances).all():
        raise DeenError("the distance matrix holds NaN or infinite values")
    if rule != IgnoreRule.NONE and (q_cams is None or g_cams is None):
        raise DeenError(f"the {rule.value} protocol needs query and gallery cameras")
    q_cams = np.zeros(num_q, int) if q_cams is None else np.asarray(q_cams)
    g_cams = np.zeros(num_g, int) if g_cams is None else np.asarray(g_cams)

    # Work in a gallery order grouped by identity: a query's true matches are then one
    # contiguous column range, and per-identity minima are one reduceat.
    by_id = np.argsort(g_ids, kind="stable")
    group_ids, group_start, group_size = np.unique(g_ids[by_id], return_index=True,
                                                   return_counts=True)
    g_ids, g_cams = g_ids[by_id], g_cams[by_id]

    cmc_sum = np.zeros(max_rank)
    ap: list[np.ndarray] = []
    inp: list[np.ndarray] = []
    for start in range(0, num_q, chunk):
        rows = slice(start, start + chunk)
        qi, qc = q_ids[rows], q_cams[rows]
        ignored = ignore_mask(rule, qi, g_ids, qc, g_cams)
        order = _ranked_order(distances[rows][:, by_id], by_id, ignored)
        kept_count = num_g - (np.zeros(len(qi), int) if ignored is None else ignored.sum(axis=1))

        group = np.clip(np.searchsorted(group_ids, qi), 0, len(group_ids) - 1)
        has_id = group_ids[group] == qi
        first_col = np.where(has_id, group_start[group], 0)
        last_col = np.where(has_id, group_start[group] + group_size[group], 0)
        is_match = (order >= first_col[:, None]) & (order < last_col[:, None])
        is_match &= np.arange(num_g)[None, :] < kept_count[:, None]  # ignored sort last
        row, position = np.nonzero(is_match)  # row-major: positions ascend within a row
        if row.size == 0:
            continue
        num_rel = np.bincount(row, minlength=is_match.shape[0])
        valid = np.flatnonzero(num_rel)
        row_start = np.concatenate([[0], np.cumsum(num_rel)[:-1]])
        hit_number = np.arange(row.size) - row_start[row] + 1  # 1st, 2nd, … match of its row
        ap.append(np.bincount(row, hit_number / (position + 1), minlength=len(num_rel))[valid]
                  / num_rel[valid])
        hardest = np.maximum.reduceat(position, row_start[valid]) + 1
        inp.append(num_rel[valid] / hardest)

        first_hit = position[row_start[valid]]  # 0-based rank among kept items
        if dedup_cmc:
            # Rank of the true identity among distinct identities: one plus the number of
            # identities whose best kept item ranks before the first true match.
            rank_of = np.empty_like(order)
            np.put_along_axis(rank_of, order, np.arange(num_g)[None, :].repeat(len(order), 0),
                              axis=1)
            if ignored is not None:
                rank_of[ignored] = num_g
            best = np.minimum.reduceat(rank_of, group_start, axis=1)[valid]
            first_rank = (best < first_hit[:, None]).sum(axis=1) + 1
        else:
            first_rank = first_hit + 1
        cmc_sum += (first_rank[:, None] <= np.arange(1, max_rank + 1)[None, :]).sum(axis=0)

    num_valid = int(sum(len(a) for a in ap))
    if num_valid == 0:
        raise DeenError("no query has a true match in the gallery; nothing to evaluate")
    return Metrics(cmc=cmc_sum / num_valid, mAP=float(np.concatenate(ap).mean()),
                   mINP=float(np.concatenate(inp).mean()), num_queries=num_valid)
