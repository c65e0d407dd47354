"""The stages of a live round, each a small object with its own settings.

A round (:class:`Round`) holds the newest frame of each stream; the pipeline
(:class:`deen.runtime.pipeline.Pipeline`) passes it through its stages in order:

    detect → track → crops → [level light] → [place] → embed → match → [relink] → [name] → emit

Stages in brackets are optional: a run has them or not (settings, a gallery), and no other
stage asks. What the stages share between rounds is the :class:`LiveState` (the live tracks,
their appearances and newest crops, gallery names); what one round produces (detections,
ended tracks, crops, events) is on the :class:`Round`. Events are collected on the round
and sent by the last stage, :class:`Emit`, so every event of a round carries the state the
round ended in.

When a track ends, :meth:`LiveState.end` tells every stage with a ``forget`` method, in
stage order, before the track's appearance is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from deen.backends.base import Embedder
from deen.errors import DeenError
from deen.modality import Modality
from deen.runtime import tracking
from deen.runtime.detect import Detections, Detector
from deen.runtime.embedding_worker import EmbedJob, EmbedResult, EmbedWorker, embed_now
from deen.runtime.events import EventKind, EventLog
from deen.runtime.exposure import Exposure
from deen.runtime.faults import Faults
from deen.runtime.gallery import Gallery
from deen.runtime.identity import Identities, RelinkSettings
from deen.runtime.matching import (
    AppearanceBook,
    CrossCameraMatcher,
    EmbeddingSettings,
    MatchingSettings,
    TrackKey,
    choose_tracks,
)
from deen.runtime.registration import CameraRegistration, PairGeometry
from deen.runtime.sources import Frame
from deen.runtime.tracking import ByteTracker, TrackingSettings
from deen.streams import STREAM_MODALITY, STREAMS

#: An event as a round queues it: its kind, the capture time it reports on, its fields.
Event = tuple[EventKind, float | None, dict[str, Any]]


@dataclass
class Round:
    """One round: the frames taken (a stream without a new frame is absent) and what the
    stages found in them."""

    frames: dict[Modality, Frame]
    paired: bool = False  # its new frame and the other stream's newest are one moment
    found: dict[Modality, Detections | None] = field(default_factory=dict)  # None: failed
    ended: set[TrackKey] = field(default_factory=set)  # tracks that ended this round
    crops: dict[TrackKey, tuple[np.ndarray, Frame]] = field(default_factory=dict)  # new crops
    embedded: list[tuple[TrackKey, float, int]] = field(default_factory=list)  # key, capture
    #                                                     time, frame of each applied vector
    events: list[Event] = field(default_factory=list)

    def emit(self, kind: EventKind, frame_time: float | None = None, **fields: Any) -> None:
        """Queue an event; :class:`Emit` sends the round's events in order."""
        self.events.append((kind, frame_time, fields))

    @property
    def newest(self) -> float | None:
        """The newest frame's capture time, if the round has a frame."""
        return max((f.timestamp for f in self.frames.values()), default=None)

    def tracked(self) -> list[tuple[Modality, Frame]]:
        """The streams whose frame was detected (a failed detection leaves its tracks
        waiting for the next frame)."""
        return [(m, f) for m, f in self.frames.items() if self.found.get(m) is not None]


@dataclass
class LiveState:
    """What the stages share between rounds."""

    book: AppearanceBook = field(default_factory=AppearanceBook)
    active: dict[Modality, list[tracking.Track]] = field(
        default_factory=lambda: {m: [] for m in STREAMS})  # tracks in each stream's last frame
    candidates: dict[TrackKey, tuple[np.ndarray, Frame]] = field(default_factory=dict)
    #   the newest crop not yet embedded of each live track, and its frame
    names: dict[TrackKey, str] = field(default_factory=dict)  # gallery names of live tracks
    clock: float = 0.0  # the newest frame's capture time so far
    embedded: int = 0  # crops embedded since the run started
    pending: int = 0  # tracks that wanted an embedding in the last round but did not get one
    stages: list[Stage] = field(default_factory=list)  # whom end() tells

    def alive(self) -> set[TrackKey]:
        return {(m, t.track_id) for m, tracks in self.active.items() for t in tracks}

    def end(self, key: TrackKey, when: float | None) -> None:
        """Track ``key`` ended at capture time ``when`` (None: now): every stage forgets it
        (in stage order), then its appearance and newest crop go."""
        for stage in self.stages:
            if isinstance(stage, Forgets):
                stage.forget(key, self, self.clock if when is None else when)
        self.book.drop(key)
        self.candidates.pop(key, None)


