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
from deen.settings import Section, setting

TrackKey = tuple[Modality, int]  # (stream modality, track id)
#: (visible ids, infrared ids) → their mapped distances in person heights (NaN: unknown).
Distances = Callable[[list[int], list[int]], np.ndarray]


@dataclass(frozen=True)
class EmbeddingSettings(Section):
    """Which crops are embedded, and how (:func:`choose_tracks`, the embedding stage)."""

    # One crop per call: a person who walks in waits for one crop's call, not a whole
    # budget's, before their first embedding (a call's time grows with its crops and
    # throughput hardly does): benchmarks/README.md, "Live identity in real time".
    budget: int = setting(1, "crops embedded per round; new tracks first, then the stalest",
                          at_least=1)
    # Memory grows with the batch and CPU throughput hardly does: benchmarks/README.md,
    # "Embedding batch".
    batch: int = setting(2, "crops per model call (the runtime's memory grows with it)",
                         at_least=1)
    min_box_height: int = setting(32, "smaller people are tracked but not embedded", at_least=1)
    level_light: bool = setting(True, "embed crops as if under the stream's first frame's "
                                      "light (deen.runtime.exposure)")


@dataclass(frozen=True)
class MatchingSettings(Section):
    """Cross-camera matching (:class:`CrossCameraMatcher`)."""

    threshold: float = setting(0.5, "least cosine similarity of a visible/infrared pair",
                               at_least=-1.0, at_most=1.0)
    confirm_rounds: int = setting(3, "rounds a pair must hold before it is a match", at_least=1)
    # A match kept after its pair is gone is a wrong row each round: benchmarks/README.md,
    # "Live identity in real time".
    break_rounds: int = setting(2, "rounds without the pair before a match is broken",
                                at_least=1)
    gate: float = setting(0.5, "with a view map: the farthest apart, in person heights, that "
                               "a pair may be", at_least=0.0)
    placed_threshold: float = setting(0.0, "with a view map: least cosine similarity of a pair "
                                           "at corresponding places", at_least=-1.0,
                                      at_most=1.0)
    without_map: bool = setting(False, "also match by appearance alone while there is no view "
                                       "map (off: cameras that watch different places never "
                                       "see one person at one moment)")
    # A standing person is about 0.4 of their height wide; a box wider than half its height
    # is mostly two or three people in one box (a group, a crossing the detector merged),
    # where "this box is that box's person" is wrong for all but one of them at best:
    # benchmarks/README.md, "A match shown only on a box of one person".
    group_width: float = setting(0.5, "a matched track whose box, or whose partner's box, is "
                                      "wider than this share of its height (several people in "
                                      "one box) shows no partner on that frame (the match "
                                      "holds)", above=0.0)


def one_person(box: np.ndarray, group_width: float) -> bool:
    """Whether an x1, y1, x2, y2 ``box`` is narrow enough to hold one standing person, not a
    group of people in one box (wider than ``group_width`` × its height)."""
    return box[2] - box[0] <= group_width * (box[3] - box[1])


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


def choose_tracks(candidates: list[TrackKey], book: AppearanceBook, budget: int,
                  settled: Callable[[TrackKey], bool] = lambda key: False) -> list[TrackKey]:
    """Up to ``budget`` of the ``candidates``: tracks never embedded first, then those whose
    person is not decided yet (``settled`` says which are), then the rest; within each,
    those embedded longest ago first."""
    def priority(key: TrackKey) -> tuple[int, float]:
        entry = book.entries.get(key)
        if entry is None:
            return (0, 0.0)
        return (2 if settled(key) else 1, entry.last_embedded)

    return sorted(candidates, key=priority)[:budget]


@dataclass(frozen=True)
class MatchEvent:
    kind: EventKind  # MATCH (confirmed) or UNMATCH (broken)
    visible: int
    infrared: int
    similarity: float
    reason: str = ""


class CrossCameraMatcher:
    """Visible/infrared pairs from this round's appearances, confirmed over rounds.

    With the cameras' view map (:mod:`deen.runtime.registration`), only pairs whose mapped
    boxes are within ``gate`` person heights of each other may match, and then from
    ``placed_threshold`` on: where they are is most of the evidence."""

    def __init__(self, settings: MatchingSettings = MatchingSettings()) -> None:
        self.settings = settings
        self.streaks: dict[tuple[int, int], int] = {}  # candidate pair → rounds in a row
        self.confirmed: dict[tuple[int, int], int] = {}  # pair → rounds missing

    def assign(self, book: AppearanceBook, distances: Distances | None = None
               ) -> dict[tuple[int, int], float]:
        """This round's one-to-one assignment: (visible id, infrared id) → similarity.

        ``distances`` (when the cameras' view map is known) gives each pair's mapped
        distance in person heights, NaN for pairs never seen together."""
        v_ids, v = book.vectors(Modality.VISIBLE)
        r_ids, r = book.vectors(Modality.INFRARED)
        if not v_ids or not r_ids or (distances is None and not self.settings.without_map):
            return {}
        similarity = raw = v @ r.T
        threshold = self.settings.threshold
        if distances is not None:
            apart = distances(v_ids, r_ids)
            placed = np.nan_to_num(apart, nan=np.inf) <= self.settings.gate
            # Far-apart pairs cannot win; among the others, nearer is better.
            similarity = np.where(placed, similarity - np.nan_to_num(apart, nan=0.0), -10.0)
            threshold = self.settings.placed_threshold
        rows, cols = linear_sum_assignment(-similarity)
        return {(v_ids[i], r_ids[j]): float(raw[i, j])
                for i, j in zip(rows, cols, strict=True) if similarity[i, j] >= threshold}

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
            elif self.streaks[pair] >= self.settings.confirm_rounds:
                # A new match replaces any confirmed match of either track.
                for old in [p for p in self.confirmed if p[0] == pair[0] or p[1] == pair[1]]:
                    del self.confirmed[old]
                    events.append(MatchEvent(EventKind.UNMATCH, *old, float("nan"), "replaced"))
                self.confirmed[pair] = 0
                events.append(MatchEvent(EventKind.MATCH, *pair, similarity))
        for pair in [p for p in self.confirmed if p not in current]:
            self.confirmed[pair] += 1
            if self.confirmed[pair] >= self.settings.break_rounds:
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
