"""Which tracks to embed, each track's appearance, and cross-camera matching.

A track's appearance is the normalised mean of the (normalised) embeddings of its crops,
so one bad crop does not decide a match. Visible and infrared tracks are compared by cosine
similarity (the dot product of these means; spec §6: the reference similarity up to the
norms), assigned one-to-one with SciPy's Hungarian solver, and a pair counts as a match only
after it has held for ``confirm_rounds`` rounds in a row; it is broken after
``break_rounds`` rounds without it, or when either track ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from deen.modality import Modality
from deen.runtime.events import EventKind

TrackKey = tuple[Modality, int]  # (stream modality, track id)
#: (visible ids, infrared ids) → their mapped distances in person heights (NaN: unknown).
Distances = Callable[[list[int], list[int]], np.ndarray]

#: Documented defaults (README, ``deen run --help``).
DEFAULT_MATCH_THRESHOLD = 0.5
DEFAULT_CONFIRM_ROUNDS = 3
DEFAULT_BREAK_ROUNDS = 5
DEFAULT_EMBED_BUDGET = 8
#: Crops per model call (the budget is embedded in several calls when larger). Memory grows
#: with it and CPU throughput hardly does (OpenVINO int8 at 384×144: 6.7 images/s at batch 1,
#: 6.8 at batch 8 on AVX2; 11.3 and 12.1 on AVX-512 VNNI). The 2-minute soak of `deen run`
#: on AVX2 peaked at 792 MiB with 4, 665 MiB with 2 (p95 latency 36 and 53 ms).
DEFAULT_EMBED_BATCH = 2


def unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


@dataclass
class Appearance:
    """Running mean of a track's unit embeddings; ``vector`` is its unit direction."""

    total: np.ndarray
    count: int = 1
    last_embedded: float = 0.0  # time.monotonic() of the newest crop

    @property
    def vector(self) -> np.ndarray:
        return unit(self.total)

    def add(self, embedding: np.ndarray, when: float) -> None:
        self.total = self.total + unit(embedding)
        self.count += 1
        self.last_embedded = when


@dataclass
class AppearanceBook:
    """Appearances of the live tracks of both streams."""

    entries: dict[TrackKey, Appearance] = field(default_factory=dict)

    def add(self, key: TrackKey, embedding: np.ndarray, when: float) -> None:
        if key in self.entries:
            self.entries[key].add(embedding, when)
        else:
            self.entries[key] = Appearance(unit(embedding.astype(np.float64)), 1, when)

    def drop(self, key: TrackKey) -> None:
        self.entries.pop(key, None)

    def vectors(self, modality: Modality) -> tuple[list[int], np.ndarray]:
        ids = sorted(track for (m, track) in self.entries if m == modality)
        if not ids:
            return [], np.zeros((0, 0))
        return ids, np.stack([self.entries[modality, t].vector for t in ids])


def choose_tracks(candidates: list[TrackKey], book: AppearanceBook, budget: int) -> list[TrackKey]:
    """Up to ``budget`` of the ``candidates`` (tracks seen in this round's frames): tracks
    never embedded first, then those embedded longest ago."""
    def priority(key: TrackKey) -> tuple[int, float]:
        entry = book.entries.get(key)
        return (0, 0.0) if entry is None else (1, entry.last_embedded)

    return sorted(candidates, key=priority)[:budget]


@dataclass(frozen=True)
class MatchEvent:
    kind: EventKind  # MATCH (confirmed) or UNMATCH (broken)
    visible: int
    infrared: int
    similarity: float
    reason: str = ""


