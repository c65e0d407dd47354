"""``deen run --serve HOST:PORT``: a web view for operators of headless edge boxes.

While the run lasts, a Starlette app served by uvicorn on its own thread offers

- ``/``: a page with the live side-by-side annotated view, the current matches and gallery
  names, per-stream fps, drops and stage times, and the last events (its HTML, CSS and
  JavaScript are the files in ``static/`` beside this module, also served under
  ``/static/``);
- ``/video.mjpg``: the annotated view as MJPEG, at most ``max_fps`` frames a second;
- ``/status.json``: the same status as JSON;
- ``/events``: the event stream as Server-Sent Events, one SSE event name per event kind;
- ``/schema.json``: the JSON Schema of those events (:data:`deen.runtime.events.SCHEMA_PATH`),
  from which the page learns the event kinds.

The pipeline never waits for a viewer. :class:`LiveView` is an output of the live loop like
the annotated video: each round it swaps in the newest status and, at the bounded rate and
only while someone watches, the newest JPEG. Viewers read whatever is newest when they are
ready for it, so a slow viewer skips frames instead of queueing them; each event-stream
viewer has a bounded queue whose overflow is dropped and counted. A viewer that disconnects
leaves nothing behind.

Who may watch is :class:`~deen.runtime.web_access.WebAccess`'s to decide: open on loopback,
a token everywhere else, optionally over TLS; every path above is behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deen.address import ListenAddress
from deen.errors import ParameterError
from deen.modality import Modality
from deen.runtime.annotate import render
from deen.runtime.events import SCHEMA_PATH
from deen.runtime.outputs import Output
from deen.runtime.pipeline import PipelineSnapshot
from deen.runtime.sources import Frame, FrameSource
from deen.runtime.web_access import WebAccess
from deen.streams import STREAMS

EVENT_QUEUE = 256  # events buffered per /events viewer before its overflow is dropped
BOUNDARY = "deenframe"
#: The page's files: ``index.html`` (served at ``/``), ``style.css`` and ``app.js``.
STATIC = Path(__file__).with_name("static")


class LiveView(Output):
    """The live loop's output for the web view: newest JPEG, newest status, event fan-out."""

    name = "web"

    def __init__(self, sources: dict[Modality, FrameSource], max_fps: float = 5.0,
                 status_every_s: float = 0.5, jpeg_quality: int = 75) -> None:
        self.sources, self.max_fps, self.status_every_s = sources, max_fps, status_every_s
        self.jpeg_quality = jpeg_quality
        self.latest: dict[Modality, np.ndarray | None] = {}
        self.jpeg: bytes | None = None
        self.jpeg_index = 0  # bumped with every new JPEG; viewers wait for it to change
        self.status: dict[str, Any] = {"state": "starting"}
        self.recent_events: deque[dict[str, Any]] = deque(maxlen=20)
        self.video_viewers = 0
        self.dropped_events = 0
        self._rendered_at = self._status_at = 0.0
        self._taken = {m: (0, time.monotonic()) for m in sources}
        self._fps = dict.fromkeys(sources, 0.0)
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self._lock = threading.Lock()

    # -- pipeline side -------------------------------------------------------------------
    def __call__(self, snapshot: PipelineSnapshot,
                 frames: Mapping[Modality, Frame | None]) -> None:
        for modality, frame in frames.items():
            if frame is not None:
                self.latest[modality] = frame.image
        now = time.monotonic()
        if now - self._status_at >= self.status_every_s:
            self.status = self._status(snapshot, now)
            self._status_at = now
        if (self.video_viewers or self.jpeg is None) and \
                now - self._rendered_at >= 1.0 / self.max_fps:
            ok, encoded = cv2.imencode(".jpg", render(snapshot, self.latest),
                                       [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if ok:
                self.jpeg, self.jpeg_index = encoded.tobytes(), self.jpeg_index + 1
            self._rendered_at = now

    def _status(self, snapshot: PipelineSnapshot, now: float) -> dict[str, Any]:
        """``/status.json``: the snapshot and the sources' counters, as plain JSON."""
        streams = {}
        for modality, source in self.sources.items():
            taken, since = self._taken[modality]
            if now - since >= 1.0:
                self._fps[modality] = (source.stats.taken - taken) / (now - since)
                self._taken[modality] = (source.stats.taken, now)
            streams[STREAMS[modality]] = {
                "state": source.stats.state, "fps": round(self._fps[modality], 2),
                "captured": source.stats.captured, "processed": source.stats.taken,
                "dropped": source.stats.dropped, "reconnects": source.stats.reconnects,
                "tracks": len(snapshot.tracks[modality])}
        names = {f"{STREAMS[m]}:{track}": name for (m, track), name in snapshot.names.items()}
        persons = {(m, t.track_id): t.person_id for m, views in snapshot.tracks.items()
                   for t in views if not t.held}
        return {
            "state": "running", "time": time.time(), "streams": streams,
            "stage_ms": {k: round(v, 1) for k, v in snapshot.stage_ms.items()},
            "matches": [{"visible_track": v, "infrared_track": i,
                         "person": persons.get((Modality.VISIBLE, v))}
                        for v, i in snapshot.matches],
            "persons": {f"{STREAMS[m]}:{track}": person
                        for (m, track), person in persons.items()},
            "names": names, "faults": dict(snapshot.faults),
            "events": dict(snapshot.events), "viewers": self.video_viewers,
            "dropped_events": self.dropped_events}

    def on_event(self, record: dict[str, Any]) -> None:
        """An event from the pipeline thread: keep it for the page, hand it to each
        /events viewer without waiting (a full queue drops it)."""
        self.recent_events.append(record)
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            with contextlib.suppress(RuntimeError):  # that viewer's loop is closing
                loop.call_soon_threadsafe(self._offer, queue, record)

    def _offer(self, queue: asyncio.Queue, record: dict[str, Any]) -> None:
        try:
            queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped_events += 1

    def close(self) -> None:
        """The run ended: viewers still connected see ``"state": "ended"``."""
        self.status = {**self.status, "state": "ended"}

    def discard(self) -> None:
        """Nothing is kept either way: the same as :meth:`close`."""
        self.close()

    # -- viewer side (the server's event loop) -------------------------------------------
    async def frames(self, closing: threading.Event) -> AsyncIterator[bytes]:
        """Multipart JPEG parts, each the newest frame when the viewer is ready for one."""
        self.video_viewers += 1
        try:
            seen = -1
            while not closing.is_set():
                if self.jpeg is None or self.jpeg_index == seen:
                    await asyncio.sleep(0.5 / self.max_fps)
                    continue
                seen, jpeg = self.jpeg_index, self.jpeg
                yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                       f"Content-Length: {len(jpeg)}\r\n\r\n").encode() + jpeg + b"\r\n"
        finally:
            self.video_viewers -= 1

    async def events(self, closing: threading.Event) -> AsyncIterator[str]:
        """Server-Sent Events: the recent events first, then each new one."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=EVENT_QUEUE)
        entry = (asyncio.get_running_loop(), queue)
        with self._lock:
            self._subscribers.add(entry)
        try:
            for record in list(self.recent_events):
                yield _sse(record)
            while not closing.is_set():
                try:
                    record = await asyncio.wait_for(queue.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield _sse(record)
        finally:
            with self._lock:
                self._subscribers.discard(entry)


def _sse(record: dict[str, Any]) -> str:
    return f"event: {record['event']}\ndata: {json.dumps(record)}\n\n"


def build_app(view: LiveView, closing: threading.Event):
    """The Starlette application over ``view``."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    async def page(_request):
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def schema(_request):
        return FileResponse(SCHEMA_PATH, media_type="application/json")

    async def status(_request):
        return JSONResponse(view.status)

    async def video(_request):
        return StreamingResponse(view.frames(closing),
                                 media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                                 headers={"Cache-Control": "no-store"})

    async def events(_request):
        return StreamingResponse(view.events(closing), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    return Starlette(routes=[Route("/", page), Route("/status.json", status),
                             Route("/video.mjpg", video), Route("/events", events),
                             Route("/schema.json", schema),
                             Mount("/static", StaticFiles(directory=STATIC), name="static")])


class WebServer:
    """uvicorn on a daemon thread, on a socket bound here (so a busy port fails clearly),
    letting in whom ``access`` allows (default: everyone)."""

    def __init__(self, view: LiveView, address: ListenAddress,
                 access: WebAccess | None = None) -> None:
        import uvicorn

        self.access = access or WebAccess()

        try:
            self.socket = socket.create_server((address.host, address.port), reuse_port=False)
        except OSError as exc:
            raise ParameterError("serve", f"{address.host}:{address.port}",
                                 f"cannot listen there ({exc.strerror or exc})") from None
        self.host, self.port = self.socket.getsockname()[:2]
        self.closing = threading.Event()
        # No access log: a first visit's URL carries the token.
        config = uvicorn.Config(self.access.gate(build_app(view, self.closing), self.port),
                                log_level="error", lifespan="off",
                                timeout_graceful_shutdown=2, access_log=False,
                                ssl_certfile=self.access.certfile,
                                ssl_keyfile=self.access.keyfile)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.socket]},
                                       name="deen-web", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.access.scheme}://{host}:{self.port}/"

    @property
    def login_url(self) -> str:
        """:attr:`url`, with the token when it was generated by this start (the operator
        has no other way to learn it): for the one line that says where to look, the only
        place the token is ever shown."""
        if self.access.token is None or not self.access.generated:
            return self.url
        return f"{self.url}?token={self.access.token}"

    def start(self) -> WebServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise ParameterError("serve", f"{self.host}:{self.port}",
                                 "the web server did not start")
        return self

    def stop(self) -> None:
        self.closing.set()  # open streams end, so shutdown does not wait for them
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.socket.close()
