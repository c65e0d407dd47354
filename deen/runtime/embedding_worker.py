"""Embedding off the live loop's thread, so that rounds keep pace with the cameras.

Embedding a handful of person crops costs more than a camera's frame interval on a small CPU
(hundreds of milliseconds at 384×144), detection and tracking much less. With
:class:`EmbedWorker` the live loop hands a batch of crops over and goes on with the next
frames; the finished embeddings are applied in the first round after they are ready. At most
one batch is in flight and none waits: while the worker is busy, the loop simply does not
submit, and the per-round budget decides what goes next (new tracks first, then the
stalest). Offline runs (``--no-realtime``) embed in the round instead, so their results do not
depend on timing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from deen.backends.base import Embedder
from deen.modality import Modality
from deen.runtime.matching import TrackKey


@dataclass(frozen=True)
class EmbedJob:
    keys: list[TrackKey]
    crops: list[np.ndarray]
    captured: list[float]  # capture time of each crop's frame (time.monotonic())
    frames: list[int]  # each crop's frame index within its stream


@dataclass(frozen=True)
class EmbedResult:
    job: EmbedJob
    vectors: np.ndarray | None  # None when the call raised
    error: Exception | None = None
    milliseconds: float = 0.0  # how long the call took


def embed_now(embedder: Embedder, job: EmbedJob, batch_size: int) -> EmbedResult:
    """Embed ``job``'s crops, at most ``batch_size`` per model call (the runtime's memory
    grows with the batch); an exception is returned, not raised (it is one round's failure,
    counted by the caller)."""
    modalities: list[Modality] = [key[0] for key in job.keys]
    started = time.perf_counter()
    try:
        vectors = embedder.embed(job.crops, modalities, batch_size=batch_size)
    except Exception as exc:
        return EmbedResult(job, None, exc, 1000 * (time.perf_counter() - started))
    return EmbedResult(job, np.asarray(vectors), None, 1000 * (time.perf_counter() - started))


class EmbedWorker:
    """One background thread running one :class:`EmbedJob` at a time."""

    def __init__(self, embedder: Embedder, batch_size: int) -> None:
        self.embedder, self.batch_size = embedder, batch_size
        self._condition = threading.Condition()
        self._job: EmbedJob | None = None
        self._result: EmbedResult | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="deen-embed", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """A job is running or its result has not been collected yet."""
        with self._condition:
            return self._job is not None or self._result is not None

    def submit(self, job: EmbedJob) -> None:
        with self._condition:
            if self._job is not None or self._result is not None:
                raise RuntimeError("EmbedWorker.submit while busy")
            self._job = job
            self._condition.notify_all()

    def collect(self, wait_s: float = 0.0) -> EmbedResult | None:
        """The finished job's result (once), waiting up to ``wait_s`` for it; else None."""
        with self._condition:
            if self._result is None and wait_s > 0 and self._job is not None:
                self._condition.wait_for(lambda: self._result is not None, wait_s)
            result, self._result = self._result, None
            return result

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._job is not None or self._closed)
                if self._closed:
                    return
                job = self._job
            result = embed_now(self.embedder, job, self.batch_size)
            with self._condition:
                self._job, self._result = None, result
                self._condition.notify_all()
