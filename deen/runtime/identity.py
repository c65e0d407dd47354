"""Who each track is: one person id across visits, streams and places, decided live.

A tracker's track ends when its person leaves the view (or hides for longer than it waits),
and the person comes back as a new track; two cameras see one person as two tracks.
:class:`Identities` gives every track a **person id** from its first event and keeps one id
per person:

- a new track starts as a new person;
- a confirmed match across the cameras (overlapping views, :mod:`deen.runtime.matching`) is
  one person: both tracks carry one id (the lead stream's, unless the other track's person
  was known before and this one is new);
- a track whose appearance clearly matches a person who is in no view now takes that
  person's id: a person seen before in its own stream (a returning person), or one seen only
  by the other camera (cameras at different places), compared across the modalities.
  "Clearly": at least the calibrated threshold and ahead of the runner-up (a person
  certainly someone else) by ``margin``. A track that is not clear waits and is compared
  again each time its embeddings have grown ``again`` times: deciding late is better than
  deciding wrong.

Thresholds are calibrated from the model on these cameras: two tracks live in one stream at
one moment are two people, so their similarities are the stream's negatives, and the
threshold is their ``quantile``; across the modalities, the negatives are visible/infrared
pairs certainly apart (far apart under the cameras' view map, or any two tracks live at
once when the cameras watch different places). With views overlapping and a map known, a
track of the other stream waits ``follow_after`` embeddings for a match before it compares
its own appearance (infrared people look alike; a match to the lead stream is surer).

Each change of a live track's person is returned by :meth:`Identities.update`, so that an
event says so: nothing is rewritten silently. A new track whose person is not decided yet is
*held* (:meth:`Identities.held`) for up to ``hold_s``: until its look, or that of the other
stream's track joined with it, has been compared with the people seen before and either
linked or found like no one (nobody within ``unsure`` of the threshold), nothing about it is
announced, so that a returning person is not shown under a fresh id for their first seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from deen.modality import Modality, parse_modality
from deen.runtime.matching import AppearanceBook, TrackKey, unit
from deen.settings import Section, setting

#: Pairs of certainly different people kept per kind for the thresholds (the newest).
NEGATIVE_PAIRS = 2000


def calibrated(negatives: np.ndarray, quantile: float, floor: float, default: float,
               min_negatives: int) -> float:
    """A threshold from the similarities of certainly different people: their
    ``quantile``, at least ``floor``; ``default`` with fewer than ``min_negatives``."""
    if negatives.size < min_negatives:
        return default
    return max(floor, float(np.quantile(negatives, quantile)))


@dataclass(frozen=True)
class RelinkSettings(Section):
    """One person id per person across visits, streams and places (:class:`Identities`)."""

    enabled: bool = setting(True, "give a track the id of a person seen before when its "
                                  "appearance clearly matches them (else: a new id per "
                                  "visit; matches still join the streams)")
    lead: str = setting("visible", "the stream whose person a cross-camera match keeps when "
                                   "both tracks were known (none: the older person)",
                        choices=("visible", "infrared", "none"))
    window_s: float = setting(600.0, "how long a person who left is remembered, seconds",
                              above=0.0)
    min_embeddings: int = setting(1, "a new track's embeddings before it is compared",
                                  at_least=1)
    margin: float = setting(0.05, "the best person must beat the runner-up by this",
                            at_least=0.0, at_most=2.0)
    again: float = setting(2.0, "a track not linked is compared again when its embeddings "
                                "have grown this many times (at most 1: once only)",
                           above=0.0)
    quantile: float = setting(0.99, "the threshold in a stream: this quantile of the "
                                    "similarities of people seen together", at_least=0.0,
                              at_most=1.0)
    floor: float = setting(0.5, "the threshold in a stream is at least this", at_least=-1.0,
                           at_most=1.0)
    default: float = setting(0.9, "the threshold in a stream until min_negatives "
                                  "pairs are seen", at_least=-1.0, at_most=1.0)
    min_negatives: int = setting(30, "pairs of certainly different people before a "
                                     "threshold is calibrated", at_least=1)
    follow_after: int = setting(4, "with a view map: embeddings a track of the other stream "
                                   "waits for a match before it compares its own look",
                                at_least=1)
    place_join: bool = setting(True, "with a view map: a new track alone at the place of one "
                                     "track of the other stream is that track's person at once")
    # As high as one stream's own quantile: at 0.9, wrong links of two people back in both
    # views cost up to 10 points of IDF1 on a scene (benchmarks/README.md, "Announcing a
    # track once its person is decided").
    joint_quantile: float = setting(0.99, "a person seen by both cameras, back in both: the "
                                         "quantile each stream's look must reach when both "
                                         "agree on who it is", at_least=0.0, at_most=1.0)
    cross: bool = setting(True, "link a track to a person seen only by the other camera, by "
                                "appearance across the modalities")
    cross_quantile: float = setting(0.99, "the cross-modality threshold: this quantile of the "
                                          "similarities of visible/infrared pairs certainly "
                                          "apart", at_least=0.0, at_most=1.0)
    cross_floor: float = setting(0.3, "the cross-modality threshold is at least this",
                                 at_least=-1.0, at_most=1.0)
    cross_default: float = setting(2.0, "the cross-modality threshold until cross_min_negatives "
                                        "pairs are seen (above 1: no cross link until then)",
                                   at_least=-1.0, at_most=2.0)
    cross_min_negatives: int = setting(30, "visible/infrared pairs certainly apart before the "
                                           "cross-modality threshold is calibrated", at_least=1)
    cross_margin: float = setting(0.1, "across the modalities, the best person must beat the "
                                       "runner-up by this", at_least=0.0, at_most=2.0)
    hold_s: float = setting(1.5, "a new track is announced (its events, rows and boxes) "
                                 "once its person is decided, at the latest after this "
                                 "many seconds (0: at once)", at_least=0.0)
    unsure: float = setting(0.2, "a compare that links no one but found a person within "
                                 "this of the threshold leaves the track undecided (held) "
                                 "until a later compare decides (0: any compare decides)",
                            at_least=0.0, at_most=2.0)

    @property
    def lead_modality(self) -> Modality | None:
        return None if self.lead == "none" else parse_modality(self.lead)


class Reason(str, Enum):
    """Why a track's person changed (the ``reason`` of a ``person_changed`` event)."""

    RELINKED = "relinked"  # its look matches a person seen before in its own stream
    CROSS_RELINKED = "cross-relinked"  # … a person seen only by the other camera
    MATCHED = "matched"  # matched across the cameras to the other stream's track

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Change:
    """A live track's person changed."""

    key: TrackKey
    previous: int
    person: int
    reason: Reason
    similarity: float | None = None


