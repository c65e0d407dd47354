"""Camera streams: one capture thread per stream that keeps only the newest frame.

A live pipeline must never fall behind its cameras. Each :class:`FrameSource` reads its
stream on its own thread and holds exactly one frame, the newest; a frame that is replaced
before the pipeline took it is counted as dropped. Memory therefore stays flat however slow
the consumer is.

A source is a video file, a camera index, an RTSP/HTTP URL or a folder of images, all read
with OpenCV. Files and folders are paced at their frame rate (they stand in for a camera);
the end of a file ends that stream, or starts it again with ``loop``. A live stream that is
lost is reopened with exponential backoff, for as long as the pipeline runs.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from deen.errors import DeenError, ParameterError, redact_url
from deen.fileio import IMAGE_SUFFIXES
from deen.settings import Section, setting

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class SourceSettings(Section):
    """The two streams: what they are and how they are read (:class:`FrameSource`)."""

    rgb: str = setting("", "the visible stream: a video file, an image folder, a camera index "
                           "or an rtsp:// / http:// URL")
    ir: str = setting("", "the infrared stream (as rgb)")
    loop: bool = setting(False, "restart video files at their end")
    realtime: bool = setting(True, "pace files as cameras and drop frames the pipeline has no "
                                   "time for (false: every frame, as fast as possible)")
    fps: float = setting(0.0, "pace of files and folders (0: the file's own rate; folders 10)",
                         at_least=0.0)
    timeout_s: float = setting(5.0, "give up opening or reading a URL after this long",
                               above=0.0)


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # H×W×3 uint8 BGR
    timestamp: float  # time.monotonic() when the frame was captured
    index: int  # position in its stream (counts every frame read, dropped or not)
    position: int  # frame number within the file or folder (restarts when it loops); = index live


@dataclass(frozen=True)
class SourceSpec:
    """What a source text names: ``kind`` is file, camera, url or folder."""

    kind: str
    target: str

    @classmethod
    def parse(cls, text: str, parameter: str = "source") -> SourceSpec:
        """A camera index, an ``rtsp://``/``http://`` URL, a folder or a file;
        ``parameter`` names the text in the error when it is none of these."""
        if _URL.match(text):
            return cls("url", text)
        if text.isdigit():
            return cls("camera", text)
        path = Path(text)
        if path.is_dir():
            return cls("folder", text)
        if path.is_file():
            return cls("file", text)
        raise ParameterError(parameter, text, "no such file or folder (expected a video file, "
                             "an image folder, a camera index or an rtsp:// / http:// URL)")

    @property
    def shown(self) -> str:
        """The target as messages, events and the status name it: a URL's password
        starred."""
        return redact_url(self.target)

    @property
    def live(self) -> bool:
        """Live sources are reconnected when lost; files and folders end."""
        return self.kind in ("camera", "url")


@dataclass
class SourceStats:
    captured: int = 0  # frames read from the stream
    taken: int = 0  # frames handed to the pipeline
    dropped: int = 0  # frames replaced by a newer one before the pipeline took them
    reconnects: int = 0
    state: str = "starting"  # starting, live, reconnecting, ended, failed
    message: str = ""
    loops: int = 0


@dataclass(frozen=True)
class Backoff:
    """Reconnection delays: ``initial``, doubling up to ``maximum`` seconds."""

    initial: float = 0.5
    maximum: float = 8.0

    def delays(self):
        delay = self.initial
        while True:
            yield delay
            delay = min(delay * 2, self.maximum)


class _Reader:
    """The stream behind a source: ``read()`` → image or None at end/loss."""

    def __init__(self, spec: SourceSpec, fps: float, timeout_s: float) -> None:
        self.spec, self.timeout_s = spec, timeout_s
        self.capture: cv2.VideoCapture | None = None
        self.files: list[Path] = []
        self.position = 0
        self.fps = fps
        self.total = 0

    def open(self) -> None:
        """Open the stream and read nothing; raises :class:`DeenError` saying why not."""
        spec = self.spec
        if spec.kind == "folder":
            self.files = sorted(p for p in Path(spec.target).iterdir()
                                if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise DeenError(f"{spec.shown}: no images ({', '.join(IMAGE_SUFFIXES)}) "
                                "in this folder")
            self.position, self.total = 0, len(self.files)
            return
        timeout_ms = int(self.timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms,
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        if spec.kind == "camera":
            capture = cv2.VideoCapture(int(spec.target))
        else:
            capture = cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            what = {"camera": f"camera {spec.target}: cannot open this camera",
                    "url": f"{spec.shown}: cannot connect (unreachable, refused or no video "
                           f"within {self.timeout_s:g} s)",
                    "file": f"{spec.shown}: not a readable video (corrupt, truncated or an "
                            "unsupported format)"}[spec.kind]
            raise DeenError(what)
        if spec.kind == "file":
            native = capture.get(cv2.CAP_PROP_FPS)
            if not self.fps and 0 < native < 1000:
                self.fps = native
            self.total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.capture = capture
        self.position = 0

    def read(self) -> np.ndarray | None:
        if self.spec.kind == "folder":
            while self.position < len(self.files):
                path = self.files[self.position]
                self.position += 1
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is not None:
                    return image
            return None
        assert self.capture is not None
        ok, image = self.capture.read()
        if not ok or image is None:
            return None
        self.position += 1
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        return image

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


@dataclass
class FrameSource:
    """One stream read on its own thread; :meth:`take` returns the newest unseen frame.

    ``fps`` paces files and folders (default: the file's own rate, 10 for folders);
    ``realtime=False`` reads them as fast as the consumer allows (one frame per
    :meth:`take`, nothing dropped; for offline processing and tests).
    """

    name: str
    spec: SourceSpec
    loop: bool = False
    fps: float = 0.0
    realtime: bool = True
    timeout_s: float = 5.0
    backoff: Backoff = field(default_factory=Backoff)
    stats: SourceStats = field(default_factory=SourceStats)
    ready: threading.Event | None = None  # set whenever a frame arrives or the stream ends

    def __post_init__(self) -> None:
        self._reader = _Reader(self.spec, self.fps or (10.0 if self.spec.kind == "folder"
                                                       else 0.0), self.timeout_s)
        self._lock = threading.Condition()
        self._newest: Frame | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._index = 0

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FrameSource:
        """Open the stream now (so a bad source fails here, clearly), then read on a thread."""
        self._reader.open()
        self.stats.state = "live"
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 2)
        self._reader.close()

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the stream's frames as it declares them once open (a file or
        camera says; a folder's first image), None when it does not."""
        reader = self._reader
        if reader.capture is not None:
            width = int(reader.capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
            height = int(reader.capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
            return (width, height) if width > 0 and height > 0 else None
        if reader.files:
            image = cv2.imread(str(reader.files[0]), cv2.IMREAD_COLOR)
            return None if image is None else (image.shape[1], image.shape[0])
        return None

    @property
    def frame_rate(self) -> float:
        """Frames per second of a file or folder (0 when a live stream does not say)."""
        return self._reader.fps

    @property
    def finished(self) -> bool:
        """The stream ended (or failed) and its last frame has been taken."""
        with self._lock:
            return self.stats.state in ("ended", "failed") and self._newest is None

    # -- consumer side -------------------------------------------------------------------
    def take(self, wait_s: float = 0.0) -> Frame | None:
        """The newest frame not yet taken (waiting up to ``wait_s``), or None."""
        with self._lock:
            if self._newest is None and wait_s > 0:
                self._lock.wait_for(lambda: self._newest is not None or self._stop.is_set()
                                    or self.stats.state in ("ended", "failed"), wait_s)
            frame, self._newest = self._newest, None
            if frame is not None:
                self.stats.taken += 1
                self._lock.notify_all()
            return frame

    # -- capture thread ------------------------------------------------------------------
    def _publish(self, image: np.ndarray) -> None:
        position = self._reader.position - 1 if not self.spec.live else self._index
        frame = Frame(image, time.monotonic(), self._index, position)
        self._index += 1
        with self._lock:
            if not self.realtime:  # offline: hand over every frame, wait for the consumer
                self._lock.wait_for(lambda: self._newest is None or self._stop.is_set())
            if self._newest is not None:
                self.stats.dropped += 1
            self._newest = frame
            self.stats.captured += 1
            self._lock.notify_all()
        if self.ready is not None:
            self.ready.set()

    def _run(self) -> None:
        period = 1.0 / self._reader.fps if self.realtime and self._reader.fps else 0.0
        next_due = time.monotonic()
        while not self._stop.is_set():
            image = self._reader.read()
            if image is None:
                if not self._handle_end():
                    break
                next_due = time.monotonic()
                continue
            if period:
                next_due += period
                delay = next_due - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                elif delay < -period:  # fell behind (e.g. after a pause): do not burst
                    next_due = time.monotonic()
            self._publish(image)

    def _handle_end(self) -> bool:
        """End of stream or a lost connection: True to go on reading, False to stop."""
        reader = self._reader
        if not self.spec.live:
            if reader.total and reader.position < reader.total and self.spec.kind == "file":
                self.stats.message = (f"{self.spec.shown}: ended early at frame "
                                      f"{reader.position} of {reader.total} (truncated?)")
            if self.loop and reader.position > 0:
                reader.close()
                try:
                    reader.open()
                except DeenError as exc:
                    return self._fail(str(exc))
                self.stats.loops += 1
                return True
            with self._lock:
                self.stats.state = "ended"
                self._lock.notify_all()
            if self.ready is not None:
                self.ready.set()
            return False
        reader.close()
        self.stats.state = "reconnecting"
        for delay in self.backoff.delays():
            if self._stop.wait(delay):
                return False
            try:
                reader.open()
            except DeenError as exc:
                self.stats.message = str(exc)
                continue
            self.stats.reconnects += 1
            self.stats.state = "live"
            self.stats.message = ""
            return True
        return False  # pragma: no cover (the delays never run out)

    def _fail(self, message: str) -> bool:
        with self._lock:
            self.stats.state, self.stats.message = "failed", message
            self._lock.notify_all()
        return False


def quiet_video_backends() -> None:
    """Keep FFmpeg's and OpenCV's own console messages (``moov atom not found``, …) off the
    terminal: :class:`FrameSource` reports every failure itself, in one line. Called by the
    command line (not with ``--debug``); both libraries read these at their first use."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def open_source(name: str, text: str, loop: bool = False, fps: float = 0.0,
                realtime: bool = True, timeout_s: float = 5.0,
                ready: threading.Event | None = None) -> FrameSource:
    """Parse a source text and start its capture thread; ``name`` is the stream's name
    (``rgb``/``ir``), also the parameter named in a parse error."""
    spec = SourceSpec.parse(text, name)
    return FrameSource(name, spec, loop=loop, fps=fps, realtime=realtime,
                       timeout_s=timeout_s, ready=ready).start()