@runtime_checkable
class Stage(Protocol):
    """One step of a round."""

    name: str  # also the stage's entry in the status line's timings

    def __call__(self, round_: Round, state: LiveState) -> None: ...


@runtime_checkable
class Forgets(Protocol):
    """A stage that keeps something per track and must hear when one ends."""

    def forget(self, key: TrackKey, state: LiveState, when: float) -> None: ...


class Detect:
    """Both streams' frames in one detector call (a batching detector runs them together).
    When the call raises, each frame is tried alone so that the failure is counted against
    its own stream; a failed frame's detections are ``None``."""

    name = "detect"

    def __init__(self, detector: Detector, faults: Faults) -> None:
        self.detector, self.faults = detector, faults

    def __call__(self, round_: Round, state: LiveState) -> None:
        round_.found = self._detect(round_.frames)

    def _detect(self, frames: dict[Modality, Frame]) -> dict[Modality, Detections | None]:
        items = {m: (f.image, STREAMS[m], f.position) for m, f in frames.items()}
        try:
            found = self.detector.detect_many(list(items.values()))
        except Exception as exc:
            if len(items) == 1:
                self.faults.failed(f"detect:{STREAMS[next(iter(items))]}", exc)
                return dict.fromkeys(items)
            return {m: self._detect({m: frames[m]})[m] for m in items}
        for modality in items:
            self.faults.succeeded(f"detect:{STREAMS[modality]}")
        return dict(zip(items, found, strict=True))


class Track:
    """Per-stream tracking: starts and ends tracks, and reports both."""

    name = "track"

    def __init__(self, settings: TrackingSettings = TrackingSettings()) -> None:
        self.trackers = {m: ByteTracker(settings) for m in STREAMS}

    def __call__(self, round_: Round, state: LiveState) -> None:
        for modality, frame in round_.tracked():
            update = self.trackers[modality].update(round_.found[modality], frame.index,
                                                    frame.image.shape[1], frame.image)
            for track in update.started:
                round_.emit(EventKind.TRACK_STARTED, frame.timestamp, stream=STREAMS[modality],
                            frame=frame.index, track=track.track_id, box=track.box,
                            score=track.score)
            for track in update.ended:
                self.end(modality, track, round_, state, frame)
            state.active[modality] = update.active

    def close(self, modality: Modality, round_: Round, state: LiveState) -> None:
        """The stream ended: end all its tracks."""
        for track in self.trackers[modality].close():
            self.end(modality, track, round_, state, None)

    @staticmethod
    def end(modality: Modality, track: tracking.Track, round_: Round, state: LiveState,
            frame: Frame | None) -> None:
        key = (modality, track.track_id)
        when = frame.timestamp if frame else None
        round_.emit(EventKind.TRACK_ENDED, when, stream=STREAMS[modality], track=track.track_id,
                    frames=track.last_seen - track.first_frame + 1,
                    name=state.names.pop(key, None))
        round_.ended.add(key)
        state.end(key, when)


