"""Fault containment for the live loop: one bad frame, crop or call never ends a run.

Each part that can fail (a stream's detector, the embedder, an output sink) reports every
call through :meth:`Faults.failed` or :meth:`Faults.succeeded`. A failure is counted, the
first of its kind goes out as one ``error`` event, and the status line shows the counts. Only
a failure that *persists* ends the run: when every call of one kind has failed for
``fail_after_s`` seconds, the live loop's next :meth:`Faults.check` raises
:class:`PersistentFailure` with one line saying what and why, and ``deen run`` exits 1 after
flushing its outputs. Recording never raises, so a failure can be reported from anywhere
(an event sink included) without unwinding the round that found it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from deen.errors import DeenError, first_line

#: Default of ``deen run``'s ``run.fail_after_s``.
DEFAULT_FAIL_AFTER_S = 30.0


class PersistentFailure(DeenError):
    """Every call of one kind failed for ``fail_after_s`` seconds: the run cannot go on."""


@dataclass
class Faults:
    """Failure counts per kind (``detect:rgb``, ``embed``, ``sink:video``, …)."""

    report: Callable[[str, str, int], None]  # (kind, message, count): emit the error event
    fail_after_s: float = DEFAULT_FAIL_AFTER_S
    clock: Callable[[], float] = time.monotonic
    counts: dict[str, int] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)  # the newest message per kind
    _failing_since: dict[str, float] = field(default_factory=dict)

    def failed(self, kind: str, error: BaseException | str) -> None:
        """Count one failed call of ``kind``."""
        message = error if isinstance(error, str) else \
            f"{type(error).__name__}: {first_line(error)}"
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.messages[kind] = message
        if self.counts[kind] == 1:
            self.report(kind, message, 1)
        self._failing_since.setdefault(kind, self.clock())

    def check(self) -> None:
        """Raise :class:`PersistentFailure` if some kind has failed on every call for
        ``fail_after_s`` seconds."""
        now = self.clock()
        for kind, since in self._failing_since.items():
            if self.fail_after_s and now - since >= self.fail_after_s:
                raise PersistentFailure(
                    f"{kind} failed on every call for {now - since:.0f} s "
                    f"(run.fail_after_s = {self.fail_after_s:g}): {self.messages[kind]}")

    def dropped(self, kind: str, message: str, count: int) -> None:
        """Count ``count`` items dropped (e.g. non-finite rows of a call that otherwise
        worked, events dropped from a full outbox) or an outage of a remote server that the
        run rides out: reported like a failure, but never ends the run."""
        self.counts[kind] = self.counts.get(kind, 0) + count
        self.messages[kind] = message
        if self.counts[kind] == count:
            self.report(kind, message, count)

    def succeeded(self, kind: str) -> None:
        self._failing_since.pop(kind, None)

    def summary(self) -> str:
        """``detect:rgb 3, embed 1`` (empty when nothing failed)."""
        return summarise(self.counts)


def summarise(counts: Mapping[str, int]) -> str:
    """Failure counts on one line: ``detect:rgb 3, embed 1`` (empty when there are none)."""
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
