"""The live loop: newest frames of both streams → the stages of a round → events.

One round takes the newest frame of each stream (capture threads drop the rest), pairs them
by timestamp and passes them through the stages (:mod:`deen.runtime.stages`): detect and
track people per stream, cut and level their crops, embed a budgeted set of tracks from
*both* streams in one mixed-modality call, match visible to infrared tracks, keep each
person's id across visits, name them from the gallery, and send what the round produced as
events. :func:`run` drives the rounds from two sources until they end.

Nothing that happens to one frame, crop or call ends a run (:mod:`deen.runtime.faults`): a
detector or embedder call that raises is counted and skipped for that round, and embedding
rows that are not finite are dropped before they reach an appearance, the matcher or the
gallery.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np

from deen.backends.base import Embedder
from deen.modality import Modality
from deen.runtime.detect import Detector
from deen.runtime.events import EventKind, EventLog
from deen.runtime.faults import Faults, PersistentFailure, summarise
from deen.runtime.gallery import Gallery
from deen.runtime.matching import TrackKey, one_person
from deen.runtime.settings import LiveSettings
from deen.runtime.sources import Frame, FrameSource
from deen.runtime.stages import (
    Crops,
    Detect,
    Embed,
    Emit,
    LevelLight,
    LiveState,
    Match,
    Name,
    Place,
    Relink,
    Round,
    Stage,
    Track,
)
from deen.streams import STREAMS

#: Longest a round of an offline (not real-time) run waits for a stream's next frame: a
#: stream that stays silent this long is processed without its partner meanwhile.
LOCKSTEP_WAIT_S = 10.0


@dataclass
class StageTimer:
    """Mean milliseconds per stage since the last status line."""

    stages: tuple[str, ...]
    totals: dict[str, float] = field(default_factory=dict)
    rounds: int = 0
    pairs: int = 0  # rounds whose two frames were close enough to be one moment
    skew_ms: float = 0.0  # summed capture-time difference of those pairs

    def __post_init__(self) -> None:
        self.reset()

    def means(self) -> dict[str, float]:
        return {k: v / max(self.rounds, 1) for k, v in self.totals.items()}

    def reset(self) -> None:
        self.totals = dict.fromkeys(self.stages, 0.0)
        self.rounds, self.pairs, self.skew_ms = 0, 0, 0.0


@dataclass(frozen=True)
class TrackView:
    """One active track as the outputs show it."""

    track_id: int
    box: np.ndarray  # x1, y1, x2, y2 in frame pixels (a read-only copy)
    # The other stream's track it is matched to, if confirmed and seen in that stream's
    # newest frame (a partner the detector missed there has no box to pair with), announced
    # (a held track shows no id to name), and both boxes hold one person
    # (matching.group_width: a box of several people is not one).
    partner: int | None
    name: str | None  # its gallery name, if it has one
    person: int = -1  # its person id in this stream (deen.runtime.relink); -1: the track id
    partner_person: int | None = None  # the partner's person id in the other stream
    # Its summed unit embeddings so far (the array is replaced, never changed, as crops are
    # added); None until its first crop is embedded.
    appearance: np.ndarray | None = None
    # Not announced yet (its person undecided, deen.runtime.identity): outputs show no id.
    held: bool = False

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
    pairs: int  # rounds whose two frames were close enough to be one moment
    skew_ms: float  # summed capture-time difference of those pairs
    pending: int  # tracks that wanted an embedding in the last round but did not get one
    faults: Mapping[str, int]  # failures per kind since the run started
    events: Mapping[str, int]  # events per kind since the run started


class Pipeline:
    """One round per :meth:`process` call, through the stages of :mod:`deen.runtime.stages`
    that ``settings`` asks for; :func:`run` drives it from two sources. Real-time runs
    (``sources.realtime``) embed on a worker thread, offline runs in the round (so that
    their results do not depend on timing)."""

    def __init__(self, embedder: Embedder, detector: Detector, events: EventLog,
                 settings: LiveSettings = LiveSettings(),
                 gallery: Gallery | None = None) -> None:
        self.settings, self.events = settings, events
        self.faults = Faults(self._report_fault, settings.run.fail_after_s)
        events.on_write_error = lambda exc: self.faults.failed("sink:events", exc)
        self.state = LiveState()
        self.track = Track(settings.tracking)
        self.place = Place(settings.matching.gate) if settings.view_map.enabled else None
        self.embed = Embed(embedder, self.faults, settings.embedding,
                           background=settings.sources.realtime)
        self.match = Match(settings.matching, self.place)
        self.relink = Relink(self.match, self.place, settings.relink)
        self.embed.settled = self.relink.settled
        naming = Name(gallery, self.faults, settings.gallery.threshold,
                      settings.gallery.refresh_s) if gallery is not None else None
        level = LevelLight() if settings.embedding.level_light else None
        candidates = [Detect(detector, self.faults), self.track, Crops(settings.embedding),
                      level, self.place, self.embed, self.match, self.relink, naming,
                      Emit(events, self.relink)]
        self.stages: list[Stage] = [s for s in candidates if s is not None]
        self.state.stages = self.stages
        self.timer = StageTimer(tuple(s.name for s in self.stages if s.name != "emit"))
        self.processed = dict.fromkeys(STREAMS, 0)
        self.latest: dict[Modality, float] = {}  # each stream's newest frame's capture time

    def process(self, frames: dict[Modality, Frame | None]) -> None:
        """One round over the frames taken (None: no new frame of that stream)."""
        present = {m: f for m, f in frames.items() if f is not None}
        round_ = Round(present)
        self.latest.update({m: f.timestamp for m, f in present.items()})
        if present and len(self.latest) == 2:
            # A new frame and the other stream's newest (the tracks' boxes there) are one
            # moment when close enough in time: cameras at different rates rarely deliver
            # both in one round.
            skew = abs(self.latest[Modality.VISIBLE] - self.latest[Modality.INFRARED])
            if skew <= self.settings.view_map.pair_skew_s:
                round_.paired = True
                self.timer.pairs += 1
                self.timer.skew_ms += 1000 * skew
        for modality in present:
            self.processed[modality] += 1
        self.state.clock = max(self.state.clock, round_.newest or 0.0)
        for stage in self.stages:
            start = time.perf_counter()
            stage(round_, self.state)
            if stage.name in self.timer.totals and stage is not self.embed:
                self.timer.totals[stage.name] += 1000 * (time.perf_counter() - start)
        # The embed stage's time is the model's (the worker's calls), not the round's wait.
        self.timer.totals["embed"] += self.embed.take_milliseconds()
        self.timer.rounds += 1

    def end_stream(self, modality: Modality) -> None:
        """The stream ended: end its tracks and the matches they were in."""
        round_ = Round({})
        self.track.close(modality, round_, self.state)
        for stage in (self.match, self.stages[-1]):
            stage(round_, self.state)

    def collect_sink_faults(self) -> None:
        """Count what the event sinks reported (a broker's outage, events dropped from a
        full outbox): faults that never end the run."""
        for kind, message, count in self.events.take_faults():
            self.faults.dropped(kind, message, count)

    def close(self) -> None:
        """Stop the embedding worker (a call in flight finishes first)."""
        self.embed.close()

    @property
    def embedded(self) -> int:
        """Crops embedded since the run started."""
        return self.state.embedded

    def person(self, key: TrackKey) -> int:
        """The person id of a live track (-1 before its first round's end)."""
        person = self.relink.person_of(key)
        return -1 if person is None else person

    def snapshot(self) -> PipelineSnapshot:
        """What the outputs show, copied: later rounds do not change it."""
        state, tracks = self.state, {}
        seen = {m: {t.track_id: t.box for t in active} for m, active in state.active.items()}
        width = self.match.matcher.settings.group_width
        for modality, active in state.active.items():
            views = []
            other = Modality.INFRARED if modality == Modality.VISIBLE else Modality.VISIBLE
            for track in active:
                box = np.array(track.box, copy=True)
                box.flags.writeable = False
                key = (modality, track.track_id)
                partner = self.match.partner(key)
                if partner not in seen.get(other, {}) or self.relink.held((other, partner)) \
                        or not (one_person(box, width) and one_person(seen[other][partner], width)):
                    partner = None
                entry = state.book.entries.get(key)
                views.append(TrackView(
                    track.track_id, box, partner, state.names.get(key), self.person(key),
                    None if partner is None else self.person((other, partner)),
                    None if entry is None else entry.total,
                    self.relink.held(key)))
            tracks[modality] = tuple(views)
        return PipelineSnapshot(
            tracks=MappingProxyType(tracks),
            matches=tuple(sorted(self.match.matcher.confirmed)),
            names=MappingProxyType(dict(state.names)),
            processed=MappingProxyType(dict(self.processed)),
            stage_ms=MappingProxyType(self.timer.means()),
            rounds=self.timer.rounds, pairs=self.timer.pairs, skew_ms=self.timer.skew_ms,
            pending=state.pending,
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
        stop: threading.Event | None = None,
        log: Callable[[str], None] = lambda line: None) -> RunSummary:
    """Process rounds until both streams end, ``duration_s`` passes or ``stop`` is set.

    ``ready`` is the event the sources set when a frame arrives (see :class:`FrameSource`).
    When no source is real-time (files read as fast as they are processed), each round waits
    for every stream's next frame, so that frame n of one file is processed beside frame n
    of the other whatever either's decoding costs: the streams stay in step (what pairs and
    the cameras' view map need) and the run does not depend on timing. Every
    ``status_every_s`` seconds a :func:`status_line` goes to ``log``. A persistent failure
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
    held: dict[Modality, Frame] = {}  # lockstep: a frame ahead of its partner, for later
    while not stop.is_set():
        if duration_s and time.monotonic() - started >= duration_s:
            break
        ready.clear()
        if lockstep:
            frames, held = in_step({m: held.pop(m, None) or s.take(LOCKSTEP_WAIT_S)
                                    for m, s in sources.items()}, sources)
        else:
            frames = {m: s.take(0.0) for m, s in sources.items()}
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
            if modality not in ended and source.finished and modality not in held:
                ended.add(modality)
                pipeline.end_stream(modality)
        if status_every_s and time.monotonic() - last_status >= status_every_s:
            log(status_line(pipeline.snapshot(), sources, time.monotonic() - last_status))
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


def in_step(frames: dict[Modality, Frame | None], sources: dict[Modality, FrameSource]
            ) -> tuple[dict[Modality, Frame | None], dict[Modality, Frame]]:
    """An offline round's frames, in step by their place in their files: a frame more than
    half a frame period later than its partner (two files at different frame rates) is held
    back for a later round. The frames of a round get one capture time, the round's, since
    files read as fast as they are processed were not captured at any real moment."""
    media = {m: f.position / sources[m].frame_rate for m, f in frames.items()
             if f is not None and sources[m].frame_rate}
    held: dict[Modality, Frame] = {}
    if len(media) == 2:
        first = min(media.values())
        slack = 0.5 / max(sources[m].frame_rate for m in media)
        held = {m: frames[m] for m, t in media.items() if t > first + slack}
    now = time.monotonic()
    return ({m: None if f is None or m in held else replace(f, timestamp=now)
             for m, f in frames.items()}, held)


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
    return (f"{streams} | {pairs} | ms/round: {stages} | tracks {tracks}, "
            f"matches {len(snapshot.matches)}, embed queue {snapshot.pending}"
            + (f" | faults: {faults}" if faults else ""))
