"""``deen run`` and ``deen gallery``: the live pipeline put together from its parts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from deen.address import ListenAddress
from deen.backends.base import Embedder
from deen.errors import DeenError, ParameterError
from deen.fileio import IMAGE_SUFFIXES
from deen.modality import Modality
from deen.runtime.annotate import AnnotatedVideo, LiveWindow, display_available
from deen.runtime.detect import Detector, open_detector
from deen.runtime.event_sinks import open_event_sinks
from deen.runtime.events import EventLog
from deen.runtime.gallery import Gallery, StoreKind, model_id, store_format
from deen.runtime.outputs import Output
from deen.runtime.pipeline import Pipeline, RunSummary, run, stop_on_signals
from deen.runtime.settings import LiveSettings
from deen.runtime.sources import Frame, FrameSource, open_source
from deen.runtime.tracks_out import TracksWriter
from deen.runtime.web import LiveView, WebServer
from deen.runtime.web_access import web_access
from deen.streams import STREAMS
from deen.synthetic import make_people, render_person


def run_live(embedder: Embedder, model_path: Path | str, settings: LiveSettings,
             detector: Detector | None = None, events: EventLog | None = None,
             log: Callable[[str], None] = lambda line: None) -> RunSummary:
    """Open both streams, run until they end, ``run.duration_s`` or Ctrl-C; flush everything.

    ``model_path`` is the model's file (or served URL), which a gallery is tied to;
    ``detector`` replaces the one ``detection.detector`` names and ``events`` the log that
    ``outputs.events`` names (e.g. to read events back). Status lines and the web view's
    address go to ``log``.
    """
    out = settings.outputs
    check_embedder(embedder, model_path)
    if out.show and not display_available():
        raise ParameterError("show", out.show, "needs a display and an OpenCV build with a GUI "
                             "(this one is headless or DISPLAY is unset); record to a video "
                             "file instead")
    address = ListenAddress.parse(out.serve) if out.serve else None
    access = (web_access(address.host, settings.web.token_file or None, settings.web.tls)
              if address is not None else None)
    detector = detector or open_detector(settings.detection.detector)
    gallery = open_gallery(settings, model_path, embedder)
    ready = threading.Event()
    sources: dict[Modality, FrameSource] = {}
    events = events or open_events(settings)
    outputs: list[Output] = []
    server: WebServer | None = None
    pipeline: Pipeline | None = None
    src = settings.sources
    try:
        for modality, text in ((Modality.VISIBLE, src.rgb), (Modality.INFRARED, src.ir)):
            sources[modality] = open_source(STREAMS[modality], text, src.loop, src.fps,
                                            src.realtime, src.timeout_s, ready)
        if out.video_out:
            fps = sources[Modality.VISIBLE].frame_rate or 10.0
            outputs.append(AnnotatedVideo(Path(out.video_out), fps, frame_sizes={
                m: source.frame_size for m, source in sources.items()}))
        if out.show:
            outputs.append(LiveWindow())
        if out.tracks_out:
            outputs.append(TracksWriter(Path(out.tracks_out)))
        if address is not None:
            view = LiveView(sources)
            outputs.append(view)
            events.listeners.append(view.on_event)
            server = WebServer(view, address, access).start()
            log(f"web view: {server.login_url} ({server.access.note})")
        pipeline = Pipeline(embedder, detector, events, settings, gallery)

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
            summary = run(pipeline, sources, ready, settings.run.duration_s,
                          out.status_every_s, on_round if outputs else None, stop, log)
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


def open_gallery(settings: LiveSettings, model_path: Path | str,
                 embedder: Embedder) -> Gallery | None:
    """The gallery ``gallery.path`` names, if any (a file must exist: ``deen gallery add``
    creates one)."""
    where = settings.gallery.path
    if not where:
        return None
    if store_format(where).kind is StoreKind.SQLITE and not Path(where).is_file():
        raise ParameterError("gallery", where, "no such gallery file (deen gallery add creates "
                             "one)")
    return Gallery(where, model_id(model_path, embedder), embedder.dim, create=False)


def open_events(settings: LiveSettings) -> EventLog:
    """The run's event log with every target of ``outputs.events`` open (brokers
    connected): an unreachable one fails here, in one line."""
    return EventLog(open_event_sinks(settings.outputs.events, settings.outputs.site_name or None))


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

