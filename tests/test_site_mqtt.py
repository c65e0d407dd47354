"""Events on a message broker, against a real Mosquitto started on a loopback port: what a
subscriber receives is what the JSON-lines file recorded, in order, across a broker restart
in the middle of a run; an outbox that overflows drops its oldest events and says so; a bad
URL, an unreachable broker and refused credentials each end the run at start in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from servers import Mosquitto, free_port, require

from deen.errors import DeenError, ParameterError
from deen.runtime.event_sinks import (
    EventSink,
    MqttSink,
    MqttTarget,
    open_event_sink,
    sink_format,
)
from deen.runtime.events import EventKind, EventLog
from deen.scenes import write_stream_pair

REPO = Path(__file__).resolve().parents[1]
mqtt = pytest.importorskip("paho.mqtt.client")


class Subscriber:
    """A persistent-session subscriber (QoS 1, a fixed client id): the broker keeps what it
    missed while away, as a site's consumer would be set up. QoS 1 is at least once: a
    message whose acknowledgement was lost when the broker went away is sent again after it
    comes back, so the subscriber drops a payload it already has, as a consumer would (each
    event's payload is unique: it carries its time)."""

    def __init__(self, port: int, topic: str = "deen/#") -> None:
        self.messages: list[tuple[str, str]] = []
        self.subscribed = threading.Event()
        self.lock = threading.Lock()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="deen-test-subscriber",
                             clean_session=False, protocol=mqtt.MQTTv311)
        client.reconnect_delay_set(min_delay=1, max_delay=1)
        client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        client.on_subscribe = lambda *a: self.subscribed.set()
        client.on_message = self._on_message
        client.connect("127.0.0.1", port)
        client.loop_start()
        self.client = client
        assert self.subscribed.wait(10)

    def _on_message(self, client, userdata, message) -> None:
        received = (message.topic, message.payload.decode())
        with self.lock:
            if received not in self.messages:
                self.messages.append(received)

    def wait_for(self, count: int, timeout_s: float = 20) -> list[tuple[str, str]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.messages) < count:
            time.sleep(0.05)
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_stream_pair(tmp_path_factory.mktemp("scene") / "pair", people=3, seconds=4,
                             fps=10, seed=2)


def _deen(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deen", *args], capture_output=True,
                          text=True, cwd=REPO, **kwargs)


# -- targets ---------------------------------------------------------------------------
def test_targets_are_told_apart_by_scheme_and_checked_before_connecting(tmp_path) -> None:
    assert sink_format("events.jsonl").kind == "file" and sink_format("-").kind == "file"
    assert sink_format("mqtts://h/deen").kind == "mqtt"
    target = MqttTarget.parse("mqtt://user:p%40ss@broker.local/site/a")
    assert (target.host, target.port, target.prefix, target.user, target.password) == (
        "broker.local", 1883, "site/a", "user", "p@ss")
    assert str(target) == "mqtt://user@broker.local:1883/site/a"  # no password in messages
    assert MqttTarget.parse("mqtts://h/deen").port == 8883
    for bad, problem in (("kafka://h/t", "unknown scheme"),
                         ("mqtt://h", "topic prefix"),
                         ("mqtt://h/a/#", "wildcards"),
                         ("mqtt://h:99999/deen", "not a broker URL"),
                         ("mqtt://h/deen?ca=x", "TLS options"),
                         ("mqtts://h/deen?ca=/no/such.pem", "no such file"),
                         ("mqtts://u:secret@h/deen?colour=red", "unknown option")):
        with pytest.raises(ParameterError, match=problem) as caught:
            open_event_sink(bad, "box")
        assert "secret" not in str(caught.value)


