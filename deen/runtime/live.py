"""``deen run`` and ``deen gallery``: the live pipeline put together from its parts."""

from __future__ import annotations

import hashlib
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from deen.backends.base import Embedder
from deen.errors import DeenError, ParameterError
from deen.fileio import IMAGE_SUFFIXES, sha256_file
from deen.modality import Modality
from deen.runtime.annotate import AnnotatedVideo, LiveWindow, display_available
from deen.runtime.detect import Detector, open_detector
from deen.runtime.event_sinks import MqttTarget, SinkKind, open_event_sinks, sink_format
from deen.runtime.events import EventLog
from deen.runtime.gallery import Gallery, StoreKind, store_format
from deen.runtime.outputs import Output
from deen.runtime.pipeline import Pipeline, PipelineOptions, RunSummary, run, stop_on_signals
from deen.runtime.sources import Frame, FrameSource, open_source
from deen.runtime.streams import STREAMS
from deen.runtime.tracks_out import TracksWriter
from deen.runtime.web import LiveView, ServeAddress, WebServer
from deen.runtime.web_access import web_access
from deen.synthetic import make_people, render_person


def model_id(path: Path | str, embedder: Embedder) -> str:
    """What a gallery's embeddings depend on: the model file (for a served model, the
    identity its manifest gives) and the embedding settings."""
    fingerprint = embedder.fingerprint()
    digest = (hashlib.sha256(fingerprint.encode()).hexdigest() if fingerprint is not None
              else sha256_file(path))
    return f"{digest[:16]}:{embedder.variant}:flip={embedder.config.flip}:a={embedder.config.a}"


@dataclass(frozen=True)
class LiveSettings:
    rgb: str
    ir: str
    detector: str = "motion"
    # Where events go: files, "-" (stdout), broker URLs (deen.runtime.event_sinks); a single
    # target may be given as a string, None for none.
    events: tuple[str, ...] | str | None = ("-",)
    site_name: str | None = None  # the box's name in broker topics (default: the host name)
    video_out: Path | None = None
    show: bool = False
    gallery: Path | str | None = None  # a SQLite file or a postgresql:// URL
    loop: bool = False
    duration_s: float = 0.0
    status_every_s: float = 5.0
    realtime: bool = True
    timeout_s: float = 5.0
    fps: float = 0.0  # pacing of files/folders; 0: the file's own rate (folders: 10)
    serve: str | None = None  # HOST:PORT of the web view (deen.runtime.web); None: off
    # The web view's token file and TLS (certificate, key) (deen.runtime.web_access); beyond
    # loopback a token is required, from this file, $DEEN_WEB_TOKEN(_FILE) or generated.
    serve_token_file: Path | None = None
    serve_tls: tuple[Path, Path] | None = None
    tracks_out: Path | None = None  # folder for tracks and matches (deen.runtime.tracks_out)
    settle_tracks: bool = True  # tracks_out's person ids settled when the run ends

    def __post_init__(self) -> None:
        """What can be checked before any stream or model opens."""
        events = self.events
        targets = () if events is None else (events,) if isinstance(events, str) else events
        object.__setattr__(self, "events", tuple(str(t) for t in targets))
        for target in self.events:
            if sink_format(target).kind is SinkKind.MQTT:
                MqttTarget.parse(target)
        if self.video_out is not None and Path(self.video_out).suffix.lower() != ".mp4":
            raise ParameterError("video_out", self.video_out,
                                 "must end in .mp4 (the annotated view is written as MPEG-4)")
        if self.gallery is not None:
            kind = store_format(self.gallery).kind
            if kind is StoreKind.SQLITE and not Path(self.gallery).is_file():
                raise ParameterError("gallery", self.gallery,
                                     "no such gallery file (deen gallery add creates one)")


