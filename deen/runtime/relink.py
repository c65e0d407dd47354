"""Person ids settled after a run, with the whole run seen (``deen tracks settle``).

Live, :mod:`deen.runtime.identity` decides who each track is from what has been seen so far
and never knows the future. Once a run is over, its tracks can be clustered as a whole
(:func:`settle`): each stream's tracks by their whole appearance, never joining two tracks
seen in one frame, the other stream around the lead stream's persons through the matches.
Numbers from these ids are *offline*: a live system's user never saw them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from deen.modality import Modality
from deen.runtime.identity import calibrated
from deen.runtime.matching import unit


@dataclass(frozen=True)
class TrackRecord:
    """What a finished run knows of one track: its summed unit embeddings and the frames it
    was on."""

    total: np.ndarray
    frames: frozenset[int]


@dataclass(frozen=True)
class _Stream:
    """One stream's tracks with an appearance, as :func:`settle` uses them."""

    ids: list[int]
    similarity: np.ndarray  # cosine similarity of the tracks' appearances
    cannot: np.ndarray  # seen in one frame: two people
    rows: list[int]  # frames each track was on

    @classmethod
    def of(cls, records: dict[int, TrackRecord]) -> _Stream:
        ids = sorted(t for t, r in records.items() if np.any(r.total))
        vectors = np.stack([unit(records[t].total) for t in ids]) if ids else np.zeros((0, 1))
        on: dict[int, list[int]] = {}
        for index, track in enumerate(ids):
            for frame in records[track].frames:
                on.setdefault(frame, []).append(index)
        cannot = np.zeros((len(ids), len(ids)), bool)
        for together in on.values():
            cannot[np.ix_(together, together)] = True
        np.fill_diagonal(cannot, False)
        return cls(ids, vectors @ vectors.T, cannot, [len(records[t].frames) for t in ids])


