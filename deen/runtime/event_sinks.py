"""Where a live run's events go: JSON lines in a file or on stdout, or an MQTT broker.

Every sink receives the same serialised record (one JSON object, the line the JSON-lines
sink writes, without its newline), so a subscriber on the broker reads exactly what the
file holds. The record's fields are written down once, in ``event_schema.json``.

:data:`EVENT_SINKS` is the table of kinds: a target names its kind by its URL scheme
(``mqtt://``, ``mqtts://``) or is a file path, ``-`` (stdout). :func:`open_event_sink` opens
one; connecting to a broker happens there, so an unreachable broker, refused credentials
or a malformed URL fail at start with one line, before any model loads.

The MQTT sink publishes at QoS 1 on ``PREFIX/BOX/EVENT`` (e.g. ``deen/pole-3/match``). It
never blocks the live loop: events go into a bounded outbox, and one background thread
hands them to the broker one at a time, in order, each acknowledged before the next. While
the broker is away the outbox keeps them; when it returns they are sent in order. An outbox
that overflows drops its oldest events. Outages and drops are counted
(:meth:`EventSink.take_faults`), never raised: a broker that goes away is a fault of the
run, not its end.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Protocol, runtime_checkable
from urllib.parse import parse_qs, unquote, urlsplit

from deen.errors import DeenError, ParameterError, redact_url

#: Events the MQTT outbox holds while the broker is away (about 100 bytes to 1 kB each).
DEFAULT_OUTBOX = 10_000
#: Seconds to wait for the broker to acknowledge a connection, at start and at each retry.
CONNECT_TIMEOUT_S = 5.0
#: Seconds :meth:`MqttSink.close` waits for the outbox to drain.
DRAIN_TIMEOUT_S = 10.0
#: The environment variable that gives the broker's password when the URL names only a user.
PASSWORD_ENV = "DEEN_MQTT_PASSWORD"


@runtime_checkable
class EventSink(Protocol):
    """Receives every event record as its JSON text."""

    name: str  # how faults and messages name it: "events:file", "events:mqtt"

    def write(self, line: str) -> None:
        """Take one record (a JSON object, no newline). Never blocks on a remote peer."""

    def take_faults(self) -> list[tuple[str, str, int]]:
        """Faults since the last call, as (kind, message, count): outages, dropped events.
        Called from the live loop's thread; a sink's own threads only count."""

    def close(self) -> None:
        """Deliver what is still queued if it can, then release everything."""


class JsonLinesSink:
    """One JSON line per event, appended to a file, or on stdout for ``-``; flushed at once.

    A failed write raises ``OSError`` to :class:`~deen.runtime.events.EventLog`, which
    reports it; a closed pipe is final (later events are not written to it), a full disk is
    retried with every event."""

    name = "events:file"

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        self._owned = self.target != "-"
        self._handle: IO[str] | None = (
            open(target, "a", encoding="utf-8") if self._owned  # noqa: SIM115 (run-long)
            else sys.stdout)

    def write(self, line: str) -> None:
        if self._handle is None:
            return
        try:
            self._handle.write(line + "\n")
            self._handle.flush()
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # the reader is gone for good: stop writing to it
                if self._handle is sys.stdout:  # and keep Python's exit flush from failing
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                self._handle = None
            raise

    def take_faults(self) -> list[tuple[str, str, int]]:
        return []

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        with contextlib.suppress(OSError):
            handle.flush()
        if self._owned:
            with contextlib.suppress(OSError):
                handle.close()


@dataclass(frozen=True)
class MqttTarget:
    """A broker address: ``mqtt://[USER[:PASS]@]HOST[:PORT]/PREFIX[?OPTIONS]``, or
    ``mqtts://`` for TLS.

    OPTIONS (TLS only): ``ca=FILE`` (the broker's certificate authority; default: the
    system's), ``cert=FILE`` and ``key=FILE`` (a client certificate), ``insecure=1`` (no
    check of the broker's host name). A user without a password in the URL takes it from
    ``$DEEN_MQTT_PASSWORD``, which keeps it off the command line and out of process lists.
    """

    host: str
    port: int
    prefix: str
    tls: bool = False
    user: str | None = None
    password: str | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False

    @classmethod
    def parse(cls, text: str, parameter: str = "events", files_exist: bool = True
              ) -> MqttTarget:
        """``text`` as a broker target; ``parameter`` names it in errors. With
        ``files_exist`` off, only the URL's form is checked, not that its TLS files exist."""

        def bad(problem: str) -> ParameterError:
            return ParameterError(parameter, redact_url(text), problem)

        try:
            url = urlsplit(text)
            port = url.port
        except ValueError as exc:
            raise bad(f"not a broker URL ({exc})") from None
        if url.scheme not in ("mqtt", "mqtts"):
            raise bad("a broker URL starts with mqtt:// or mqtts://")
        if not url.hostname:
            raise bad("no broker host (mqtt://HOST[:PORT]/TOPIC-PREFIX)")
        prefix = url.path.strip("/")
        if not prefix or url.fragment or "#" in text or re.search(r"[+\x00]", prefix):
            raise bad("the path must be a topic prefix without MQTT wildcards "
                      "(e.g. mqtt://HOST/deen)")
        tls = url.scheme == "mqtts"
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        unknown = set(query) - {"ca", "cert", "key", "insecure"}
        if unknown:
            raise bad(f"unknown option {sorted(unknown)[0]!r} (ca, cert, key, insecure)")
        if query and not tls:
            raise bad("ca, cert, key and insecure are TLS options: use mqtts://")
        files = {}
        for option in ("ca", "cert", "key"):
            if option in query:
                path = Path(query[option]).expanduser()
                if files_exist and not path.is_file():
                    raise bad(f"{option}={path}: no such file")
                files[option] = path
        if ("cert" in files) != ("key" in files):
            raise bad("a client certificate needs both cert= and key=")
        user = unquote(url.username) if url.username else None
        password = unquote(url.password) if url.password is not None else None
        if user is not None and password is None:
            password = os.environ.get(PASSWORD_ENV)
        return cls(url.hostname, port or (8883 if tls else 1883), prefix, tls, user, password,
                   insecure=query.get("insecure", "0") not in ("0", "", "false"), **files)

    def __str__(self) -> str:
        """The address without the password."""
        user = f"{self.user}@" if self.user else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}/{self.prefix}"