def crop_box(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The pixels of ``box`` (clipped to the image); None when too small to embed."""
    height, width = image.shape[:2]
    x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
    x2, y2 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    if x2 - x1 < 4 or y2 - y1 < 8:
        return None
    return image[y1:y2, x1:x2]


class Crops:
    """Cuts each active track's crop from its frame; people under ``min_box_height`` are
    tracked but not embedded."""

    name = "crops"

    def __init__(self, settings: EmbeddingSettings = EmbeddingSettings()) -> None:
        self.min_height = settings.min_box_height

    def __call__(self, round_: Round, state: LiveState) -> None:
        for modality, frame in round_.tracked():
            for track in state.active[modality]:
                crop = crop_box(frame.image, track.box)
                if crop is not None and crop.shape[0] >= self.min_height:
                    round_.crops[modality, track.track_id] = (crop, frame)


class LevelLight:
    """Crops as if under each stream's first frame's light (:mod:`deen.runtime.exposure`):
    a person who comes back when the picture is brighter or darker still looks the same."""

    name = "level"

    def __init__(self) -> None:
        self.exposure = {m: Exposure() for m in STREAMS}

    def __call__(self, round_: Round, state: LiveState) -> None:
        gains = {m: self.exposure[m].measure(f.image) for m, f in round_.tracked()}
        for key, (crop, frame) in round_.crops.items():
            round_.crops[key] = (Exposure.level(crop, gains[key[0]]), frame)


#: Mapped distance, in person heights, beyond which a visible and an infrared track are
#: certainly two people.
FAR_APART = 1.5


class Place:
    """Learns the cameras' view map from paired rounds (:mod:`deen.runtime.registration`)
    and keeps how far apart, once mapped, each visible/infrared pair is."""

    name = "place"

    def __init__(self, gate: float = MatchingSettings.gate) -> None:
        self.registration = CameraRegistration()
        self.geometry = PairGeometry()
        self.gate = gate  # mapped distance, in person heights, of one place
        self.live: dict[Modality, list[int]] = {m: [] for m in STREAMS}

    def __call__(self, round_: Round, state: LiveState) -> None:
        if not round_.paired or any(round_.found.get(m) is None for m in round_.frames):
            return
        placed = {m: [(t.track_id, t.box) for t in state.active[m]] for m in STREAMS}
        self.live = {m: [t for t, _ in placed[m]] for m in STREAMS}
        self.registration.observe(placed[Modality.VISIBLE], placed[Modality.INFRARED])
        if self.registration.current is not None:
            self.geometry.observe(self.registration.current, placed[Modality.VISIBLE],
                                  placed[Modality.INFRARED])

    def distances(self) -> Callable[[list[int], list[int]], np.ndarray] | None:
        """The mapped distances of pairs, once there is a map."""
        return None if self.registration.current is None else self.geometry.matrix

    def near(self, key: TrackKey) -> TrackKey | None:
        """The other stream's track at ``key``'s place under the map, when it is the only
        one within ``gate`` and no other is within twice that (none while there is no map)."""
        if not self.mapped:
            return None
        other = Modality.INFRARED if key[0] == Modality.VISIBLE else Modality.VISIBLE
        pairs = [(self.geometry.distance.get((key[1], t) if key[0] == Modality.VISIBLE
                                             else (t, key[1])), t) for t in self.live[other]]
        close = sorted((d, t) for d, t in pairs if d is not None and d <= 2 * self.gate)
        if len(close) == 1 and close[0][0] <= self.gate:
            return (other, close[0][1])
        return None

    @property
    def mapped(self) -> bool:
        """Whether the cameras' view map is known (their views overlap)."""
        return self.registration.current is not None

    def apart(self, state: LiveState) -> dict[tuple[int, int], bool] | None:
        """For each live (visible, infrared) track pair, whether the two are certainly two
        people: any pair when the cameras watch different places, a pair far apart under
        the map when they overlap; None while neither is known."""
        visible = [t.track_id for t in state.active[Modality.VISIBLE]]
        infrared = [t.track_id for t in state.active[Modality.INFRARED]]
        if self.registration.apart:
            return {(v, i): True for v in visible for i in infrared}
        if not self.mapped:
            return None
        far = self.geometry.matrix(visible, infrared) > FAR_APART
        return {(v, i): bool(far[a, b]) for a, v in enumerate(visible)
                for b, i in enumerate(infrared)}

    def forget(self, key: TrackKey, state: LiveState, when: float) -> None:
        if key[0] == Modality.VISIBLE:
            self.geometry.forget(visible=key[1])
        else:
            self.geometry.forget(infrared=key[1])


class Embed:
    """Applies the embeddings that are ready, then hands the next budgeted batch over (to
    the worker when there is one and it is idle; else embeds it now).

    Candidates are the newest crop of every live track of *both* streams, not only the
    tracks in this round's frames: a round often holds one stream's new frame only, and
    choosing from it alone could starve the other stream whenever the worker happens to
    free up on such rounds. Embedding rows that are not finite (the reference divides by a
    pooled feature's norm, which can be zero) are dropped and counted."""

    name = "embed"

    def __init__(self, embedder: Embedder, faults: Faults,
                 settings: EmbeddingSettings = EmbeddingSettings(),
                 background: bool = False) -> None:
        self.embedder, self.faults, self.settings = embedder, faults, settings
        self.worker = EmbedWorker(embedder, settings.batch) if background else None
        self.milliseconds = 0.0  # model time since the last take_milliseconds()
        #: Whether a track's person is decided, so its crops can wait (set by the pipeline).
        self.settled: Callable[[TrackKey], bool] = lambda key: False

    def __call__(self, round_: Round, state: LiveState) -> None:
        state.candidates.update(round_.crops)
        candidates = state.candidates
        if self.worker is not None:
            result = self.worker.collect()
            if result is not None:
                self._apply(result, round_, state)
            if self.worker.busy:
                state.pending = len(candidates)
                return
        chosen = choose_tracks(list(candidates), state.book, self.settings.budget,
                               self.settled)
        state.pending = len(candidates) - len(chosen)
        if not chosen:
            return
        job = EmbedJob(chosen, [candidates[k][0] for k in chosen],
                       [candidates[k][1].timestamp for k in chosen],
                       [candidates[k][1].index for k in chosen])
        for key in chosen:  # each crop is embedded once; the track's next crop replaces it
            del candidates[key]
        if self.worker is not None:
            self.worker.submit(job)
        else:
            self._apply(embed_now(self.embedder, job, self.settings.batch), round_, state)

    def _apply(self, result: EmbedResult, round_: Round, state: LiveState) -> None:
        """Add a finished call's finite rows to the appearances of tracks still alive.

        A call that raised or gave only non-finite rows counts as a failed call; non-finite
        rows of a call that otherwise worked are dropped and counted."""
        self.milliseconds += result.milliseconds
        if result.vectors is None:
            self.faults.failed("embed", result.error)
            return
        finite = np.isfinite(result.vectors).all(axis=1)
        if not finite.any():
            self.faults.failed("embed", f"all {len(finite)} embeddings were not finite")
            return
        self.faults.succeeded("embed")
        state.embedded += int(finite.sum())
        if not finite.all():
            bad = int((~finite).sum())
            self.faults.dropped("non-finite embedding", f"{bad} of {len(finite)} crops gave "
                                "non-finite embeddings (dropped)", bad)
        now = time.monotonic()
        job, alive = result.job, state.alive()
        for index, (key, vector) in enumerate(zip(job.keys, result.vectors, strict=True)):
            if finite[index] and key in alive:  # else its track ended meanwhile
                state.book.add(key, vector, now)
                round_.embedded.append((key, job.captured[index], job.frames[index]))

    def take_milliseconds(self) -> float:
        """Model time since the last call (the status line's embed time: the worker's
        calls, not the round's wait)."""
        spent, self.milliseconds = self.milliseconds, 0.0
        return spent

    def close(self) -> None:
        """Stop the worker (a call in flight finishes first)."""
        if self.worker is not None:
            self.worker.close()


class Match:
    """Matches visible to infrared tracks by appearance (and place, with a view map) and
    reports confirmed and broken matches."""

    name = "match"

    def __init__(self, settings: MatchingSettings = MatchingSettings(),
                 place: Place | None = None) -> None:
        # Without the view map stage, appearance is all there is to match by.
        self.matcher = CrossCameraMatcher(settings if place is not None
                                          else replace(settings, without_map=True))
        self.place = place

    def __call__(self, round_: Round, state: LiveState) -> None:
        distances = self.place.distances() if self.place is not None else None
        for event in self.matcher.update(state.book, round_.ended, distances):
            fields: dict[str, Any] = {"visible_track": event.visible,
                                      "infrared_track": event.infrared}
            if event.kind == EventKind.MATCH:
                fields["similarity"] = event.similarity
            else:
                fields["reason"] = event.reason
            round_.emit(event.kind, round_.newest, **fields)

    def partner(self, key: TrackKey) -> int | None:
        return self.matcher.partner(key)


class Relink:
    """Who each track is (:mod:`deen.runtime.identity`): one person id per person across
    visits, streams and places. Reports each change of a person already announced as a
    ``person_changed`` event, and gives every event about a track its ``person``
    (:meth:`annotate`, called by :class:`Emit`), as it stands when the round ends.

    A track is *announced* once its person is decided (:meth:`Identities.held`), in a round
    whose frame of its stream shows it: its ``track_started`` goes out then, with that frame and
    box (and ``first_frame``, where it was first seen), followed by whatever was said about
    it meanwhile. Until then its events wait, and a track that ends unannounced is never
    told of."""

    name = "relink"

    def __init__(self, match: Match, place: Place | None = None,
                 settings: RelinkSettings = RelinkSettings()) -> None:
        self.identities = Identities(settings)
        self.settings = settings
        self.match, self.place = match, place
        self.announced: dict[TrackKey, int] = {}  # the person each live track's events gave
        self.waiting: dict[TrackKey, list[Event]] = {}  # events of tracks not announced yet
        self.ended: dict[TrackKey, int] = {}  # tracks ended this round → their person
        self.silent: set[TrackKey] = set()  # tracks ended this round before being announced
        self.newest: dict[Modality, int] = {}  # each stream's newest frame index

    def __call__(self, round_: Round, state: LiveState) -> None:
        place = self.place
        changes = self.identities.update(
            state.book, {m: [t.track_id for t in state.active[m]] for m in STREAMS},
            state.clock, list(self.match.matcher.confirmed),
            None if place is None else place.apart(state), place is not None and place.mapped,
            None if place is None or not self.settings.place_join else place.near)
        reasons = {c.key: c for c in changes}
        for modality, frame in round_.frames.items():
            self.newest[modality] = frame.index
        # Tracks in view in this round's frames (a track lost for a moment is not).
        in_view = {(m, t.track_id): t.box for m in round_.frames for t in state.active[m]}
        for key, person in self.identities.track_person.items():
            said = self.announced.get(key)
            if said is None:
                if key in in_view and not self.identities.held(key, state.clock):
                    self._announce(key, round_, in_view[key])
                continue
            if said != person:
                change = reasons.get(key)
                # The frame from which the track's rows carry the new person: this round's
                # frame of its stream, else the next one.
                frame = round_.frames[key[0]].index if key[0] in round_.frames else \
                    self.newest.get(key[0], -1) + 1
                round_.emit(EventKind.PERSON_CHANGED, round_.newest, stream=STREAMS[key[0]],
                            frame=frame, track=key[1], previous=said,
                            reason=str(change.reason) if change else "matched",
                            similarity=change.similarity if change else None)
            self.announced[key] = person

    def _announce(self, key: TrackKey, round_: Round, box: np.ndarray) -> None:
        """The track's person is decided and it is in view (at ``box``) in this round's
        frame of its stream: from that frame on it is shown. A ``track_started`` still
        waiting is sent as of this frame."""
        self.announced[key] = self.identities.person_of(key)
        frame = round_.frames[key[0]]
        for kind, _, fields in self.waiting.pop(key, []):
            if kind == EventKind.TRACK_STARTED:
                round_.emit(kind, frame.timestamp, **{**fields, "first_frame": fields["frame"],
                                                      "frame": frame.index, "box": box})
            else:
                round_.emit(kind, round_.newest, **fields)

    def forget(self, key: TrackKey, state: LiveState, when: float) -> None:
        if key in self.identities.track_person:
            self.ended[key] = self.identities.end(key, state.book, when)
        if self.announced.pop(key, None) is None:
            self.silent.add(key)
            self.waiting.pop(key, None)

    def person_of(self, key: TrackKey) -> int | None:
        """A live track's person, or that of a track that ended this round."""
        return self.identities.track_person.get(key, self.ended.get(key))

    def held(self, key: TrackKey) -> bool:
        """Whether the live track is not announced yet (nothing about it is shown)."""
        return key in self.identities.track_person and key not in self.announced

    def settled(self, key: TrackKey) -> bool:
        return self.identities.settled(key)

    def annotate(self, round_: Round) -> None:
        """Give the round's events about tracks their ``person`` (the visible track's for a
        match or unmatch, with ``infrared_person``); events about a track not announced yet
        wait for it, those about a track that ended unannounced are dropped."""
        kept: list[Event] = []
        for event in round_.events:
            _, _, fields = event
            if "track" in fields and "stream" in fields:
                key = (STREAM_MODALITY[fields["stream"]], fields["track"])
                if key in self.silent:
                    continue
                if self.held(key):
                    self.waiting.setdefault(key, []).append(event)
                    continue
                person = self.person_of(key)
                if person is not None:
                    fields["person"] = person
            elif "visible_track" in fields:
                fields["person"] = self.person_of((Modality.VISIBLE, fields["visible_track"]))
                fields["infrared_person"] = self.person_of(
                    (Modality.INFRARED, fields["infrared_track"]))
            kept.append(event)
        round_.events[:] = kept
        self.ended.clear()
        self.silent.clear()


class Name:
    """Names tracks from the gallery as they are embedded, and picks up enrolments made
    elsewhere (other boxes, ``deen gallery add``) every ``refresh_s`` seconds. A store that
    cannot be read is one counted outage (the names already loaded keep working) until it
    answers again."""

    name = "name"

    def __init__(self, gallery: Gallery, faults: Faults, threshold: float,
                 refresh_s: float = 1.0) -> None:
        self.gallery, self.faults = gallery, faults
        self.threshold, self.refresh_s = threshold, refresh_s
        self.checked = time.monotonic()
        self.down = False

    def __call__(self, round_: Round, state: LiveState) -> None:
        if time.monotonic() - self.checked >= self.refresh_s:
            self.refresh()
        for key, captured, frame in round_.embedded:
            if key not in state.book.entries:
                continue
            found = self.gallery.recognise(state.book.entries[key].vector, self.threshold)
            if found is not None and state.names.get(key) != found.name:
                state.names[key] = found.name
                round_.emit(EventKind.RECOGNISED, captured, stream=STREAMS[key[0]],
                            frame=frame, track=key[1], name=found.name,
                            similarity=found.similarity)

    def refresh(self) -> None:
        self.checked = time.monotonic()
        try:
            self.gallery.refresh()
        except DeenError as exc:
            if not self.down:
                self.down = True
                self.faults.dropped("gallery outage", str(exc), 1)
        else:
            self.down = False


class Emit:
    """Sends the round's events, in the order the stages queued them, each event about a
    track with its person (:meth:`Relink.annotate`)."""

    name = "emit"

    def __init__(self, events: EventLog, relink: Relink | None = None) -> None:
        self.events, self.relink = events, relink

    def __call__(self, round_: Round, state: LiveState) -> None:
        if self.relink is not None:
            self.relink.annotate(round_)
        for kind, frame_time, fields in round_.events:
            self.events.emit(kind, frame_time, **fields)
        round_.events.clear()
