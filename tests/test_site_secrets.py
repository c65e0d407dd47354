"""Secrets on a site: the PostgreSQL gallery takes its password from ``$PGPASSWORD`` or
``~/.pgpass`` (libpq's own conventions) with nothing secret on the command line; a password
given in a URL anyway is warned about once, starred, and appears in no output: not on
stdout or stderr, in no event (file or broker), not in the web view's status, and in no
error of any URL-taking option (``--gallery``, ``--events``, ``--rgb``/``--ir``,
``--model``). Real PostgreSQL and Mosquitto servers on loopback ports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_person_images
from servers import Mosquitto, Postgres, free_port

from deen.backends import open_embedder
from deen.errors import redact, redact_url, url_has_password
from deen.modality import Modality
from deen.runtime.gallery import Gallery
from deen.runtime.live import model_id
from deen.scenes import write_stream_pair
from deen.synthetic import make_people, render_person

REPO = Path(__file__).resolve().parents[1]
psycopg = pytest.importorskip("psycopg")
mqtt = pytest.importorskip("paho.mqtt.client")
PG_SECRET = "pg-Secret-4711"  # the server's password (tests/servers.py's Postgres)
MQ_SECRET = "mq-Secret-0815"


def test_passwords_are_starred_in_every_url_form() -> None:
    cases = {
        "postgresql://u:pw-1@h/db": "postgresql://u:***@h/db",
        "mqtt://u:p@ss-2@h/deen": "mqtt://u:***@h/deen",  # an unescaped @ in the password
        "rtsp://u:p/ss-3@cam:554/live": "rtsp://u:***@cam:554/live",  # an unescaped /
        "postgresql://h/db?user=u&password=pw-4&sslmode=off":
            "postgresql://h/db?user=u&password=***&sslmode=off",
        "postgresql://u:p%40ss-5@h/db": "postgresql://u:***@h/db",
    }
    for url, shown in cases.items():
        assert redact_url(url) == shown and url_has_password(url), url
    for url in ("postgresql://u@h/db", "mqtt://h/deen", "rtsp://cam:554/live", "gallery.db"):
        assert redact_url(url) == url and not url_has_password(url), url
    assert not url_has_password("postgresql://u:@h/db")  # an empty one is none
    # A driver's message may quote the password itself, as written or decoded.
    assert redact("auth failed for p@ss-5 at postgresql://u:p%40ss-5@h/db",
                  "postgresql://u:p%40ss-5@h/db") == "auth failed for *** at postgresql://u:***@h/db"


@pytest.fixture(scope="module")
def postgres():
    with Postgres(PG_SECRET) as server:
        yield server


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_stream_pair(tmp_path_factory.mktemp("scene") / "pair", people=3, seconds=4,
                             fps=10, seed=2)


def _clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without any PostgreSQL or MQTT password, plus ``extra``."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("PG") and k != "DEEN_MQTT_PASSWORD"}
    return {**environ, **extra}


def _deen(*args: str, env: dict[str, str] | None = None, timeout: float = 120
          ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deen", *args], capture_output=True,
                          text=True, cwd=REPO, env=env or _clean_environ(), timeout=timeout)


def _database(postgres: Postgres, name: str) -> str:
    """A fresh database; its URL without the password."""
    with psycopg.connect(postgres.url(), autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        db.execute(f"CREATE DATABASE {name}")
    return postgres.address(name)


def test_the_gallery_takes_its_password_from_pgpassword_and_pgpass(
        postgres, small_model, tmp_path) -> None:
    url = _database(postgres, "from_environment")
    people = write_person_images(tmp_path / "alice", 2, seed=3)
    # $PGPASSWORD
    added = _deen("gallery", "add", "alice", "--images", str(people), "--modality", "visible",
                  "--model", str(small_model), "--device", "cpu", "--gallery", url,
                  env=_clean_environ(PGPASSWORD=PG_SECRET))
    assert added.returncode == 0, added.stderr
    assert "added 2 visible images of alice" in added.stdout and added.stderr == ""
    # ~/.pgpass (libpq reads it only when no one else may: mode 0600)
    home = tmp_path / "home"
    home.mkdir()
    pgpass = home / ".pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres.port}:*:deen:{PG_SECRET}\n")
    pgpass.chmod(0o600)
    listed = _deen("gallery", "list", "--gallery", url, env=_clean_environ(HOME=str(home)))
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"alice\s+2\s+0", listed.stdout) and listed.stderr == ""
    # With neither, the server's refusal, in one line.
    refused = _deen("gallery", "list", "--gallery", url,
                    env=_clean_environ(HOME=str(tmp_path)))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "cannot connect to the gallery database" in refused.stderr


class _Subscriber:
    """Every message under ``deen/#`` on the broker, as (topic, payload)."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, str]] = []
        subscribed = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="secrets-test",
                             protocol=mqtt.MQTTv311)
        client.username_pw_set("box", MQ_SECRET)
        client.on_connect = lambda c, u, f, rc, p: c.subscribe("deen/#", qos=1)
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, m.payload.decode()))
        client.connect("127.0.0.1", port)
        client.loop_start()
        self.client = client
        assert subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_password_on_the_command_line_is_warned_about_once_and_shown_nowhere(
        postgres, scene, small_model, tmp_path) -> None:
    embedder = open_embedder(small_model, device="cpu")
    database = _database(postgres, "on_the_command_line")
    gallery_url = database.replace("deen@", f"deen:{PG_SECRET}@")
    with Gallery(gallery_url, model_id(small_model, embedder), embedder.dim) as gallery:
        crop = render_person(make_people(1, seed=3)[0], Modality.VISIBLE,
                             np.random.default_rng(0))
        gallery.add("alice", Modality.VISIBLE, embedder.embed([crop], Modality.VISIBLE), ["a"])
    events = tmp_path / "events.jsonl"
    with Mosquitto(tmp_path / "broker", users={"box": MQ_SECRET}) as broker:
        subscriber = _Subscriber(broker.port)
        events_url = f"mqtt://box:{MQ_SECRET}@127.0.0.1:{broker.port}/deen"
        run = subprocess.Popen(
            [sys.executable, "-m", "deen", "run", "--rgb", str(scene.visible), "--ir",
             str(scene.infrared), "--model", str(small_model), "--device", "cpu",
             "--detector", str(scene.boxes), "--gallery", gallery_url, "--set",
             "gallery.threshold=-1", "--events", str(events), "--events", events_url,
             "--events", "-", "--serve", "127.0.0.1:0", "--duration", "8", "--set",
             "outputs.status_every_s=1"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_clean_environ())
        try:
            status_pages: list[str] = []
            stderr_lines: list[str] = []
            found = None
            for line in run.stderr:
                stderr_lines.append(line)
                found = re.search(r"web view: (http://\S+)", line)
                if found:
                    break
            assert found, "".join(stderr_lines)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(
                    '"running"' in page for page in status_pages[-1:]):
                with urllib.request.urlopen(found.group(1) + "status.json", timeout=10) as r:
                    status_pages.append(r.read().decode())
                time.sleep(0.5)
            stdout, rest = run.communicate(timeout=120)
        finally:
            run.kill()
            subscriber.close()
    stderr = "".join(stderr_lines) + rest
    assert run.returncode == 0, stderr
    warnings = [line for line in stderr.splitlines() if "warning:" in line]
    assert warnings == [
        f"deen run: warning: --gallery {redact_url(gallery_url)}: a password on the command "
        "line shows in process lists and shell history; give it in $PGPASSWORD or "
        "~/.pgpass instead",
        f"deen run: warning: --events mqtt://box:***@127.0.0.1:{broker.port}/deen: a "
        "password on the command line shows in process lists and shell history; give it in "
        "$DEEN_MQTT_PASSWORD instead"]
    records = events.read_text()
    assert '"recognised"' in records  # the gallery and both event targets worked
    assert len(subscriber.messages) == len(records.splitlines())
    outputs = {"stdout": stdout, "stderr": stderr, "events": records,
               "status": "".join(status_pages),
               "broker": "".join(t + p for t, p in subscriber.messages)}
    for where, text in outputs.items():
        assert text and PG_SECRET not in text and MQ_SECRET not in text, where


def test_no_error_of_a_url_taking_option_shows_its_password(postgres, small_model,
                                                            tmp_path) -> None:
    nobody = free_port()  # nothing listens here
    common = ("--model", str(small_model), "--device", "cpu", "--events", "none")
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "0.png"), np.zeros((64, 64, 3), np.uint8))
    secret = "Url-Secret-99"
    cases = [
        (("gallery", "list", "--gallery",
          f"postgresql://deen:{secret}@127.0.0.1:{postgres.port}/postgres"),
         "password authentication failed"),
        (("gallery", "list", "--gallery",
          f"postgresql://deen@127.0.0.1:{nobody}/postgres?password={secret}"),
         "cannot connect"),
        (("run", "--rgb", str(frames), "--ir", str(frames), *common[:4], "--events",
          f"mqtt://box:{secret}@127.0.0.1:{nobody}/deen"), "cannot reach the broker"),
        (("run", "--rgb", str(frames), "--ir", str(frames), *common[:4], "--events",
          f"mqtts://box:{secret}@127.0.0.1/deen?ca=/no/such.pem"), "no such file"),
        (("run", "--rgb", f"rtsp://cam:{secret}@127.0.0.1:{nobody}/live", "--ir",
          str(frames), "--set", "sources.timeout_s=1", *common), "cannot connect"),
        (("run", "--rgb", str(frames), "--ir", str(frames), "--model",
          f"triton://box:{secret}@127.0.0.1:{nobody}/deen"), "takes no user or password"),
    ]
    for args, problem in cases:
        done = _deen(*args)
        assert done.returncode == 1, done.stderr
        error = done.stderr.splitlines()[-1]
        assert problem in error and error.startswith("deen "), done.stderr
        assert secret not in done.stderr + done.stdout, done.stderr
