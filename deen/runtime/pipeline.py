"""The live loop: newest frames of both streams → detect → track → embed → match → events.

One round takes the newest frame of each stream (capture threads drop the rest), pairs them
by timestamp, detects and tracks people per stream, embeds a budgeted set of tracks from
*both* streams in one mixed-modality embedder call, updates each track's appearance, and
matches visible to infrared tracks. Everything the round produces goes out as events.

Nothing that happens to one frame, crop or call ends a run (:mod:`deen.runtime.faults`): a
detector or embedder call that raises is counted and skipped for that round, and embedding
rows that are not finite (the reference divides by a pooled feature's norm, which can be
zero) are dropped before they reach an appearance, the matcher or the gallery.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from deen.backends.base import Embedder
from deen.errors import DeenError
from deen.modality import Modality
from deen.runtime.detect import Detections, Detector
from deen.runtime.embedding_worker import EmbedJob, EmbedResult, EmbedWorker, embed_now
from deen.runtime.events import EventKind, EventLog
from deen.runtime.exposure import Exposure
from deen.runtime.faults import DEFAULT_FAIL_AFTER_S, Faults, PersistentFailure, summarise
from deen.runtime.gallery import DEFAULT_GALLERY_THRESHOLD, Gallery
from deen.runtime.matching import (
    DEFAULT_BREAK_ROUNDS,
    DEFAULT_CONFIRM_ROUNDS,
    DEFAULT_EMBED_BATCH,
    DEFAULT_EMBED_BUDGET,
    DEFAULT_MATCH_THRESHOLD,
    AppearanceBook,
    CrossCameraMatcher,
    Distances,
    TrackKey,
    choose_tracks,
)
from deen.runtime.registration import CameraRegistration, PairGeometry
from deen.runtime.relink import Relinker
from deen.runtime.sources import Frame, FrameSource
from deen.runtime.streams import STREAMS
from deen.runtime.tracking import ByteTracker, Track

STAGES = ("detect", "track", "embed", "match")
#: Longest a round of an offline (not real-time) run waits for a stream's next frame: a
#: stream that stays silent this long is processed without its partner meanwhile.
LOCKSTEP_WAIT_S = 10.0


@dataclass(frozen=True)
class PipelineOptions:
    embed_budget: int = DEFAULT_EMBED_BUDGET  # crops embedded per round
    embed_batch: int = DEFAULT_EMBED_BATCH  # crops per model call (memory grows with it)
    match_threshold: float = DEFAULT_MATCH_THRESHOLD
    confirm_rounds: int = DEFAULT_CONFIRM_ROUNDS
    break_rounds: int = DEFAULT_BREAK_ROUNDS
    gallery_threshold: float = DEFAULT_GALLERY_THRESHOLD
    max_skew_s: float = 0.1  # frames further apart than this are not a pair
    min_box_height: int = 32  # smaller people are tracked but not embedded
    # Once a track has an appearance, only crops not cut by the frame's edge and not
    # overlapped by another person add to it (off until the live score supports it).
    clean_crops: bool = False
    # Crops are embedded as if under the stream's first frame's light (deen.runtime.exposure):
    # a person who comes back when the picture is brighter or darker still looks the same.
    level_light: bool = True
    match_margin: float = 0.0  # a pair must beat each one's runner-up by this much
    match_hold: float = 0.0  # hysteresis of confirmed matches (CrossCameraMatcher.hold)
    relink: bool = True  # one person id per person in a stream across leaving and returning
    # The stream whose relinks the other follows through cross-camera matches (a matched
    # track of the other stream takes its partner's link and does not relink on its own
    # appearance); None: each stream relinks on its own.
    relink_lead: Modality | None = Modality.VISIBLE
    # Learn where the visible view lies in the infrared one (cameras on one pole) and match
    # only people at corresponding places (deen.runtime.registration); cameras whose views
    # do not overlap never get a map and are matched by appearance alone.
    view_map: bool = True
    match_gate: float = CrossCameraMatcher.gate  # with a view map: farthest a pair may be
    placed_threshold: float = CrossCameraMatcher.placed_threshold  # … and its least similarity
    fail_after_s: float = DEFAULT_FAIL_AFTER_S  # a kind failing this long ends the run
    embed_in_background: bool = False  # embed on a worker thread (real-time runs)
    gallery_refresh_s: float = 1.0  # how often the gallery is checked for others' enrolments


@dataclass
class StageTimer:
    """Mean milliseconds per stage since the last status line."""

    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    rounds: int = 0
    pairs: int = 0  # rounds whose two frames were within max_skew_s of each other
    skew_ms: float = 0.0  # summed capture-time difference of those pairs

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.totals[stage] += 1000 * (time.perf_counter() - start)

    def means(self) -> dict[str, float]:
        return {k: v / max(self.rounds, 1) for k, v in self.totals.items()}

    def reset(self) -> None:
        self.totals = dict.fromkeys(STAGES, 0.0)
        self.rounds, self.pairs, self.skew_ms = 0, 0, 0.0


@dataclass(frozen=True)
class TrackView:
    """One active track as the outputs show it."""

    track_id: int
    box: np.ndarray  # x1, y1, x2, y2 in frame pixels (a read-only copy)
    partner: int | None  # the other stream's track it is matched to, if confirmed
    name: str | None  # its gallery name, if it has one
    person: int = -1  # its person id in this stream (deen.runtime.relink); -1: the track id
    partner_person: int | None = None  # the partner's person id in the other stream
    # Its summed unit embeddings so far (the array is replaced, never changed, as crops are
    # added); None until its first crop is embedded.
    appearance: np.ndarray | None = None

    @property
    def person_id(self) -> int:
        return self.track_id if self.person < 0 else self.person


@dataclass(frozen=True)
class PipelineSnapshot:
    """A read-only view of a :class:`Pipeline` between rounds: everything the status line,
    the annotated view (:func:`deen.runtime.annotate.render`) and the web view show.

    The per-interval figures (``processed``, ``stage_ms``, ``rounds``, ``pairs``,
    ``skew_ms``) count since the pipeline's last :meth:`Pipeline.reset_counters`.
    """

    tracks: Mapping[Modality, tuple[TrackView, ...]]  # tracks seen in each stream's last frame
    matches: tuple[tuple[int, int], ...]  # confirmed (visible, infrared) track ids, sorted
    names: Mapping[TrackKey, str]  # gallery names of live tracks
    processed: Mapping[Modality, int]  # frames processed per stream
    stage_ms: Mapping[str, float]  # mean milliseconds per round of each stage
    rounds: int
    pairs: int  # rounds whose two frames were within max_skew_s of each other
    skew_ms: float  # summed capture-time difference of those pairs
    pending: int  # tracks that wanted an embedding in the last round but did not get one
    faults: Mapping[str, int]  # failures per kind since the run started
    events: Mapping[str, int]  # events per kind since the run started


class Pipeline:
    """One round per :meth:`process` call; :func:`run` drives it from two sources."""

    def __init__(self, embedder: Embedder, detector: Detector, events: EventLog,
                 options: PipelineOptions = PipelineOptions(),
                 gallery: Gallery | None = None) -> None:
        self.embedder, self.detector, self.events = embedder, detector, events
        self.options, self.gallery = options, gallery
        self.trackers = {m: ByteTracker() for m in STREAMS}
        self.exposure = {m: Exposure() for m in STREAMS} if options.level_light else None
        self.book = AppearanceBook()
        self.matcher = CrossCameraMatcher(options.match_threshold, options.confirm_rounds,
                                          options.break_rounds, options.match_margin,
                                          options.match_hold, options.match_gate,
                                          options.placed_threshold)
        self.names: dict[TrackKey, str] = {}
        self._gallery_checked = time.monotonic()
        self._gallery_down = False
        self.relinker = Relinker(lead=options.relink_lead) if options.relink else None
        self.registration = CameraRegistration() if options.view_map else None
        self.pair_geometry = PairGeometry()
        self.clock = 0.0  # the newest frame's capture time (what the relinker's window counts)
        self.timer = StageTimer()
        self.processed = dict.fromkeys(STREAMS, 0)
        self.embedded = 0  # crops embedded since the run started
        self.pending = 0  # tracks that wanted an embedding this round but did not get one
        self.last_active: dict[Modality, list[Track]] = {m: [] for m in STREAMS}
        # The newest crop not yet embedded of each live track, and its frame (the candidates).
        self.latest_crops: dict[TrackKey, tuple[np.ndarray, Frame]] = {}
        self.faults = Faults(self._report_fault, options.fail_after_s)
        events.on_write_error = lambda exc: self.faults.failed("sink:events", exc)
        # Real-time runs embed on a worker thread; offline runs in the round (deterministic).
        self.worker = (EmbedWorker(embedder, options.embed_batch)
                       if options.embed_in_background else None)

    def collect_sink_faults(self) -> None:
        """Count what the event sinks reported (a broker's outage, events dropped from a
        full outbox): faults that never end the run."""
        for kind, message, count in self.events.take_faults():
            self.faults.dropped(kind, message, count)

    def close(self) -> None:
        """Stop the embedding worker (a call in flight finishes first)."""
        if self.worker is not None:
            self.worker.close()

    def snapshot(self) -> PipelineSnapshot:
        """What the outputs show, copied: later rounds do not change it."""
        tracks = {}
        for modality, active in self.last_active.items():
            views = []
            for track in active:
                box = np.array(track.box, copy=True)
                box.flags.writeable = False
                key = (modality, track.track_id)
                partner = self.matcher.partner(key)
                other = Modality.INFRARED if modality == Modality.VISIBLE else Modality.VISIBLE
                entry = self.book.entries.get(key)
                views.append(TrackView(
                    track.track_id, box, partner, self.names.get(key), self._person(key),
                    None if partner is None else self._person((other, partner)),
                    None if entry is None else entry.total))
            tracks[modality] = tuple(views)
        return PipelineSnapshot(
            tracks=MappingProxyType(tracks),
            matches=tuple(sorted(self.matcher.confirmed)),
            names=MappingProxyType(dict(self.names)),
            processed=MappingProxyType(dict(self.processed)),
            stage_ms=MappingProxyType(self.timer.means()),
            rounds=self.timer.rounds, pairs=self.timer.pairs, skew_ms=self.timer.skew_ms,
            pending=self.pending,
            faults=MappingProxyType(dict(self.faults.counts)),
            events=MappingProxyType(dict(self.events.counts)))

    def reset_counters(self) -> None:
        """Start the per-interval figures of :meth:`snapshot` afresh (the status line does
        after each line)."""
        self.timer.reset()
        for modality in self.processed:
            self.processed[modality] = 0

    def _report_fault(self, kind: str, message: str, count: int) -> None:
        self.events.emit(EventKind.ERROR, kind=kind, message=message, count=count)

    def refresh_gallery(self) -> None:
        """Pick up enrolments made elsewhere (other boxes, deen gallery add). A store that
        cannot be read is one counted outage (the names already loaded keep working) until
        it answers again."""
        if self.gallery is None:
            return
        self._gallery_checked = time.monotonic()
        try:
            self.gallery.refresh()
        except DeenError as exc:
            if not self._gallery_down:
                self._gallery_down = True
                self.faults.dropped("gallery outage", str(exc), 1)
        else:
            self._gallery_down = False

    def process(self, frames: dict[Modality, Frame | None]) -> None:
        if time.monotonic() - self._gallery_checked >= self.options.gallery_refresh_s:
            self.refresh_gallery()
        present = {m: f for m, f in frames.items() if f is not None}
        paired = False
        if len(present) == 2:  # the newest frame of each stream: a pair if close enough
            skew = abs(present[Modality.VISIBLE].timestamp - present[Modality.INFRARED].timestamp)
            if skew <= self.options.max_skew_s:
                paired = True
                self.timer.pairs += 1
                self.timer.skew_ms += 1000 * skew
        ended: set[TrackKey] = set()
        with self.timer.time("detect"):
            found = self._detect(present)
        for modality, frame in present.items():
            stream = STREAMS[modality]
            self.processed[modality] += 1
            detections = found[modality]
            if detections is None:  # counted; this stream's tracks wait for the next frame
                continue
            with self.timer.time("track"):
                update = self.trackers[modality].update(detections, frame.index)
            for track in update.started:
                self.events.emit(EventKind.TRACK_STARTED, frame.timestamp, stream=stream,
                                 frame=frame.index, track=track.track_id, box=track.box,
                                 score=track.score)
            for track in update.ended:
                ended.add(self._end(modality, track, frame))
            self.last_active[modality] = update.active
            boxes = np.array([t.box for t in update.active], np.float32).reshape(-1, 4)
            gain = (self.exposure[modality].measure(frame.image)
                    if self.exposure is not None else 1.0)
            for index, track in enumerate(update.active):
                crop = _crop(frame.image, track.box)
                if crop is None or crop.shape[0] < self.options.min_box_height:
                    continue
                crop = Exposure.level(crop, gain)
                key = (modality, track.track_id)
                if self.options.clean_crops and key in self.book.entries and \
                        not _clean(boxes, index, frame.image.shape):
                    continue
                self.latest_crops[key] = (crop, frame)
        if paired and all(found[m] is not None for m in present):
            self._place()
        self._embed()
        self.clock = max([self.clock, *(f.timestamp for f in present.values())])
        if self.relinker is not None:
            self.relinker.observe(self.book, {m: [t.track_id for t in self.last_active[m]]
                                              for m in STREAMS}, self.clock)
        with self.timer.time("match"):
            for event in self.matcher.update(self.book, ended, self._distances()):
                fields = {"visible_track": event.visible, "infrared_track": event.infrared}
                if event.kind == EventKind.MATCH:
                    fields["similarity"] = event.similarity
                else:
                    fields["reason"] = event.reason
                newest = max((f.timestamp for f in present.values()), default=None)
                self.events.emit(event.kind, newest, **fields)
            if self.relinker is not None:
                self.relinker.paired(list(self.matcher.confirmed))
        self.timer.rounds += 1

    def _place(self) -> None:
        """A paired round: teach the view map where the tracks are, and (once there is a
        map) update how far apart each visible/infrared pair is."""
        if self.registration is None:
            return
        placed = {m: [(t.track_id, t.box) for t in self.last_active[m]] for m in STREAMS}
        self.registration.observe(placed[Modality.VISIBLE], placed[Modality.INFRARED])
        if self.registration.current is not None:
            self.pair_geometry.observe(self.registration.current, placed[Modality.VISIBLE],
                                       placed[Modality.INFRARED])

    def _distances(self) -> Distances | None:
        if self.registration is None or self.registration.current is None:
            return None
        return self.pair_geometry.matrix

    def _detect(self, present: dict[Modality, Frame]) -> dict[Modality, Detections | None]:
        """Both streams' frames in one detector call (a batching detector runs them
        together). When the call raises, each frame is tried alone so that the failure is
        counted against the stream it belongs to; a failed frame yields ``None`` (one
        frame's failure is not the run's)."""
        items = {m: (f.image, STREAMS[m], f.position) for m, f in present.items()}
        try:
            found = self.detector.detect_many(list(items.values()))
        except Exception as exc:
            if len(items) == 1:
                self.faults.failed(f"detect:{STREAMS[next(iter(items))]}", exc)
                return dict.fromkeys(items)
            return {m: self._detect({m: present[m]})[m] for m in items}
        for modality in items:
            self.faults.succeeded(f"detect:{STREAMS[modality]}")
        return dict(zip(items, found, strict=True))

    def _embed(self) -> None:
        """Apply the embeddings that are ready, then hand the next budgeted batch over (to
        the worker when there is one and it is idle; else embed it now).

        Candidates are the newest crop of every live track of *both* streams, not only the
        tracks in this round's frames: a round often holds one stream's new frame only, and
        choosing from it alone could starve the other stream whenever the worker happens to
        free up on such rounds."""
        by_key = self.latest_crops
        if self.worker is not None:
            result = self.worker.collect()
            if result is not None:
                self._apply(result)
            if self.worker.busy:
                self.pending = len(by_key)
                return
        chosen = choose_tracks(list(by_key), self.book, self.options.embed_budget)
        self.pending = len(by_key) - len(chosen)
        if not chosen:
            return
        job = EmbedJob(chosen, [by_key[k][0] for k in chosen],
                       [by_key[k][1].timestamp for k in chosen],
                       [by_key[k][1].index for k in chosen])
        for key in chosen:  # each crop is embedded once; the track's next crop replaces it
            del by_key[key]
        if self.worker is not None:
            self.worker.submit(job)
        else:
            self._apply(embed_now(self.embedder, job, self.options.embed_batch))

    def _apply(self, result: EmbedResult) -> None:
        """Add a finished call's finite rows to the appearances of tracks still alive.

        A call that raised or gave only non-finite rows counts as a failed call; non-finite
        rows of a call that otherwise worked are dropped and counted."""
        self.timer.totals["embed"] += result.milliseconds
        if result.vectors is None:
            self.faults.failed("embed", result.error)
            return
        finite = np.isfinite(result.vectors).all(axis=1)
        if not finite.any():
            self.faults.failed("embed", f"all {len(finite)} embeddings were not finite")
            return
        self.faults.succeeded("embed")
        self.embedded += int(finite.sum())
        if not finite.all():
            bad = int((~finite).sum())
            self.faults.dropped("non-finite embedding", f"{bad} of {len(finite)} crops gave "
                                "non-finite embeddings (dropped)", bad)
        now = time.monotonic()
        job = result.job
        alive = {(m, t.track_id) for m, tracks in self.last_active.items() for t in tracks}
        for index, (key, vector) in enumerate(zip(job.keys, result.vectors, strict=True)):
            if not finite[index] or key not in alive:  # its track ended meanwhile
                continue
            self.book.add(key, vector, now)
            if self.gallery is not None:
                self._recognise(key, job.captured[index], job.frames[index])

    def _recognise(self, key: TrackKey, captured: float, frame: int) -> None:
        found = self.gallery.recognise(self.book.entries[key].vector,
                                       self.options.gallery_threshold)
        if found is not None and self.names.get(key) != found.name:
            self.names[key] = found.name
            self.events.emit(EventKind.RECOGNISED, captured, stream=STREAMS[key[0]], frame=frame,
                             track=key[1], name=found.name, similarity=found.similarity)

    def _end(self, modality: Modality, track: Track, frame: Frame | None) -> TrackKey:
        key = (modality, track.track_id)
        self.events.emit(EventKind.TRACK_ENDED, frame.timestamp if frame else None,
                         stream=STREAMS[modality], track=track.track_id,
                         frames=track.last_seen - track.first_frame + 1,
                         name=self.names.pop(key, None))
        if self.relinker is not None:
            self.relinker.end(key, self.book, frame.timestamp if frame else self.clock)
        self.book.drop(key)
        self.latest_crops.pop(key, None)
        if modality == Modality.VISIBLE:
            self.pair_geometry.forget(visible=track.track_id)
        else:
            self.pair_geometry.forget(infrared=track.track_id)
        return key

    def _person(self, key: TrackKey) -> int:
        return self.relinker.person_of(key) if self.relinker is not None else key[1]

    def end_stream(self, modality: Modality) -> None:
        """The stream ended: end its tracks and the matches they were in."""
        ended = {self._end(modality, t, None) for t in self.trackers[modality].close()}
        for event in self.matcher.update(self.book, ended, self._distances()):
            if event.kind == EventKind.UNMATCH:
                self.events.emit(EventKind.UNMATCH, None, visible_track=event.visible,
                                 infrared_track=event.infrared, reason=event.reason)


@dataclass
class RunSummary:
    rounds: int
    seconds: float
    processed: dict[str, int]
    captured: dict[str, int]
    dropped: dict[str, int]
    reconnects: dict[str, int]
    events: dict[str, int]
    latency_p50_ms: float
    latency_p95_ms: float
    faults: dict[str, int] = field(default_factory=dict)
    failure: str | None = None  # why the run ended early (a persistent failure), if it did
    embedded: int = 0  # crops embedded

    def lines(self) -> list[str]:
        per = ", ".join(f"{s}: {self.processed[s]} processed of {self.captured[s]} captured, "
                        f"{self.dropped[s]} dropped, {self.reconnects[s]} reconnects"
                        for s in self.processed)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.events.items())) or "none"
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        return [f"{self.rounds} rounds in {self.seconds:.1f} s; {per}; "
                f"{self.embedded} crops embedded",
                f"events: {counts}; latency capture→event p50 {self.latency_p50_ms:.0f} ms, "
                f"p95 {self.latency_p95_ms:.0f} ms; faults: {faults}"]


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """Ctrl-C / SIGTERM set the returned event instead of raising mid-round."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run(pipeline: Pipeline, sources: dict[Modality, FrameSource], ready: threading.Event,
        duration_s: float = 0.0, status_every_s: float = 5.0,
        on_round: Callable[[Pipeline, dict[Modality, Frame | None]], None] | None = None,
        stop: threading.Event | None = None) -> RunSummary:
    """Process rounds until both streams end, ``duration_s`` passes or ``stop`` is set.

    ``ready`` is the event the sources set when a frame arrives (see :class:`FrameSource`).
    When no source is real-time (files read as fast as they are processed), each round waits
    for every stream's next frame, so that frame n of one file is processed beside frame n
    of the other whatever either's decoding costs: the streams stay in step (what pairs and
    the cameras' view map need) and the run does not depend on timing. A persistent failure
    (:class:`PersistentFailure`) ends the loop early: the summary says why in
    :attr:`RunSummary.failure`, and the caller still closes its outputs normally.
    """
    stop = stop or threading.Event()
    started = last_status = time.monotonic()
    seen_state = {m: s.stats.state for m, s in sources.items()}
    ended: set[Modality] = set()
    rounds = 0
    failure = None
    lockstep = not any(s.realtime for s in sources.values())
    while not stop.is_set():
        if duration_s and time.monotonic() - started >= duration_s:
            break
        ready.clear()
        frames = {m: s.take(LOCKSTEP_WAIT_S if lockstep else 0.0) for m, s in sources.items()}
        try:
            if all(f is None for f in frames.values()):
                if len(ended) == len(sources):
                    break
                ready.wait(0.05)
            else:
                pipeline.process(frames)
                rounds += 1
                if on_round is not None:
                    on_round(pipeline, frames)
            pipeline.collect_sink_faults()
            pipeline.faults.check()
        except PersistentFailure as exc:
            failure = str(exc)
            break
        for modality, source in sources.items():
            state = source.stats.state
            if state != seen_state[modality]:
                seen_state[modality] = state
                pipeline.events.emit(EventKind.STREAM, stream=STREAMS[modality], state=state,
                                     message=source.stats.message)
            if modality not in ended and source.finished:
                ended.add(modality)
                pipeline.end_stream(modality)
        if status_every_s and time.monotonic() - last_status >= status_every_s:
            print(status_line(pipeline.snapshot(), sources, time.monotonic() - last_status),
                  file=sys.stderr, flush=True)
            pipeline.reset_counters()
            last_status = time.monotonic()
    for modality in sources:
        if modality not in ended:
            pipeline.end_stream(modality)
    pipeline.collect_sink_faults()
    p50, p95 = pipeline.events.latency_percentiles()
    return RunSummary(
        rounds, time.monotonic() - started,
        {STREAMS[m]: s.stats.taken for m, s in sources.items()},
        {STREAMS[m]: s.stats.captured for m, s in sources.items()},
        {STREAMS[m]: s.stats.dropped for m, s in sources.items()},
        {STREAMS[m]: s.stats.reconnects for m, s in sources.items()},
        dict(pipeline.events.counts), p50, p95, dict(pipeline.faults.counts), failure,
        pipeline.embedded)