def topic_part(name: str) -> str:
    """``name`` as one MQTT topic level: no separators or wildcards."""
    return re.sub(r"[/#+\s\x00]+", "_", name).strip("_") or "deen"


class MqttSink:
    """Publishes every event at QoS 1 to ``PREFIX/BOX/EVENT`` through a bounded outbox.

    The constructor connects and waits for the broker's answer, so a broker that cannot be
    reached or refuses the credentials raises :class:`DeenError` here. Afterwards paho-mqtt
    reconnects by itself (backing off up to 2 s); the sender hands a message to paho only
    while connected and waits for its acknowledgement (paho resends it after a reconnect),
    so order is kept and nothing handed over is lost.
    """

    name = "events:mqtt"

    def __init__(self, target: MqttTarget, box: str, outbox: int = DEFAULT_OUTBOX,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        import paho.mqtt.client as mqtt

        if outbox < 1:
            raise ParameterError("outbox", outbox, "must be at least 1")
        self.target, self.box = target, topic_part(box)
        self._outbox: deque[tuple[str, str]] = deque()  # (topic, payload), oldest first
        self._in_flight: tuple[str, str] | None = None  # handed to paho, not yet acknowledged
        self._capacity = outbox
        self._lock = threading.Condition()
        self._connected = threading.Event()
        self._answered = threading.Event()
        self._refusal: str | None = None
        self._closing = False
        self._abandon = threading.Event()  # close() stopped waiting for the outbox
        self._faults: dict[str, tuple[int, str]] = {}
        self.sent = 0
        self.outages = 0
        self.dropped = 0
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"deen-{self.box}-{os.getpid()}",
                             protocol=mqtt.MQTTv311)
        if target.user is not None:
            client.username_pw_set(target.user, target.password)
        if target.tls:
            context = ssl.create_default_context(
                cafile=str(target.ca) if target.ca else None)
            if target.cert is not None:
                context.load_cert_chain(str(target.cert), str(target.key))
            if target.insecure:
                context.check_hostname = False
            client.tls_set_context(context)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.connect_timeout = connect_timeout_s
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        try:
            client.connect(target.host, target.port, keepalive=30)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise DeenError(f"{target}: cannot reach the broker ({reason})") from None
        client.loop_start()
        if not self._answered.wait(connect_timeout_s) or self._refusal is not None:
            client.loop_stop()
            with contextlib.suppress(Exception):
                client.disconnect()
            raise DeenError(f"{target}: the broker refused the connection "
                            f"({self._refusal or 'no answer'})")
        self._sender = threading.Thread(target=self._send, name="deen-mqtt", daemon=True)
        self._sender.start()

    # -- paho's callbacks (its network thread) ----------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            if not self._answered.is_set():  # at start: refuse and stop retrying
                self._refusal = str(reason_code)
                self._answered.set()
                client.disconnect()
            else:
                self._count("events:mqtt refused", f"{self.target}: {reason_code}")
            return
        self._connected.set()
        self._answered.set()
        with self._lock:
            self._lock.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._closing:
            self.outages += 1
            self._count("events:mqtt outage", f"{self.target}: the broker went away "
                        f"({reason_code}); events wait in the outbox")

    def _count(self, kind: str, message: str, count: int = 1) -> None:
        with self._lock:
            previous = self._faults.get(kind, (0, message))[0]
            self._faults[kind] = (previous + count, message)

    # -- the live loop's side ----------------------------------------------------------
    def write(self, line: str) -> None:
        kind = _event_kind(line)
        with self._lock:
            if len(self._outbox) >= self._capacity:
                self._outbox.popleft()
                self.dropped += 1
                self._count("events:mqtt dropped", f"{self.target}: outbox of "
                            f"{self._capacity} events full while the broker is away; the "
                            "oldest were dropped")
            self._outbox.append((f"{self.target.prefix}/{self.box}/{kind}", line))
            self._lock.notify_all()

    def take_faults(self) -> list[tuple[str, str, int]]:
        with self._lock:
            faults, self._faults = self._faults, {}
        return [(kind, message, count) for kind, (count, message) in faults.items()]

    @property
    def pending(self) -> int:
        """Events not yet acknowledged by the broker (the one in flight included)."""
        with self._lock:
            return len(self._outbox) + (self._in_flight is not None)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _send(self) -> None:
        while True:
            with self._lock:
                while not self._outbox and not self._closing:
                    self._lock.wait()
                if not self._outbox:
                    return
            if not self._connected.wait(0.2):
                if self._abandon.is_set():
                    return
                continue
            with self._lock:  # handed over: no longer the outbox's to drop
                self._in_flight = self._outbox.popleft()
            topic, payload = self._in_flight
            info = self._client.publish(topic, payload, qos=1)
            # paho keeps a message it was handed across reconnects and resends it, so
            # waiting here (not publishing again) keeps each event once and in order.
            while not info.is_published():
                if self._abandon.is_set():
                    return
                try:
                    info.wait_for_publish(0.2)
                except (RuntimeError, ValueError):  # handed over while the link dropped
                    time.sleep(0.05)
            with self._lock:
                self._in_flight = None
                self.sent += 1

    def close(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Wait up to ``timeout_s`` for the outbox to drain, then disconnect. Events still
        queued then are lost; their count is in :attr:`undelivered` and raised as a fault
        by the caller's last :meth:`take_faults`."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        self.undelivered = self.pending
        self._abandon.set()
        self._sender.join(timeout=2)
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()
        if self.undelivered:
            self._count("events:mqtt undelivered", f"{self.target}: {self.undelivered} "
                        f"events not delivered within {timeout_s:g} s of the end",
                        self.undelivered)

    undelivered = 0


def _event_kind(line: str) -> str:
    match = re.search(r'"event": "([a-z_]+)"', line)
    return match.group(1) if match else "event"


class SinkKind(str, Enum):
    FILE = "file"
    MQTT = "mqtt"


@dataclass(frozen=True)
class SinkFormat:
    """One row of :data:`EVENT_SINKS`: a kind of event target and how to open it."""

    kind: SinkKind
    schemes: tuple[str, ...]  # URL schemes that name it; () for a path or "-"
    example: str
    open: Callable[[str, str], EventSink]  # (target, box name) -> sink


def _open_file(text: str, box: str) -> EventSink:
    if text != "-":
        parent = Path(text).expanduser().parent
        if not parent.is_dir():
            raise ParameterError("events", text, f"no such folder {parent}")
        try:
            return JsonLinesSink(Path(text).expanduser())
        except OSError as exc:
            raise ParameterError("events", text, f"cannot write ({exc.strerror})") from None
    return JsonLinesSink("-")


def _open_mqtt(text: str, box: str) -> EventSink:
    return MqttSink(MqttTarget.parse(text), box)


#: Every kind of event target: one row each.
EVENT_SINKS: tuple[SinkFormat, ...] = (
    SinkFormat(SinkKind.FILE, (), "events.jsonl, or - for stdout", _open_file),
    SinkFormat(SinkKind.MQTT, ("mqtt", "mqtts"), "mqtt://[USER[:PASS]@]HOST[:PORT]/PREFIX",
               _open_mqtt),
)


def sink_format(text: str) -> SinkFormat:
    """The row of :data:`EVENT_SINKS` that ``text`` names (by scheme; else a file)."""
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    for row in EVENT_SINKS:
        if scheme in row.schemes:
            return row
    if scheme:
        known = ", ".join(f"{s}://" for row in EVENT_SINKS for s in row.schemes)
        raise ParameterError("events", redact_url(text), f"unknown scheme {scheme}:// ({known} "
                             "or a file)")
    return EVENT_SINKS[0]


def default_box_name() -> str:
    """The box's name in topics when none is given: the host name."""
    return socket.gethostname()


def open_event_sink(text: str, box: str | None = None) -> EventSink:
    """Open the event target ``text`` (a file, ``-``, or a broker URL) for box ``box``
    (default: the host name)."""
    return sink_format(text).open(text, box or default_box_name())


def open_event_sinks(targets: tuple[str, ...], box: str | None = None) -> list[EventSink]:
    """Open every target, or none if one fails (those already open are closed)."""
    sinks: list[EventSink] = []
    try:
        for text in targets:
            sinks.append(open_event_sink(text, box))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
