"""The two streams of a live run and the names they go by.

A run pairs one visible and one infrared camera. Everything outside the pipeline (events,
boxes files, status lines, the web view, the generated scenes) names a stream by these
short names, so they are defined once, here.
"""

from __future__ import annotations

from deen.modality import Modality

#: Stream name of each modality: ``rgb`` (visible) and ``ir`` (infrared).
STREAMS: dict[Modality, str] = {Modality.VISIBLE: "rgb", Modality.INFRARED: "ir"}
#: The other stream of the pair, by name: a match's partner is in it.
OTHER_STREAM: dict[str, str] = {"rgb": "ir", "ir": "rgb"}
#: Modality of each stream name.
STREAM_MODALITY: dict[str, Modality] = {name: m for m, name in STREAMS.items()}