@dataclass
class CrossCameraMatcher:
    threshold: float = DEFAULT_MATCH_THRESHOLD
    confirm_rounds: int = DEFAULT_CONFIRM_ROUNDS
    break_rounds: int = DEFAULT_BREAK_ROUNDS
    margin: float = 0.0  # an assigned pair must beat each one's runner-up by this much
    hold: float = 0.0  # hysteresis: a confirmed pair is favoured by this much and kept down
    #                    to threshold - hold, so that small wobbles do not break it
    # With the cameras' view map (deen.runtime.registration): only pairs whose mapped boxes
    # are within ``gate`` person heights of each other may match, and then from
    # ``placed_threshold`` on: where they are is most of the evidence.
    gate: float = 0.5
    placed_threshold: float = 0.0
    streaks: dict[tuple[int, int], int] = field(default_factory=dict)  # candidate pair → rounds
    confirmed: dict[tuple[int, int], int] = field(default_factory=dict)  # pair → rounds missing

    def assign(self, book: AppearanceBook, distances: Distances | None = None
               ) -> dict[tuple[int, int], float]:
        """This round's one-to-one assignment: (visible id, infrared id) → similarity.

        ``distances`` (when the cameras' view map is known) gives each pair's mapped
        distance in person heights, NaN for pairs never seen together."""
        v_ids, v = book.vectors(Modality.VISIBLE)
        r_ids, r = book.vectors(Modality.INFRARED)
        if not v_ids or not r_ids:
            return {}
        similarity = raw = v @ r.T
        threshold = self.threshold
        if distances is not None:
            apart = distances(v_ids, r_ids)
            placed = np.nan_to_num(apart, nan=np.inf) <= self.gate
            # Far-apart pairs cannot win; among the others, nearer is better.
            similarity = np.where(placed, similarity - np.nan_to_num(apart, nan=0.0), -10.0)
            threshold = self.placed_threshold
        favoured = np.zeros_like(similarity)
        if self.hold > 0:
            v_index = {t: i for i, t in enumerate(v_ids)}
            r_index = {t: j for j, t in enumerate(r_ids)}
            for a, b in self.confirmed:
                if a in v_index and b in r_index:
                    favoured[v_index[a], r_index[b]] = self.hold
        rows, cols = linear_sum_assignment(-(similarity + favoured))
        out = {}
        for i, j in zip(rows, cols, strict=True):
            if similarity[i, j] + favoured[i, j] < threshold:
                continue
            if self.margin > 0 and not favoured[i, j]:
                rivals = np.concatenate([np.delete(similarity[i], j),
                                         np.delete(similarity[:, j], i)])
                if len(rivals) and similarity[i, j] - rivals.max() < self.margin:
                    continue
            out[(v_ids[i], r_ids[j])] = float(raw[i, j])
        return out

    def update(self, book: AppearanceBook, ended: set[TrackKey] = frozenset(),
               distances: Distances | None = None) -> list[MatchEvent]:
        """One round: break matches of ended tracks, then assign and count streaks."""
        events: list[MatchEvent] = []
        for pair in list(self.confirmed):
            if (Modality.VISIBLE, pair[0]) in ended or (Modality.INFRARED, pair[1]) in ended:
                del self.confirmed[pair]
                events.append(MatchEvent(EventKind.UNMATCH, *pair, float("nan"), "track ended"))
        current = self.assign(book, distances)
        self.streaks = {pair: self.streaks.get(pair, 0) + 1 for pair in current}
        for pair, similarity in current.items():
            if pair in self.confirmed:
                self.confirmed[pair] = 0
            elif self.streaks[pair] >= self.confirm_rounds:
                # A new match replaces any confirmed match of either track.
                for old in [p for p in self.confirmed if p[0] == pair[0] or p[1] == pair[1]]:
                    del self.confirmed[old]
                    events.append(MatchEvent(EventKind.UNMATCH, *old, float("nan"), "replaced"))
                self.confirmed[pair] = 0
                events.append(MatchEvent(EventKind.MATCH, *pair, similarity))
        for pair in [p for p in self.confirmed if p not in current]:
            self.confirmed[pair] += 1
            if self.confirmed[pair] >= self.break_rounds:
                del self.confirmed[pair]
                events.append(MatchEvent(EventKind.UNMATCH, *pair, float("nan"),
                                         "no longer similar"))
        return events

    def partner(self, key: TrackKey) -> int | None:
        for v, r in self.confirmed:
            if key == (Modality.VISIBLE, v):
                return r
            if key == (Modality.INFRARED, r):
                return v
        return None