@dataclass
class Person:
    """Everything known of one person: the summed unit embeddings of their ended tracks per
    modality, their live track in each stream, when they were last seen, and the persons seen
    beside them in one stream (certainly others)."""

    id: int
    totals: dict[Modality, np.ndarray] = field(default_factory=dict)
    live: dict[Modality, TrackKey] = field(default_factory=dict)
    left: float = float("-inf")
    seen_with: set[int] = field(default_factory=set)
    known: bool = False  # seen on an earlier track (remembered) or matched across the cameras


def _other(modality: Modality) -> Modality:
    return Modality.INFRARED if modality == Modality.VISIBLE else Modality.VISIBLE


@dataclass
class Identities:
    """The person id of every live track (:meth:`person_of`), updated each round."""

    settings: RelinkSettings = field(default_factory=RelinkSettings)
    persons: dict[int, Person] = field(default_factory=dict)
    track_person: dict[TrackKey, int] = field(default_factory=dict)
    linked: set[TrackKey] = field(default_factory=set)  # linked to a person seen before
    matched: set[TrackKey] = field(default_factory=set)  # matched across the cameras
    placed: set[TrackKey] = field(default_factory=set)  # joined by place before a match
    compared: dict[TrackKey, int] = field(default_factory=dict)  # embeddings at last compare
    unsure: set[TrackKey] = field(default_factory=set)  # compared, someone nearly clear
    started: dict[TrackKey, float] = field(default_factory=dict)  # capture time of its start
    # Per kind (a stream's modality name, or "cross"): each pair of tracks certainly two
    # people → their newest similarity. One value per pair, not per round: a pair seen
    # together for a minute is one observation, not six hundred.
    negatives: dict[str, dict[tuple[int, int], float]] = field(default_factory=dict)
    next_id: int = 1

    # -- reading ---------------------------------------------------------------------------
    def person_of(self, key: TrackKey) -> int:
        return self.track_person[key]

    def held(self, key: TrackKey, now: float) -> bool:
        """Whether the live track's person is still undecided and may wait to be announced:
        neither the track nor the other stream's track joined with it (matched, or at its
        place) has been linked, or compared and found like no one seen before (a look within
        ``unsure`` of the threshold is not decided), and it started less than ``hold_s``
        ago. A returning person's first seconds under a fresh id are a wrong id on every
        row; held, they are no id at all."""
        s = self.settings
        if not s.enabled or s.hold_s <= 0 or key not in self.track_person:
            return False
        partner = self.persons[self.track_person[key]].live.get(_other(key[0]))
        if any(k in self.linked or (k in self.compared and k not in self.unsure)
               for k in (key, partner)):
            return False
        return now - self.started[key] < s.hold_s

    def settled(self, key: TrackKey) -> bool:
        """Whether the track's person is decided (linked by its look, or matched and
        following the lead stream): it needs embeddings less than an undecided track."""
        return key in self.linked or (key in self.matched
                                      and key[0] != self.settings.lead_modality)

    def threshold(self, kind: Modality | str, quantile: float | None = None) -> float:
        """The calibrated threshold of ``kind`` (a stream's modality, or ``"cross"``), at
        its setting's quantile or at ``quantile``."""
        s = self.settings
        if kind == "cross":
            seen = self.negatives.get("cross", {})
            return calibrated(np.fromiter(seen.values(), float), quantile or s.cross_quantile,
                              s.cross_floor, s.cross_default, s.cross_min_negatives)
        seen = self.negatives.get(Modality(kind).name, {})
        return calibrated(np.fromiter(seen.values(), float), quantile or s.quantile, s.floor,
                          s.default, s.min_negatives)

    # -- the round -------------------------------------------------------------------------
    def start(self, key: TrackKey, now: float) -> int:
        """A new track, started at capture time ``now``: a new person."""
        person = Person(self.next_id)
        self.next_id += 1
        person.live[key[0]] = key
        self.persons[person.id] = person
        self.track_person[key] = person.id
        self.started[key] = now
        return person.id

    def end(self, key: TrackKey, book: AppearanceBook, now: float) -> int:
        """A track ended: its person remembers its appearance. Returns the person id."""
        pid = self.track_person.pop(key)
        person = self.persons[pid]
        person.live.pop(key[0], None)
        person.left = max(person.left, now)
        entry = book.entries.get(key)
        if entry is not None:
            old = person.totals.get(key[0])
            person.totals[key[0]] = entry.total.copy() if old is None else old + entry.total
            person.known = True
        elif not person.totals and not person.live:
            del self.persons[pid]  # never embedded and gone: nothing to remember
        self.linked.discard(key)
        self.matched.discard(key)
        self.placed.discard(key)
        self.compared.pop(key, None)
        self.unsure.discard(key)
        self.started.pop(key, None)
        return pid

    def update(self, book: AppearanceBook, active: dict[Modality, list[int]], now: float,
               matches: list[tuple[int, int]], apart: dict[tuple[int, int], bool] | None,
               follow: bool, near: Callable[[TrackKey], TrackKey | None] | None = None
               ) -> list[Change]:
        """One round: learn who was seen together, join matched tracks, then link the
        undecided tracks that are ready. ``matches`` are the confirmed (visible, infrared)
        track pairs; ``apart`` says, for each co-live (visible, infrared) pair, whether
        the two are certainly different people (None: not known); ``follow``: a match is
        possible (a view map), so the other stream's tracks wait for one; ``near`` gives a
        track's only counterpart at the corresponding place in the other stream (under the
        view map), if it has one."""
        for modality, ids in active.items():
            for track in ids:
                if (modality, track) not in self.track_person:
                    self.start((modality, track), now)
        self._learn(book, active, apart)
        changes = [c for v, i in matches for c in self._join(v, i)]
        if near is not None:
            changes += self._place(active, near)
        if self.settings.enabled:
            changes += self._relink(book, active, now, follow)
        return changes

    def _learn(self, book: AppearanceBook, active: dict[Modality, list[int]],
               apart: dict[tuple[int, int], bool] | None) -> None:
        """Persons live together in a stream are others; their tracks' similarities (and
        those of visible/infrared pairs certainly apart) calibrate the thresholds."""
        least = self.settings.min_embeddings
        ready: dict[Modality, list[int]] = {}
        for modality, ids in active.items():
            pids = {self.track_person[modality, t] for t in ids}
            for pid in pids:
                self.persons[pid].seen_with.update(pids - {pid})
            ready[modality] = [t for t in ids if (modality, t) in book.entries
                               and book.entries[modality, t].count >= least]
            tracks = ready[modality]
            if len(tracks) >= 2:
                vectors = np.stack([book.entries[modality, t].vector for t in tracks])
                rows, cols = np.triu_indices(len(tracks), 1)
                similar = (vectors @ vectors.T)[rows, cols]
                self._negative(modality.name, [(tracks[a], tracks[b]) for a, b in
                                               zip(rows.tolist(), cols.tolist(), strict=True)],
                               similar)
        if apart:
            pairs = [(v, i) for v in ready.get(Modality.VISIBLE, [])
                     for i in ready.get(Modality.INFRARED, []) if apart.get((v, i))]
            if pairs:
                self._negative("cross", pairs, np.array([
                    book.entries[Modality.VISIBLE, v].vector
                    @ book.entries[Modality.INFRARED, i].vector for v, i in pairs]))

    def _negative(self, kind: str, pairs: list[tuple[int, int]], values: np.ndarray) -> None:
        """Each pair's newest similarity; the oldest pairs are forgotten beyond
        :data:`NEGATIVE_PAIRS`."""
        seen = self.negatives.setdefault(kind, {})
        for pair, value in zip(pairs, values.tolist(), strict=True):
            seen.pop(pair, None)
            seen[pair] = value
        while len(seen) > NEGATIVE_PAIRS:
            del seen[next(iter(seen))]

    def _join(self, visible: int, infrared: int, confirmed: bool = True) -> list[Change]:
        """Both tracks are one person (a confirmed match, or ``confirmed=False``: at one
        place under the view map). The person kept is the one known before when only one
        was; else the lead stream's (or the older)."""
        keys = ((Modality.VISIBLE, visible), (Modality.INFRARED, infrared))
        if any(k not in self.track_person for k in keys):
            return []
        pv, pi = (self.persons[self.track_person[k]] for k in keys)
        if confirmed:
            self.matched.update(keys)
        if pv.id == pi.id:
            return []
        lead = self.settings.lead_modality
        if pv.known != pi.known:
            keep = pv if pv.known else pi
        elif lead is not None:
            keep = pv if lead == Modality.VISIBLE else pi
        else:
            keep = pv if pv.id < pi.id else pi
        moved = keys[1] if keep is pv else keys[0]
        if moved[0] in keep.live:  # the kept person is in that stream already: not now
            return []
        keep.known = True
        return [self._assign(moved, keep, Reason.MATCHED)]

    def _place(self, active: dict[Modality, list[int]],
               near: Callable[[TrackKey], TrackKey | None]) -> list[Change]:
        """A new track alone at the place where the other stream sees one person (under the
        view map) is that person, before appearance has had time to say so: the one id it
        gets at once is the one a match would give it a few rounds later. Joined once."""
        changes = []
        for modality, ids in active.items():
            for track in ids:
                key = (modality, track)
                if key in self.placed or key in self.matched or key in self.linked:
                    continue
                partner = near(key)
                if partner is None or partner not in self.track_person:
                    continue
                self.placed.update((key, partner))
                visible, infrared = (key, partner) if modality == Modality.VISIBLE else \
                    (partner, key)
                changes += self._join(visible[1], infrared[1], confirmed=False)
        return changes

    def _assign(self, key: TrackKey, person: Person, reason: Reason,
                similarity: float | None = None) -> Change:
        """Track ``key`` is ``person`` from now on; its former person, if it was only this
        track so far, is dropped."""
        previous = self.persons[self.track_person[key]]
        previous.live.pop(key[0], None)
        if not previous.live and not previous.totals:
            del self.persons[previous.id]
            person.seen_with.update(previous.seen_with)
            for other in self.persons.values():
                if previous.id in other.seen_with:
                    other.seen_with.add(person.id)
        person.live[key[0]] = key
        self.track_person[key] = person.id
        if reason != Reason.MATCHED:
            self.linked.add(key)
        return Change(key, previous.id, person.id, reason, similarity)

    def _both(self, modality: Modality, vector: np.ndarray, partner: np.ndarray,
              absent: list[Person]) -> tuple[Person, float] | None:
        q = self.settings.joint_quantile
        return _joint(absent, modality, vector, partner,
                      (self.threshold(modality, q), self.threshold(_other(modality), q)),
                      2 * self.settings.margin)

    def _relink(self, book: AppearanceBook, active: dict[Modality, list[int]], now: float,
                follow: bool) -> list[Change]:
        s, changes = self.settings, []
        lead = s.lead_modality
        for modality, ids in active.items():
            least = s.min_embeddings
            follower = lead is not None and modality != lead
            if follow and follower:
                least = max(least, s.follow_after)
            for track in ids:
                key = (modality, track)
                entry = book.entries.get(key)
                if key in self.linked or entry is None or entry.count < least or \
                        (follower and key in self.matched):
                    continue
                last = self.compared.get(key)
                if last is not None and (s.again <= 1 or entry.count < s.again * last):
                    continue
                self.compared[key] = entry.count
                before = self.persons[self.track_person[key]]
                change = self._compare(key, entry.vector, now, book)
                if change is not None:
                    changes.append(change)
                    changes += self._carry(before, self.persons[change.person])
        return changes

    def _carry(self, before: Person, after: Person) -> list[Change]:
        """A track just recognised as ``after`` leaves ``before``; the other stream's track
        joined with it (matched, or at its place) is the same person and goes along at
        once, rather than a few rounds later when the match confirms it again."""
        if not before.live or before.id not in self.persons:
            return []
        (modality, partner), = before.live.values()
        if modality in after.live:
            return []
        return [self._assign((modality, partner), after, Reason.MATCHED)]

    def _compare(self, key: TrackKey, vector: np.ndarray, now: float,
                 book: AppearanceBook) -> Change | None:
        """Link ``key`` to the person who is in no view now whose look clearly is its own:
        by both cameras' looks when the track's person is in both streams now (matched),
        else in its own modality, else across the modalities."""
        s, modality = self.settings, key[0]
        own = self.persons[self.track_person[key]]
        absent = [p for p in self.persons.values() if not p.live and p.id != own.id
                  and p.id not in own.seen_with and now - p.left <= s.window_s]
        partner = own.live.get(_other(modality))
        if partner is not None and partner in book.entries:
            best = self._both(modality, vector, book.entries[partner].vector, absent)
            if best is not None:
                return self._assign(key, best[0], Reason.RELINKED, best[1])
        same = [p for p in absent if modality in p.totals]
        threshold = self.threshold(modality)
        best, nearest = _clear(same, modality, vector, threshold, s.margin, certain_rivals=True)
        self.unsure.discard(key)
        if best is not None:
            return self._assign(key, best, Reason.RELINKED, nearest)
        # Nearly someone's look: undecided (still held) rather than a new person.
        if s.unsure > 0 and nearest >= threshold - s.unsure:
            self.unsure.add(key)
        if not s.cross:
            return None
        other = _other(modality)
        across = [p for p in absent if modality not in p.totals and other in p.totals]
        best, nearest = _clear(across, other, vector, self.threshold("cross"), s.cross_margin,
                               certain_rivals=False)
        if best is not None:
            return self._assign(key, best, Reason.CROSS_RELINKED, nearest)
        return None


