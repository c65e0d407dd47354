"""``deen run --serve HOST:PORT``: a web view for operators of headless edge boxes.

While the run lasts, a Starlette app served by uvicorn on its own thread offers

- ``/``: a page with the live side-by-side annotated view, the current matches and gallery
  names, per-stream fps, drops and stage times, and the last events;
- ``/video.mjpg``: the annotated view as MJPEG, at most ``max_fps`` frames a second;
- ``/status.json``: the same status as JSON;
- ``/events``: the event stream as Server-Sent Events.

The pipeline never waits for a viewer. :class:`LiveView` is an output of the live loop like
the annotated video: each round it swaps in the newest status and, at the bounded rate and
only while someone watches, the newest JPEG. Viewers read whatever is newest when they are
ready for it, so a slow viewer skips frames instead of queueing them; each event-stream
viewer has a bounded queue whose overflow is dropped and counted. A viewer that disconnects
leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from deen.errors import DeenError
from deen.modality import Modality
from deen.runtime.annotate import render
from deen.runtime.pipeline import Pipeline
from deen.runtime.scene import STREAMS
from deen.runtime.sources import Frame, FrameSource

DEFAULT_HOST = "127.0.0.1"  # loopback unless the user names an address
EVENT_QUEUE = 256  # events buffered per /events viewer before its overflow is dropped
BOUNDARY = "deenframe"


@dataclass(frozen=True)
class ServeAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ServeAddress:
        """``HOST:PORT``, ``:PORT`` or ``PORT`` (loopback); port 0 picks a free one."""
        host, _, port = text.rpartition(":")
        host = host.strip("[]") or DEFAULT_HOST
        if not port.isdigit() or int(port) > 65535:
            raise DeenError(f"--serve {text}: expected HOST:PORT, :PORT or PORT "
                            "(e.g. 127.0.0.1:8080)")
        return cls(host, int(port))


class LiveView:
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
    def __call__(self, pipeline: Pipeline, frames: dict[Modality, Frame | None]) -> None:
        for modality, frame in frames.items():
            if frame is not None:
                self.latest[modality] = frame.image
        now = time.monotonic()
        if now - self._status_at >= self.status_every_s:
            self.status = self._snapshot(pipeline, now)
            self._status_at = now
        if (self.video_viewers or self.jpeg is None) and \
                now - self._rendered_at >= 1.0 / self.max_fps:
            ok, encoded = cv2.imencode(".jpg", render(pipeline, self.latest),
                                       [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if ok:
                self.jpeg, self.jpeg_index = encoded.tobytes(), self.jpeg_index + 1
            self._rendered_at = now

    def _snapshot(self, pipeline: Pipeline, now: float) -> dict[str, Any]:
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
                "tracks": len(pipeline.last_active[modality])}
        names = {f"{STREAMS[m]}:{track}": name for (m, track), name in pipeline.names.items()}
        return {
            "state": "running", "time": time.time(), "streams": streams,
            "stage_ms": {k: round(v, 1) for k, v in pipeline.timer.means().items()},
            "matches": [{"visible_track": v, "infrared_track": i}
                        for v, i in sorted(pipeline.matcher.confirmed)],
            "names": names, "faults": dict(pipeline.faults.counts),
            "events": dict(pipeline.events.counts), "viewers": self.video_viewers,
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
        self.status = {**self.status, "state": "ended"}

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
    from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def page(_request):
        return HTMLResponse(PAGE)

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
                             Route("/video.mjpg", video), Route("/events", events)])


class WebServer:
    """uvicorn on a daemon thread, on a socket bound here (so a busy port fails clearly)."""

    def __init__(self, view: LiveView, address: ServeAddress) -> None:
        import uvicorn

        try:
            self.socket = socket.create_server((address.host, address.port), reuse_port=False)
        except OSError as exc:
            raise DeenError(f"--serve {address.host}:{address.port}: cannot listen there "
                            f"({exc.strerror or exc})") from None
        self.host, self.port = self.socket.getsockname()[:2]
        self.closing = threading.Event()
        config = uvicorn.Config(build_app(view, self.closing), log_level="error",
                                lifespan="off", timeout_graceful_shutdown=2,
                                access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.socket]},
                                       name="deen-web", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> WebServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise DeenError(f"--serve {self.url}: the web server did not start")
        return self

    def stop(self) -> None:
        self.closing.set()  # open streams end, so shutdown does not wait for them
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.socket.close()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>deen run</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px system-ui, sans-serif; margin: 12px; background: #111; color: #ddd; }
h1 { font-size: 18px; margin: 0 0 8px; }
img { max-width: 100%; border: 1px solid #444; background: #000; }
.cols { display: flex; gap: 16px; flex-wrap: wrap; margin-top: 8px; }
.cols > div { flex: 1; min-width: 280px; }
table { border-collapse: collapse; }
td, th { padding: 2px 8px; border-bottom: 1px solid #333; text-align: left; }
#events { font: 12px monospace; white-space: pre; max-height: 320px; overflow: auto; }
.error { color: #f77; }
</style></head>
<body>
<h1>deen run: visible (left) and infrared (right)</h1>
<img id="view" src="/video.mjpg" alt="annotated side-by-side view">
<div class="cols">
 <div><h2>Streams</h2><table id="streams"></table>
  <p id="stages"></p><p id="faults"></p></div>
 <div><h2>Matches</h2><table id="matches"></table><h2>Names</h2><table id="names"></table></div>
 <div><h2>Last events</h2><div id="events"></div></div>
</div>
<script>
function rows(id, header, data) {
  const table = document.getElementById(id);
  table.replaceChildren();
  const head = table.insertRow();
  header.forEach(h => { const th = document.createElement("th"); th.textContent = h;
                        head.appendChild(th); });
  data.forEach(r => { const row = table.insertRow();
                      r.forEach(v => { row.insertCell().textContent = v; }); });
}
async function refresh() {
  try {
    const s = await (await fetch("/status.json", {cache: "no-store"})).json();
    rows("streams", ["stream", "state", "fps", "processed", "dropped", "tracks"],
         Object.entries(s.streams || {}).map(([k, v]) =>
           [k, v.state, v.fps, v.processed, v.dropped, v.tracks]));
    rows("matches", ["visible", "infrared"],
         (s.matches || []).map(m => ["V" + m.visible_track, "I" + m.infrared_track]));
    rows("names", ["track", "name"], Object.entries(s.names || {}));
    document.getElementById("stages").textContent = "ms per round: " +
      Object.entries(s.stage_ms || {}).map(([k, v]) => k + " " + v).join(", ");
    const faults = Object.entries(s.faults || {});
    document.getElementById("faults").textContent = faults.length ?
      "faults: " + faults.map(([k, v]) => k + " " + v).join(", ") : "";
    document.body.dataset.state = s.state;
  } catch (e) { document.body.dataset.state = "unreachable"; }
}
const log = document.getElementById("events");
const source = new EventSource("/events");
source.onmessage = null;
["track_started", "track_ended", "match", "unmatch", "recognised", "stream", "error"]
  .forEach(kind => source.addEventListener(kind, e => {
    const line = document.createElement("div");
    if (kind === "error") line.className = "error";
    const r = JSON.parse(e.data);
    const when = new Date(r.time * 1000).toLocaleTimeString();
    const rest = Object.entries(r).filter(([k]) => !["time", "event", "latency_ms"]
      .includes(k)).map(([k, v]) => k + "=" + JSON.stringify(v)).join(" ");
    line.textContent = when + " " + kind + " " + rest;
    log.prepend(line);
    while (log.childNodes.length > 50) log.removeChild(log.lastChild);
  }));
refresh(); setInterval(refresh, 1000);
</script>
</body></html>
"""