def test_a_bad_url_an_unreachable_broker_and_wrong_credentials_end_the_run_at_start(
        scene, small_model, tmp_path) -> None:
    common = ("run", "--rgb", str(scene.visible), "--ir", str(scene.infrared), "--model",
              str(small_model), "--device", "cpu", "--detector", str(scene.boxes))
    done = _deen(*common, "--events", "mqtt://127.0.0.1/a/+", timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr  # malformed
    assert "--events mqtt://127.0.0.1/a/+: the path must be a topic prefix" in done.stderr

    port = free_port()  # nothing listens here
    done = _deen(*common, "--events", f"mqtt://127.0.0.1:{port}/deen", timeout=60)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert f"mqtt://127.0.0.1:{port}/deen: cannot reach the broker" in done.stderr

    with Mosquitto(tmp_path / "broker", users={"box": "right"}) as broker:
        url = f"mqtt://box:wrong@127.0.0.1:{broker.port}/deen"
        done = _deen(*common, "--events", f"mqtt://box@127.0.0.1:{broker.port}/deen",
                     timeout=60, env={**os.environ, "DEEN_MQTT_PASSWORD": "wrong"})
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert "the broker refused the connection (Not authorized)" in done.stderr
        assert "wrong" not in done.stderr
        with pytest.raises(DeenError, match="refused"):
            MqttSink(MqttTarget.parse(url), "box")
        sink = MqttSink(MqttTarget.parse(f"mqtt://box:right@127.0.0.1:{broker.port}/deen"),
                        "box")
        assert isinstance(sink, EventSink)
        sink.close()


# -- delivery --------------------------------------------------------------------------
@pytest.mark.serial  # asserts timing: runs alone (scripts/test.sh)
def test_every_event_reaches_the_subscriber_in_order_across_a_broker_restart(
        scene, small_model, tmp_path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    subscriber = Subscriber(broker.port)
    log = tmp_path / "events.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "deen", "run", "--rgb", str(scene.visible), "--ir",
         str(scene.infrared), "--loop", "--model", str(small_model), "--device", "cpu",
         "--detector", str(scene.boxes), "--duration", "9", "--set", "outputs.status_every_s=0",
         "--events", str(log), "--events", f"mqtt://127.0.0.1:{broker.port}/deen",
         "--site-name", "pole 3"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 60
        while (not log.exists() or log.stat().st_size == 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)
        broker.stop(signal.SIGTERM)  # the broker goes away mid-run …
        before = len(subscriber.messages)
        time.sleep(2.5)
        broker.start()  # … and comes back on the same port with its sessions
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        lines = log.read_text().splitlines()
        received = subscriber.wait_for(len(lines))
    finally:
        process.kill()
        subscriber.close()
        broker.stop(signal.SIGKILL)
    assert 0 < before < len(lines)  # events were sent before and after the outage
    assert [payload for _, payload in received] == lines
    assert [topic for topic, _ in received] == [
        f"deen/pole_3/{json.loads(line)['event']}" for line in lines]
    assert "events:mqtt outage 1" in stderr and "undelivered" not in stderr, stderr


def test_an_overflowing_outbox_drops_the_oldest_events_and_counts_them(tmp_path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    subscriber = Subscriber(broker.port)
    sink = MqttSink(MqttTarget.parse(f"mqtt://127.0.0.1:{broker.port}/deen"), "box", outbox=5)
    log = EventLog([sink])
    try:
        log.emit(EventKind.STREAM, stream="rgb", state="live", message="")
        assert subscriber.wait_for(1, 10) and sink.pending == 0
        broker.stop(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while sink.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        for index in range(8):
            log.emit(EventKind.TRACK_ENDED, stream="ir", track=index + 1, frame=index)
        assert sink.pending == 5
        broker.start()
        received = subscriber.wait_for(6)
        faults = {kind: (count, message) for kind, message, count in log.take_faults()}
    finally:
        log.close()
        subscriber.close()
        broker.stop(signal.SIGKILL)
    assert [json.loads(p).get("track") for _, p in received] == [None, 4, 5, 6, 7, 8]
    assert faults["events:mqtt dropped"][0] == 3
    assert "outbox of 5 events full" in faults["events:mqtt dropped"][1]
    assert faults["events:mqtt outage"][0] == 1


def test_the_site_demo_fails_in_one_line_when_its_subscriber_hears_nothing(tmp_path) -> None:
    """scripts/site-demo.sh checks its broker subscriber with a probe before starting
    anything else: a subscriber that hears nothing (here: listening elsewhere) ends it with
    exit 1 and one line, not a report of zero events and exit 0."""
    require("mosquitto", "mosquitto")
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL is not installed (Debian package postgresql; "
                    "scripts/setup.sh --dev installs it)")
    done = subprocess.run(["bash", str(REPO / "scripts" / "site-demo.sh"), str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SITE_DEMO_SUBSCRIBE": "elsewhere/#"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        "site-demo: the broker's subscriber received nothing (a probe on deen/site-demo/probe, "
        f"within 5 s); see {tmp_path / 'site' / 'broker.log'}"], done.stderr
    assert "== gallery" not in done.stdout  # it stopped before starting anything else
