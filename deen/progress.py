"""Progress with rate and ETA for long work (training, evaluation's embedding, builds).

On a terminal it is a live rich progress bar that fits the terminal's width (80 columns
included): the counts, rate, elapsed time and ETA keep their full width, the bar is short and
the note takes what is left, cut at its end; written to a log (stderr not a TTY) it is one
plain line every ``every_s`` seconds and at the end, so that a log shows the work moving
without a line per step.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """``with Progress("epoch 1/16", total=60, unit="steps") as p: p.advance(note="loss 3.2")``."""

    def __init__(self, description: str, total: int, unit: str = "steps",
                 stream: TextIO | None = None, every_s: float = 10.0,
                 live: bool | None = None) -> None:
        self.description, self.total, self.unit = description, max(int(total), 0), unit
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.live = self.stream.isatty() if live is None else live
        self.done, self.note = 0, ""
        self.started = self.last_line = time.monotonic()
        self._bar = None
        self._task = None

    def __enter__(self) -> Progress:
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress
            from rich.table import Column

            def whole() -> Column:  # never shortened: a cut time reads as another time
                return Column(no_wrap=True)

            self._bar = RichProgress(
                TextColumn("{task.description}", table_column=whole()),
                BarColumn(bar_width=10, table_column=whole()),
                MofNCompleteColumn(table_column=whole()),
                TextColumn("{task.fields[rate]}", table_column=whole()),
                TimeElapsedColumn(table_column=whole()), TextColumn("ETA", table_column=whole()),
                TimeRemainingColumn(table_column=whole()),
                TextColumn("{task.fields[note]}",
                           table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
                console=Console(file=self.stream), transient=False, expand=True)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, rate="",
                                            note="")
        return self

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 else None

    def line(self) -> str:
        eta = self.eta_s()
        return (f"{self.description}: {self.done}/{self.total} {self.unit}, "
                f"{self.rate():.2f} {self.unit}/s, elapsed "
                f"{_duration(time.monotonic() - self.started)}, ETA "
                f"{_duration(eta) if eta is not None else '?'}"
                + (f", {self.note}" if self.note else ""))

    def advance(self, count: int = 1, note: str | None = None) -> None:
        self.done += count
        if note is not None:
            self.note = note
        if self._bar is not None:
            self._bar.update(self._task, advance=count, note=self.note,
                             rate=f"{self.rate():.1f}/s")
            return
        now = time.monotonic()
        if now - self.last_line >= self.every_s:
            self.last_line = now
            self._write(self.line())

    def message(self, text: str) -> None:
        """A line above the bar (or in the log), e.g. an acknowledgement."""
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            self._write(text)

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self.done and time.monotonic() - self.last_line > 0.5:
            self._write(self.line())