def _cluster(similarity: np.ndarray, cannot: np.ndarray, threshold: float,
             groups: list[list[int]]) -> list[list[int]]:
    """Constrained average-linkage clustering: starting from ``groups`` (every unit in one),
    repeatedly merge the two clusters whose units are most similar on average, unless any
    two of their units cannot be one person (``cannot``), until no pair reaches
    ``threshold``. Each cluster's best partner is kept and only redone when it was one of
    the merged two, so a merge costs one pass over the clusters, not over all pairs."""
    k = len(groups)
    if not k:
        return []
    sizes = np.array([len(units) for units in groups], float)
    sums = np.stack([similarity[units].sum(0) for units in groups])
    average = np.stack([sums[:, units].sum(1) for units in groups], 1) / np.outer(sizes, sizes)
    hits = np.stack([cannot[units].any(0) for units in groups])
    blocked = np.stack([hits[:, units].any(1) for units in groups], 1)
    np.fill_diagonal(blocked, True)
    merged = [list(units) for units in groups]
    alive = np.ones(k, bool)

    def best_of(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        open_ = np.where(blocked[rows], -np.inf, average[rows])
        index = open_.argmax(1)
        return open_[np.arange(len(rows)), index], index

    best, partner = best_of(np.arange(k))
    while True:
        x = int(np.argmax(best))
        y = int(partner[x])
        if not best[x] >= threshold:
            break
        nx, ny = sizes[x], sizes[y]
        average[x] = average[:, x] = (nx * average[x] + ny * average[y]) / (nx + ny)
        blocked[x] = blocked[:, x] = blocked[x] | blocked[y]
        blocked[y] = blocked[:, y] = True
        blocked[x, x] = True
        sizes[x] += ny
        merged[x] += merged[y]
        alive[y] = False
        best[y] = -np.inf
        stale = np.flatnonzero(alive & ((partner == x) | (partner == y)))
        stale = np.union1d(stale, [x])
        column = np.where(blocked[:, x], -np.inf, average[:, x])
        better = alive & (column > best)
        best[better], partner[better] = column[better], x
        best[stale], partner[stale] = best_of(stale)
    return [merged[g] for g in range(k) if alive[g]]


def settle(tracks: dict[Modality, dict[int, TrackRecord]],
           matched: Counter[tuple[int, int]], lead: Modality | None = Modality.VISIBLE,
           quantile: float = 0.9, floor: float = 0.3, default: float = 0.9,
           min_negatives: int = 30, min_matched: int = 3, min_share: float = 0.4,
           min_rows: int = 5) -> dict[tuple[Modality, int], int]:
    """Person ids for a finished run, decided with everything seen: each track's whole
    appearance, and every pair of tracks seen in one frame (two people).

    Live, :mod:`deen.runtime.identity` decides when a returning person has been seen for a
    moment; here the tracks of a stream are clustered as a whole
    (:func:`_cluster`): the most alike tracks first, never two tracks seen together, until
    no two clusters are alike beyond the ``quantile`` of the similarities of tracks seen
    together, each on at least ``min_rows`` frames (a change of light can start a burst of
    one-frame tracks at once, all alike and none a person). With ``lead`` set, that stream
    is clustered first; a track of the other stream matched across the cameras to a lead
    track in at least ``min_matched`` rows and ``min_share`` of its own rows belongs to
    that track's person (the one with most rows wins when two such tracks were seen
    together), and the rest of that stream is clustered around them by its own
    appearance. ``matched`` counts rows per (visible track, infrared track). Ids are one
    space for both streams: a lead cluster's id is its smallest track id, a follower
    cluster anchored to a lead person takes that person's id, and another follower cluster
    its smallest track id plus one more than the largest lead track id. Tracks without an
    appearance are left out."""
    streams = {m: _Stream.of(records) for m, records in tracks.items()}
    persons: dict[tuple[Modality, int], int] = {}
    order = [lead, *(m for m in tracks if m != lead)] if lead in tracks else list(tracks)
    lead_cluster: dict[int, int] = {}  # lead track → its cluster's person id
    for modality in order:
        stream = streams[modality]
        if not stream.ids:
            continue
        similarity, cannot = stream.similarity, stream.cannot
        lasting = np.array(stream.rows) >= min_rows
        negatives = np.triu(cannot, 1) & lasting[:, None] & lasting[None, :]
        threshold = calibrated(similarity[negatives], quantile, floor, default, min_negatives)
        groups = [[u] for u in range(len(stream.ids))]
        follows = lead is not None and modality != lead and bool(lead_cluster)
        label = np.full(len(stream.ids), -1)  # the lead person a unit is anchored to
        if follows:
            anchors = _anchor(stream, matched, lead, lead_cluster, max(1, min_matched),
                              min_share)
            # Two lead persons are two people: their groups never merge.
            for person, units in anchors.items():
                label[units] = person
            cannot = cannot | ((label[:, None] != label[None, :]) & (label[:, None] >= 0)
                               & (label[None, :] >= 0))
            groups = [*anchors.values(), *([u] for u in np.flatnonzero(label < 0).tolist())]
        offset = max(lead_cluster, default=0) + 1 if follows else 0
        for cluster in _cluster(similarity, cannot, threshold, groups):
            anchored = [int(label[u]) for u in cluster if label[u] >= 0]
            # A follower's person anchored to a lead person is that person; another is its
            # own, with an id no lead person has.
            person = anchored[0] if anchored else offset + min(stream.ids[u] for u in cluster)
            for u in cluster:
                persons[modality, stream.ids[u]] = person
                if modality == lead:
                    lead_cluster[stream.ids[u]] = person
    return persons


def _anchor(stream: _Stream, matched: Counter[tuple[int, int]], lead: Modality,
            lead_cluster: dict[int, int], min_matched: int, min_share: float
            ) -> dict[int, list[int]]:
    """The follower stream's tracks grouped by the lead person they were matched to (lead
    person → units, indices into ``stream.ids``): a track goes with the lead person it was
    matched to in most rows, if enough, unless a track already in that group was seen with
    it."""
    index = {t: u for u, t in enumerate(stream.ids)}
    votes: dict[int, Counter[int]] = {}
    for (visible, infrared), times in matched.items():
        mine, theirs = (infrared, visible) if lead == Modality.VISIBLE else (visible, infrared)
        if mine in index and theirs in lead_cluster:
            votes.setdefault(index[mine], Counter())[lead_cluster[theirs]] += times
    by_person: dict[int, list[int]] = {}
    ranked = sorted(((c.most_common(1)[0][1], u, c.most_common(1)[0][0])
                     for u, c in votes.items()), reverse=True)
    for count, unit_, person in ranked:
        group = by_person.setdefault(person, [])
        if count >= max(min_matched, min_share * stream.rows[unit_]) and \
                not stream.cannot[unit_, group].any():
            group.append(unit_)
    return {person: g for person, g in by_person.items() if g}