def _joint(candidates: list[Person], modality: Modality, vector: np.ndarray,
           partner: np.ndarray, thresholds: tuple[float, float], margin: float
           ) -> tuple[Person, float] | None:
    """The candidate whose looks in both modalities are most like the track's (``vector``)
    and its partner's (``partner``, the other stream's track of the same person), if it is
    the most alike in each modality, reaches each modality's threshold, and its summed
    similarity is ``margin`` ahead of every other candidate's. Two cameras agreeing on who
    someone is are surer than one alone, so each threshold may be lower than one camera's."""
    other = _other(modality)
    both = [p for p in candidates if modality in p.totals and other in p.totals]
    if not both:
        return None
    own = np.array([unit(p.totals[modality]) @ vector for p in both])
    theirs = np.array([unit(p.totals[other]) @ partner for p in both])
    summed = own + theirs
    order = np.argsort(-summed)
    k = int(order[0])
    runner_up = summed[order[1]] if len(both) > 1 else -2.0
    if (own[k] >= thresholds[0] and theirs[k] >= thresholds[1] and own[k] == own.max()
            and theirs[k] == theirs.max() and summed[k] - runner_up >= margin):
        return both[k], float(own[k])
    return None


def _clear(candidates: list[Person], modality: Modality, vector: np.ndarray, threshold: float,
           margin: float, certain_rivals: bool) -> tuple[Person | None, float]:
    """The candidate whose ``modality`` look is most like ``vector``, if at least
    ``threshold`` and ``margin`` ahead of the runner-up that counts (else None), and that
    look's similarity (-2 without candidates). With ``certain_rivals``, the runner-up that
    counts is one certainly not the best person (seen beside them): in its own stream a
    person once missed is remembered twice, and the two copies must not veto each other.
    Across the modalities every other candidate counts."""
    if not candidates:
        return None, -2.0
    scores = np.array([unit(p.totals[modality]) @ vector for p in candidates])
    order = np.argsort(-scores)
    first = candidates[order[0]]
    rivals = [scores[k] for k in order[1:]
              if not certain_rivals or candidates[k].id in first.seen_with]
    runner_up = rivals[0] if rivals else -1.0
    best = float(scores[order[0]])
    clear = best >= threshold and best - runner_up >= margin
    return (first if clear else None), best
