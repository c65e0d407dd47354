"""What a live run's outputs (sinks) implement: the annotated video, the live window, the
web view, and any sink to come.

The live loop calls every output once per round with the round's :class:`PipelineSnapshot`
and frames. An output that raises costs that output only: the failure is counted under
``sink:<name>`` (:mod:`deen.runtime.faults`) and the run goes on. When the run ends normally
each output is closed (a file is finished and put in place); when it ends with an error each
is discarded instead (nothing half-written is left behind).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from deen.modality import Modality
from deen.runtime.pipeline import PipelineSnapshot
from deen.runtime.sources import Frame


@runtime_checkable
class Output(Protocol):
    """A sink of a live run. Sinks subclass it, so that a missing method is an error."""

    #: Short name for fault counts and events (``sink:<name>``): ``video``, ``window``, …
    name: str

    @abc.abstractmethod
    def __call__(self, snapshot: PipelineSnapshot,
                 frames: Mapping[Modality, Frame | None]) -> None:
        """One round: the pipeline's state after it and the frames it took (None for a
        stream that had no new frame). Called on the live loop's thread, so the next round
        waits for it: keep it short."""

    @abc.abstractmethod
    def close(self) -> None:
        """The run ended normally: finish the output (flush, put files in place)."""

    @abc.abstractmethod
    def discard(self) -> None:
        """The run ended with an error: release the output and leave no partial result."""