def status_line(snapshot: PipelineSnapshot, sources: dict[Modality, FrameSource],
                elapsed: float) -> str:
    """One line on the last ``elapsed`` seconds: per-stream rates, pairing, stage times,
    tracks, matches and faults."""
    stages = " ".join(f"{k} {v:.0f}" for k, v in snapshot.stage_ms.items())
    streams = " | ".join(
        f"{STREAMS[m]} {snapshot.processed[m] / max(elapsed, 1e-9):.1f} fps, "
        f"{s.stats.dropped} dropped, {s.stats.state}" for m, s in sources.items())
    tracks = sum(len(v) for v in snapshot.tracks.values())
    pairs = (f"{snapshot.pairs} pairs (mean skew {snapshot.skew_ms / snapshot.pairs:.0f} ms)"
             if snapshot.pairs else "no pairs")
    faults = summarise(snapshot.faults)
    return (f"[deen run] {streams} | {pairs} | ms/round: {stages} | tracks {tracks}, "
            f"matches {len(snapshot.matches)}, embed queue {snapshot.pending}"
            + (f" | faults: {faults}" if faults else ""))


def _clean(boxes: np.ndarray, index: int, shape: tuple[int, ...]) -> bool:
    """Whether box ``index`` is whole (clear of the frame's edges) and not overlapped by
    another box of the frame by more than a tenth of its area."""
    x1, y1, x2, y2 = boxes[index]
    height, width = shape[:2]
    edge = 2.0
    if x1 < edge or y1 < edge or x2 > width - edge or y2 > height - edge:
        return False
    others = np.delete(boxes, index, axis=0)
    if len(others) == 0:
        return True
    overlap_w = np.clip(np.minimum(x2, others[:, 2]) - np.maximum(x1, others[:, 0]), 0, None)
    overlap_h = np.clip(np.minimum(y2, others[:, 3]) - np.maximum(y1, others[:, 1]), 0, None)
    return float((overlap_w * overlap_h).max()) <= 0.1 * (x2 - x1) * (y2 - y1)


def _crop(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    height, width = image.shape[:2]
    x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
    x2, y2 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    if x2 - x1 < 4 or y2 - y1 < 8:
        return None
    return image[y1:y2, x1:x2]
