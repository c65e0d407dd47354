"""JSON-lines events: one complete line per event, flushed as it happens.

Every event carries ``time`` (Unix seconds when it was emitted), ``event`` (its
:class:`EventKind`) and, when it came from a frame, ``latency_ms`` (frame capture to
emission). The fields of each kind are written down in one place, the JSON Schema
``event_schema.json`` beside this module (:data:`SCHEMA_PATH`); the web view serves it to
its page. In short: ``track_started``, ``track_ended``, ``match`` (a cross-camera pair
confirmed), ``unmatch`` (broken), ``recognised`` (a track named from the gallery),
``stream`` (a stream changed state: lost, reconnected, ended) and ``error`` (the first
failure of one kind: ``kind``, ``message``, ``count``; see :mod:`deen.runtime.faults`).

Where events go is up to the sinks (:mod:`deen.runtime.event_sinks`). A write that fails
(a full disk, a reader that closed the pipe) never ends the run: the event stays in
:attr:`EventLog.recent` and its listeners get it, the failure goes to ``on_write_error``.
A remote sink never blocks or raises: its outages and drops come out of
:meth:`EventLog.take_faults`.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from deen.runtime.event_sinks import EventSink, JsonLinesSink

#: How many recent latencies the percentiles cover (a bounded window: memory stays flat).
LATENCY_WINDOW = 100_000

#: The JSON Schema of an event record: the fields of every kind, as emitted.
SCHEMA_PATH = Path(__file__).with_name("event_schema.json")


class EventKind(str, Enum):
    """What an event reports; its value is the record's ``event`` field."""

    TRACK_STARTED = "track_started"  # a track was confirmed in one stream
    TRACK_ENDED = "track_ended"  # a track was lost for too long, or its stream ended
    MATCH = "match"  # a visible and an infrared track confirmed as one person
    UNMATCH = "unmatch"  # a confirmed match was broken
    RECOGNISED = "recognised"  # a track was named from the gallery
    PERSON_CHANGED = "person_changed"  # a track's person id changed (deen.runtime.identity)
    STREAM = "stream"  # a stream changed state (lost, reconnected, ended, failed)
    ERROR = "error"  # the first failure of one kind (deen.runtime.faults)

    def __str__(self) -> str:
        return self.value


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    if isinstance(value, np.ndarray):
        return [_clean(float(v)) for v in value.reshape(-1)]
    if isinstance(value, (np.floating, np.integer)):
        return _clean(value.item())
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class EventLog:
    """Sends every event to its sinks (:mod:`deen.runtime.event_sinks`: a JSON-lines file
    or stdout, an MQTT broker, …); keeps the recent events and latency stats."""

    def __init__(self, target: Path | str | Sequence[EventSink] | None, keep: int = 50) -> None:
        """``target``: the sinks, or one file (``-``: stdout; None: no sink).
        ``keep``: how many recent events stay readable in :attr:`recent`."""
        if target is None:
            self.sinks: list[EventSink] = []
        elif isinstance(target, (str, Path)):
            self.sinks = [JsonLinesSink(target)]
        else:
            self.sinks = list(target)
        self.counts: dict[str, int] = {}
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        #: Called with the ``OSError`` of a failed write (default: raise it).
        self.on_write_error: Callable[[OSError], None] | None = None
        #: Called with every event record (e.g. the web view's event stream); must not block.
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._closed_faults: list[tuple[str, str, int]] = []

    def emit(self, event: EventKind, frame_time: float | None = None, **fields: Any) -> None:
        """Send one event of kind ``event`` with ``fields`` (see ``event_schema.json``);
        ``frame_time`` is the capture time (``time.monotonic()``) of the frame it came from,
        if any. The record's ``event`` is the kind's plain string value."""
        kind = EventKind(event).value
        record: dict[str, Any] = {"time": time.time(), "event": kind}
        if frame_time is not None:
            latency = 1000 * (time.monotonic() - frame_time)
            record["latency_ms"] = latency
            self.latencies_ms.append(latency)
        record.update(fields)
        record = _clean(record)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.recent.append(record)
        for listener in self.listeners:
            listener(record)
        if self.sinks:
            line = json.dumps(record)
            for sink in self.sinks:
                try:
                    sink.write(line)
                except OSError as exc:
                    if self.on_write_error is None:
                        raise
                    self.on_write_error(exc)

    def take_faults(self) -> list[tuple[str, str, int]]:
        """The sinks' faults since the last call (outages, dropped events), as
        (kind, message, count)."""
        return [fault for sink in self.sinks for fault in sink.take_faults()]

    def latency_percentiles(self) -> tuple[float, float]:
        """(p50, p95) in milliseconds over the recent window; NaN before any event."""
        if not self.latencies_ms:
            return float("nan"), float("nan")
        values = np.fromiter(self.latencies_ms, dtype=np.float64)
        return float(np.percentile(values, 50)), float(np.percentile(values, 95))

    def close(self) -> None:
        """Close every sink (a broker's outbox drains first, for a few seconds at most);
        a write that still fails here was already reported."""
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            sink.close()
        self._closed_faults = [fault for sink in sinks for fault in sink.take_faults()]

    def faults_at_close(self) -> list[tuple[str, str, int]]:
        """What the sinks reported while closing (e.g. events a broker never received)."""
        return self._closed_faults
