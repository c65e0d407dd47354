"""``deen run --serve``: a real ``deen run`` process serving its web view on every address
(0.0.0.0, so behind a generated token), reached over 127.0.0.1 only, read with a real HTTP
client and loaded in a real headless browser (Debian's Chromium)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from deen.models.checkpoint import random_model, save_checkpoint
from deen.runtime.events import SCHEMA_PATH, EventKind
from deen.runtime.web import STATIC
from deen.scenes import write_stream_pair

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Run:
    """``deen run --serve 0.0.0.0:0`` on a looped generated pair, its web token generated
    into ``state`` (``$XDG_STATE_HOME``); stderr read on a thread."""

    def __init__(self, scene, model: Path, state: Path) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DEEN_WEB_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deen", "run", "--rgb", str(scene.visible), "--ir",
             str(scene.infrared), "--loop", "--model", str(model), "--device", "cpu",
             "--detector", str(scene.boxes), "--events", "none", "--serve", "0.0.0.0:0",
             "--duration", "300", "--set", "outputs.status_every_s=0",
             "--set", "matching.threshold=0", "--set", "matching.without_map=true"],
            cwd=REPO, stderr=subprocess.PIPE, text=True,
            env={**environ, "XDG_STATE_HOME": str(state)})
        self.state = state
        self.lines: list[str] = []
        self.announced: str | None = None
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 120
        while self.announced is None and self.process.poll() is None and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.announced is not None, "".join(self.lines)
        port, self.token = re.match(r"http://0\.0\.0\.0:(\d+)/\?token=(\S+)",
                                    self.announced).groups()
        self.url = f"http://127.0.0.1:{port}/"  # bound everywhere, reached over loopback
        self.login_url = f"{self.url}?token={self.token}"

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            found = re.search(r"web view: (http://\S+)", line)
            if found:
                self.announced = found.group(1)

    def open(self, path: str, token: str | None = "", timeout: float = 10):
        """The response to ``GET path`` with the token as a bearer header (``""``: this
        run's token; None: none)."""
        headers = {} if token is None else {"Authorization": f"Bearer {token or self.token}"}
        request = urllib.request.Request(self.url + path.lstrip("/"), headers=headers)
        return urllib.request.urlopen(request, timeout=timeout)

    def get(self, path: str) -> bytes:
        with self.open(path) as response:
            return response.read()

    def status(self) -> dict:
        return json.loads(self.get("status.json"))

    def running_status(self, timeout: float = 60.0) -> dict:
        """The status once the first round has run: the web view is up before it, and
        answers ``"starting"`` until then (longer on a slow or busy machine)."""
        deadline = time.monotonic() + timeout
        status = self.status()
        while status["state"] == "starting" and time.monotonic() < deadline:
            time.sleep(0.2)
            status = self.status()
        return status

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web")
    scene = write_stream_pair(folder / "pair", people=3, seconds=4, fps=10, seed=2)
    model, _ = random_model("sysu", 0)
    save_checkpoint(model, folder / "m.pt", {"input_size": [64, 24]})
    run = _Run(scene, folder / "m.pt", folder / "state")
    yield run
    if run.process.poll() is None:
        run.process.kill()


def _mjpeg_frames(live: _Run, count: int) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    with live.open("video.mjpg", timeout=20) as response:
        assert "multipart/x-mixed-replace" in response.headers["Content-Type"]
        buffer = b""
        while len(frames) < count:
            buffer += response.read1(65536)
            start, end = buffer.find(b"\xff\xd8"), buffer.find(b"\xff\xd9")
            if start >= 0 and end > start:
                image = cv2.imdecode(np.frombuffer(buffer[start:end + 2], np.uint8),
                                     cv2.IMREAD_COLOR)
                assert image is not None
                frames.append(image)
                buffer = buffer[end + 2:]
    return frames


def test_every_path_wants_the_token_and_the_token_alone(live) -> None:
    kept = live.state / "deen" / "web-token"
    assert kept.read_text().strip() == live.token  # generated, owner-only
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    wrong = "x" * len(live.token)
    for path in ("", "video.mjpg", "status.json", "events"):
        for token in (None, wrong):
            with pytest.raises(urllib.error.HTTPError) as refused:
                live.open(path, token=token)
            assert refused.value.code == 401 and refused.value.read() == b"", (path, token)
        with live.open(path) as response:
            assert response.status == 200
    with urllib.request.urlopen(live.login_url, timeout=10) as response:  # a first visit
        cookie = response.headers["Set-Cookie"]
        assert b'<img id="view"' in response.read()
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    request = urllib.request.Request(live.url + "status.json",
                                     headers={"Cookie": cookie.split(";")[0]})
    with urllib.request.urlopen(request, timeout=10) as response:  # later visits
        assert json.loads(response.read())["state"] in ("starting", "running")


def test_status_video_and_events_while_the_run_lasts(live) -> None:
    status = live.running_status()
    assert status["state"] == "running" and set(status["streams"]) == {"rgb", "ir"}
    assert {"detect", "track", "embed", "match"} <= set(status["stage_ms"])
    frames = _mjpeg_frames(live, 2)
    height, width = frames[0].shape[:2]
    assert width > height  # the two camera views side by side
    left, right = frames[-1][:, : width // 2], frames[-1][:, width // 2:]
    assert left.mean() > right.mean() + 20  # visible corridor (left), infrared (right)
    with live.open("events", timeout=20) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        lines = []
        while not any(line.startswith(b"data: ") for line in lines):
            lines.append(response.readline())
    record = json.loads(next(line for line in lines if line.startswith(b"data: "))[6:])
    assert record["event"] in {"track_started", "track_ended", "match", "unmatch", "stream"}


def test_stalled_and_departed_viewers_cost_the_pipeline_nothing(live) -> None:
    host, port = re.match(r"http://([\d.]+):(\d+)/", live.url).groups()
    stalled = []
    for path in ("video.mjpg", "events"):  # ask, then never read
        connection = socket.create_connection((host, int(port)))
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        connection.sendall(f"GET /{path} HTTP/1.1\r\nHost: {host}\r\n"
                           f"Authorization: Bearer {live.token}\r\n\r\n".encode())
        stalled.append(connection)
    for _ in range(5):  # viewers that come and go
        _mjpeg_frames(live, 1)
    before = live.status()
    time.sleep(4)
    after = live.status()
    for stream in ("rgb", "ir"):  # rounds go on while a viewer stalls
        assert after["streams"][stream]["processed"] > before["streams"][stream]["processed"]
    assert after["viewers"] == 1  # the stalled one; the departed ones are gone
    for connection in stalled:
        connection.close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                             "(scripts/setup.sh --dev installs it)")
def test_the_page_in_a_headless_browser_shows_both_camera_views(live, tmp_path) -> None:
    shot = tmp_path / "page.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
         "--window-size=1280,900", "--timeout=5000", f"--screenshot={shot}",
         live.login_url], capture_output=True, timeout=120, check=True)
    page = cv2.imread(str(shot))
    assert page is not None and page.shape[:2] == (900, 1280)
    # The view sits under the title: the visible half (light corridor) left of the
    # infrared half (dark), both unlike the page's near-black background.
    view = page[60:380, 20:1260]
    left, right = view[:, :600], view[:, 640:]
    assert left.mean() > 90 and left.mean() > right.mean() + 30, (left.mean(), right.mean())
    # A rendered infrared scene (background about 30), not an empty black box or the page
    # (17); its spread depends on whether a person is in view, so it is not checked.
    assert right.mean() > 24, right.mean()
    # DEEN_WEB_SCREENSHOT=docs/web-view.png keeps the screenshot (the committed one).
    if os.environ.get("DEEN_WEB_SCREENSHOT"):
        shutil.copy(shot, os.environ["DEEN_WEB_SCREENSHOT"])
    # Without the token the browser gets nothing of the page.
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'stranger'}", "--timeout=3000", "--dump-dom",
         live.url], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "video.mjpg" not in dom and "HTTP ERROR 401" in dom, dom[-2000:]