def run_live(embedder: Embedder, model_path: Path, settings: LiveSettings,
             options: PipelineOptions | None = None,
             detector: Detector | None = None, events: EventLog | None = None) -> RunSummary:
    """Open both streams, run until they end, ``duration_s`` or Ctrl-C; flush everything.

    ``events`` replaces the log that ``settings.events`` names (e.g. to read events back).
    """
    # Real-time runs embed on a worker thread so that rounds keep pace with the cameras;
    # offline runs (every frame, as fast as possible) embed in the round.
    options = replace(options or PipelineOptions(), embed_in_background=settings.realtime)
    check_embedder(embedder, model_path)
    if settings.show and not display_available():
        raise ParameterError("show", settings.show, "needs a display and an OpenCV build with "
                             "a GUI (this one is headless or DISPLAY is unset); record to a "
                             "video file instead")
    address = ServeAddress.parse(settings.serve) if settings.serve is not None else None
    access = (web_access(address.host, settings.serve_token_file, settings.serve_tls)
              if address is not None else None)
    detector = detector or open_detector(settings.detector)
    gallery = (Gallery(settings.gallery, model_id(model_path, embedder), embedder.dim,
                       create=False) if settings.gallery is not None else None)
    ready = threading.Event()
    sources: dict[Modality, FrameSource] = {}
    events = events or open_events(settings)
    outputs: list[Output] = []
    server: WebServer | None = None
    pipeline: Pipeline | None = None
    try:
        for modality, text in ((Modality.VISIBLE, settings.rgb),
                               (Modality.INFRARED, settings.ir)):
            sources[modality] = open_source(STREAMS[modality], text, settings.loop,
                                            settings.fps, settings.realtime,
                                            settings.timeout_s, ready)
        if settings.video_out is not None:
            fps = sources[Modality.VISIBLE].frame_rate or 10.0
            outputs.append(AnnotatedVideo(settings.video_out, fps, frame_sizes={
                m: source.frame_size for m, source in sources.items()}))
        if settings.show:
            outputs.append(LiveWindow())
        if settings.tracks_out is not None:
            outputs.append(TracksWriter(settings.tracks_out,
                                        settle=settings.settle_tracks and options.relink,
                                        lead=options.relink_lead))
        if address is not None:
            view = LiveView(sources)
            outputs.append(view)
            events.listeners.append(view.on_event)
            server = WebServer(view, address, access).start()
            print(f"[deen run] web view: {server.login_url} ({server.access.note})",
                  file=sys.stderr, flush=True)
        pipeline = Pipeline(embedder, detector, events, options, gallery)

        def on_round(p: Pipeline, frames: dict[Modality, Frame | None]) -> None:
            snapshot = p.snapshot()
            for output in outputs:  # a failing sink costs its own output, not the run
                kind = f"sink:{output.name}"
                try:
                    output(snapshot, frames)
                except Exception as exc:
                    p.faults.failed(kind, exc)
                else:
                    p.faults.succeeded(kind)

        with stop_on_signals() as stop:
            summary = run(pipeline, sources, ready, settings.duration_s,
                          settings.status_every_s, on_round if outputs else None, stop)
        for output in outputs:
            output.close()
        outputs.clear()
        events.close()  # a broker's outbox drains here; what it could not send is counted
        for kind, _, count in events.faults_at_close():
            summary.faults[kind] = summary.faults.get(kind, 0) + count
        return summary
    finally:
        if pipeline is not None:
            pipeline.close()
        if server is not None:
            server.stop()
        for source in sources.values():
            source.stop()
        for output in outputs:  # only on an error: nothing half-written is left
            output.discard()
        events.close()
        if gallery is not None:
            gallery.close()


def open_events(settings: LiveSettings) -> EventLog:
    """The run's event log with every target of ``settings.events`` open (brokers
    connected): an unreachable one fails here, in one line."""
    return EventLog(open_event_sinks(settings.events, settings.site_name))


def check_embedder(embedder: Embedder, model_path: Path) -> None:
    """Refuse a model that gives non-finite embeddings for generated people of both
    modalities: every crop of a live run would be dropped."""
    rng = np.random.default_rng(0)
    person = make_people(1, seed=0)[0]
    crops = [render_person(person, m, rng) for m in (Modality.VISIBLE, Modality.INFRARED)]
    vectors = embedder.embed(crops, [Modality.VISIBLE, Modality.INFRARED])
    if not np.isfinite(vectors).all():
        raise DeenError(f"{model_path}: gives non-finite embeddings for a generated person "
                        "(a degenerate checkpoint, e.g. all-zero pooled features); every crop "
                        "of the run would be dropped")


def enrol(gallery_path: Path | str, name: str, images: Path, modality: Modality,
          embedder: Embedder, model_path: Path) -> int:
    """Embed every image in the folder ``images`` and add them to the gallery under ``name``."""
    if not images.is_dir():
        raise ParameterError("images", images, "not a folder")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ParameterError("images", images, f"no images ({', '.join(IMAGE_SUFFIXES)})")
    crops = []
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DeenError(f"{path}: not a readable image")
        crops.append(image)
    vectors = embedder.embed(crops, modality)
    if not np.isfinite(vectors).all():
        raise DeenError(f"{images}: the model produced non-finite embeddings")
    with Gallery(gallery_path, model_id(model_path, embedder), embedder.dim) as gallery:
        return gallery.add(name, modality, vectors, [str(p) for p in files])

