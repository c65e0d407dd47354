"""One person, one id in a stream, across leaving and coming back.

The tracker ends a track when its person leaves the view (or hides behind something for
longer than it waits), and the person comes back as a new track. :class:`Relinker` keeps
the appearance of each person who left, and when a new track has been embedded a few times,
gives it the person id of the one who left whose appearance it shares, if the match is
clear: at least the threshold and ahead of the runner-up by ``margin``. A track that was not
clear is compared again each time its embeddings have doubled, as its appearance firms up.
The other stream follows the lead stream (visible by default): a track matched across the
cameras to a track that was linked takes the link's partner (:meth:`Relinker.paired`).

The threshold is calibrated from the model itself: two tracks live in the same stream at
the same moment are certainly different people, so their similarities are the model's
negatives for this camera; the threshold is their ``quantile`` (at least ``floor``), and
``default`` until ``min_negatives`` have been seen. Outputs that name people (the
tracks files) use these person ids, settled again when the run ends by :func:`settle`,
which sees the whole run; events keep track ids.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from deen.modality import Modality, parse_modality
from deen.runtime.matching import AppearanceBook, TrackKey, unit
from deen.settings import Section, setting


def calibrated(negatives: np.ndarray, quantile: float, floor: float, default: float,
               min_negatives: int) -> float:
    """A threshold from the similarities of tracks seen together (certainly different
    people): their ``quantile``, at least ``floor``; ``default`` with fewer than
    ``min_negatives`` of them."""
    if negatives.size < min_negatives:
        return default
    return max(floor, float(np.quantile(negatives, quantile)))


@dataclass
class Departed:
    """A person who left: their id, summed unit embeddings and when they were last seen."""

    person: int
    total: np.ndarray
    left_at: float
    seen_with: frozenset[int] = frozenset()  # persons live beside them: certainly others


@dataclass(frozen=True)
class RelinkSettings(Section):
    """One person id per person in a stream across leaving and coming back (:class:`Relinker`)."""

    enabled: bool = setting(True, "keep a returning person's id when their appearance clearly "
                                  "matches someone who left (else a new id per visit)")
    lead: str = setting("visible", "the stream whose relinks the other follows through "
                                   "cross-camera matches (none: each stream on its own)",
                        choices=("visible", "infrared", "none"))
    window_s: float = setting(600.0, "how long a person who left is remembered, seconds",
                              above=0.0)
    min_embeddings: int = setting(3, "a new track's embeddings before it is compared",
                                  at_least=1)
    margin: float = setting(0.05, "the best person who left must beat the runner-up by this",
                            at_least=0.0, at_most=2.0)
    again: float = setting(2.0, "an unlinked track is compared again when its embeddings have "
                                "grown this many times (at most 1: once only)", above=0.0)
    quantile: float = setting(0.99, "the threshold: this quantile of the similarities of "
                                    "people seen together", at_least=0.0, at_most=1.0)
    floor: float = setting(0.5, "the threshold is at least this", at_least=-1.0, at_most=1.0)
    default: float = setting(0.9, "the threshold until min_negatives similarities are seen",
                             at_least=-1.0, at_most=1.0)
    min_negatives: int = setting(30, "similarities of people seen together before the "
                                     "threshold is calibrated", at_least=1)
    follow_after: int = setting(8, "embeddings after which a track of the other stream never "
                                   "matched to the lead relinks on its own", at_least=1)

    @property
    def lead_modality(self) -> Modality | None:
        return None if self.lead == "none" else parse_modality(self.lead)


@dataclass
class Relinker:
    settings: RelinkSettings = field(default_factory=RelinkSettings)
    followers: set[TrackKey] = field(default_factory=set)  # matched to a lead track
    person: dict[TrackKey, int] = field(default_factory=dict)  # decided tracks → person id
    departed: dict[Modality, list[Departed]] = field(default_factory=dict)
    negatives: dict[Modality, deque[float]] = field(default_factory=dict)
    inherited: dict[TrackKey, np.ndarray] = field(default_factory=dict)  # old person's total
    compared: dict[TrackKey, int] = field(default_factory=dict)  # embeddings at last compare
    # A person's partners in the other stream, from confirmed cross-camera matches:
    # (stream, person) → the other stream's persons, counted over matched rounds.
    partners: dict[tuple[Modality, int], Counter[int]] = field(default_factory=dict)
    active: dict[Modality, list[int]] = field(default_factory=dict)  # last round's live tracks
    together: dict[tuple[Modality, int], set[int]] = field(default_factory=dict)  # co-live persons

    @property
    def lead(self) -> Modality | None:
        """With a lead, a track of the other stream matched to a lead track takes its person
        from that track's link (:meth:`paired`) and never compares its own appearance; one
        never matched compares it from ``follow_after`` embeddings on."""
        return self.settings.lead_modality

    def person_of(self, key: TrackKey) -> int:
        """The person id of a track: its own track id until it is linked to someone who
        left."""
        return self.person.get(key, key[1])

    def threshold(self, modality: Modality) -> float:
        seen = self.negatives.get(modality, ())
        s = self.settings
        return calibrated(np.fromiter(seen, float), s.quantile, s.floor, s.default,
                          s.min_negatives)

    def observe(self, book: AppearanceBook, active: dict[Modality, list[int]],
                now: float) -> list[tuple[TrackKey, int]]:
        """One round: learn negatives from tracks live together, then link new tracks that
        are ready. Returns the (track, person) links made this round."""
        links = []
        self.active = {m: list(ids) for m, ids in active.items()}
        for modality, ids in active.items():
            persons = {self.person_of((modality, t)) for t in ids}
            for person in persons:
                self.together.setdefault((modality, person), set()).update(persons - {person})
            least = self.settings.min_embeddings if self.lead in (None, modality) else \
                max(self.settings.min_embeddings, self.settings.follow_after)
            ready = [t for t in ids if (modality, t) in book.entries
                     and book.entries[modality, t].count >= least]
            compare = [t for t in ready if (modality, t) not in self.followers]
            if len(ready) >= 2:
                vectors = np.stack([book.entries[modality, t].vector for t in ready])
                similarity = vectors @ vectors.T
                upper = similarity[np.triu_indices(len(ready), 1)]
                self.negatives.setdefault(modality, deque(maxlen=4000)).extend(upper.tolist())
            memory = [d for d in self.departed.get(modality, []) if now - d.left_at
                      <= self.settings.window_s]
            self.departed[modality] = memory
            taken = {self.person_of((modality, t)) for t in ids}
            for track in compare:
                key = (modality, track)
                count = book.entries[key].count
                last = self.compared.get(key)
                if key in self.person or (last is not None and (
                        self.settings.again <= 1 or count < self.settings.again * last)):
                    continue
                candidates = [d for d in memory if d.person not in taken]
                self.compared[key] = count
                if not candidates:
                    continue
                scores = np.array([unit(d.total) @ book.entries[key].vector
                                   for d in candidates])
                order = np.argsort(-scores)
                best = scores[order[0]]
                # The runner-up that counts is one certainly not the best's person (seen
                # beside them): a person once missed is in memory twice, and the two
                # copies must not veto each other.
                first = candidates[order[0]]
                others = [scores[k] for k in order[1:]
                          if candidates[k].person in first.seen_with]
                runner_up = others[0] if others else -1.0
                if best >= self.threshold(modality) and best - runner_up >= self.settings.margin:
                    self._link(key, first)
                    taken.add(first.person)
                    links.append((key, first.person))
        return links

    def paired(self, pairs: list[tuple[int, int]]) -> list[tuple[TrackKey, int]]:
        """This round's confirmed (visible track, infrared track) matches.

        A person is the same person in both streams. When the ``lead`` stream's track of a
        pair has been linked to someone who left, and that person's partner (the other
        stream's person most often matched with them) left too, the other track is that
        partner: the lead modality recognises a returning person more surely than the other
        does alone (infrared people look much alike), and one sure link brings the other.
        Then the pair's persons count as partners for one more round. Returns the links
        made."""
        links = []
        for visible, infrared in pairs:
            keys = ((Modality.VISIBLE, visible), (Modality.INFRARED, infrared))
            for known, unknown in (keys, keys[::-1]):
                if known[0] != self.lead or known not in self.person or unknown in self.person:
                    continue
                counts = self.partners.get((known[0], self.person[known]))
                if not counts:
                    continue
                partner = counts.most_common(1)[0][0]
                stream = unknown[0]
                taken = {self.person_of((stream, t)) for t in self.active.get(stream, [])}
                chosen = next((d for d in self.departed.get(stream, [])
                               if d.person == partner), None)
                if chosen is None or partner in taken:
                    continue
                self._link(unknown, chosen)
                links.append((unknown, chosen.person))
            if self.lead is not None:
                self.followers.update(k for k in keys if k[0] != self.lead)
            v, r = self.person_of(keys[0]), self.person_of(keys[1])
            self.partners.setdefault((Modality.VISIBLE, v), Counter())[r] += 1
            self.partners.setdefault((Modality.INFRARED, r), Counter())[v] += 1
        return links

    def _link(self, key: TrackKey, chosen: Departed) -> None:
        """Track ``key`` is ``chosen``, who left: it takes their id, what was seen of them
        and who was seen beside them, and they are no longer waited for."""
        self.person[key] = chosen.person
        self.inherited[key] = chosen.total
        self.together.setdefault((key[0], chosen.person), set()).update(chosen.seen_with)
        self.departed[key[0]].remove(chosen)

    def end(self, key: TrackKey, book: AppearanceBook, now: float) -> None:
        """A track ended: remember its person (with everything seen of them) if it has an
        appearance."""
        entry = book.entries.get(key)
        inherited = self.inherited.pop(key, np.zeros(0))
        self.compared.pop(key, None)
        self.followers.discard(key)
        person = self.person.pop(key, key[1])
        if entry is None:
            return
        total = entry.total + (inherited if inherited.size else 0)
        seen_with = frozenset(self.together.pop((key[0], person), set()))
        self.departed.setdefault(key[0], []).append(Departed(person, total, now, seen_with))


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

    Online, :class:`Relinker` decides when a returning person has been seen for a moment
    and never takes it back; here the tracks of a stream are clustered as a whole
    (:func:`_cluster`): the most alike tracks first, never two tracks seen together, until
    no two clusters are alike beyond the ``quantile`` of the similarities of tracks seen
    together, each on at least ``min_rows`` frames (a change of light can start a burst of
    one-frame tracks at once, all alike and none a person). With ``lead`` set, that stream
    is clustered first; a track of the other stream matched across the cameras to a lead
    track in at least ``min_matched`` rows and ``min_share`` of its own rows belongs to
    that track's person (the one with most rows wins when two such tracks were seen
    together), and the rest of that stream is clustered around them by its own
    appearance. ``matched`` counts rows per (visible track, infrared track). A cluster's id
    is its smallest track id; tracks without an appearance are left out."""
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
        if follows:
            groups = _anchor(stream, matched, lead, lead_cluster, max(1, min_matched),
                             min_share)
            # Two lead persons are two people: their groups never merge.
            label = np.full(len(stream.ids), -1)
            for g, units in enumerate(groups):
                label[units] = g
            cannot = cannot | ((label[:, None] != label[None, :]) & (label[:, None] >= 0)
                               & (label[None, :] >= 0))
            groups += [[u] for u in np.flatnonzero(label < 0).tolist()]
        for cluster in _cluster(similarity, cannot, threshold, groups):
            person = min(stream.ids[u] for u in cluster)
            for u in cluster:
                persons[modality, stream.ids[u]] = person
                if modality == lead:
                    lead_cluster[stream.ids[u]] = person
    return persons


def _anchor(stream: _Stream, matched: Counter[tuple[int, int]], lead: Modality,
            lead_cluster: dict[int, int], min_matched: int, min_share: float
            ) -> list[list[int]]:
    """The follower stream's tracks grouped by the lead person they were matched to (units
    are indices into ``stream.ids``): a track goes with the lead person it was matched to
    in most rows, if enough, unless a track already in that group was seen with it."""
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
    return [g for g in by_person.values() if g]