def test_the_page_its_files_and_the_event_schema_are_served(live) -> None:
    page = live.get("/").decode()
    assert "<img id=\"view\" src=\"/video.mjpg\"" in page
    for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', page):
        assert live.get(asset) == (STATIC / asset.removeprefix("/static/")).read_bytes()
    assert {"/static/app.js", "/static/style.css"} <= set(
        re.findall(r'(?:href|src)="(/static/[^"]+)"', page))
    schema = json.loads(live.get("/schema.json"))
    assert schema == json.loads(SCHEMA_PATH.read_text())
    assert schema["properties"]["event"]["enum"] == [kind.value for kind in EventKind]
    assert "/schema.json" in live.get("/static/app.js").decode()


def test_run_ends_cleanly_on_ctrl_c_with_viewers_attached(live) -> None:
    with live.open("video.mjpg", timeout=20):
        assert live.stop() == 0
    assert "Traceback" not in "".join(live.lines)
    # The token is shown once, in the line that announced the address, and nowhere else.
    assert [line for line in live.lines if live.token in line] == [
        next(line for line in live.lines if "web view:" in line)]
    assert any("rounds in" in line for line in live.lines)


@pytest.mark.parametrize("serve, extra, environ, needle, code", [
    ("nowhere", [], {}, "--serve nowhere: expected HOST:PORT", 2),  # malformed
    ("busy", [], {}, "cannot listen there", 1),
    ("0.0.0.0:0", [], {"DEEN_WEB_TOKEN": "too-short"},
     "$DEEN_WEB_TOKEN: the web view's token must be at least 16 characters", 1),
    (":0", ["--set", "web.tls_cert=nothere.pem", "--set", "web.tls_key=key.pem"], {},
     "web.tls_cert nothere.pem: no such file", 1),
])
def test_bad_serve_settings_are_one_line(serve, extra, environ, needle, code, tmp_path) -> None:
    blocker = socket.create_server(("127.0.0.1", 0))
    if serve == "busy":
        serve = f"127.0.0.1:{blocker.getsockname()[1]}"
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "0.png"), np.zeros((64, 64, 3), np.uint8))
    model, _ = random_model("regdb", 0)
    save_checkpoint(model, tmp_path / "m.pt", {"input_size": [64, 24]})
    (tmp_path / "key.pem").write_text("not a key")
    done = subprocess.run([sys.executable, "-m", "deen", "run", "--rgb", str(frames), "--ir",
                           str(frames), "--model", str(tmp_path / "m.pt"), "--serve", serve,
                           *extra], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), **environ})
    blocker.close()
    assert done.returncode == code
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert "too-short" not in done.stderr  # a token is never shown
