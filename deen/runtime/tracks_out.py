"""``deen run --tracks-out DIR``: what the run tracked and matched, in files a scorer reads.

- ``rgb.txt``, ``ir.txt``: each stream's tracks in MOTChallenge result format,
  ``frame,id,x,y,w,h,conf,-1,-1,-1`` with frame = the source's frame number + 1;
- ``matches.txt``: ``stream,frame,id,partner`` for every row above whose track was matched
  to the other stream's track ``partner`` at that moment;
- ``names.txt``: ``stream,frame,id,name`` for rows whose track had a gallery name;
- ``matches.json``: the match intervals, ``{"rgb": id, "ir": id, "first": frame, "last":
  frame}`` in visible-stream frames.

The files appear when the run ends normally (nothing half-written after an error), and
:mod:`deen.eval.live_score` scores them against a scene's truth.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from deen.fileio import atomic_path
from deen.modality import Modality
from deen.mot import result_line
from deen.runtime.outputs import Output
from deen.runtime.pipeline import PipelineSnapshot
from deen.runtime.sources import Frame
from deen.runtime.streams import STREAMS


class TracksWriter(Output):
    """Collects every processed frame's tracks and matches; writes them on :meth:`close`."""

    name = "tracks"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.rows: dict[str, list[str]] = {s: [] for s in STREAMS.values()}
        self.matches: list[tuple[str, int, int, int]] = []
        self.names: list[tuple[str, int, int, str]] = []
        self.frames: list[int] = []  # visible-stream frames processed, in order

    def __call__(self, snapshot: PipelineSnapshot,
                 frames: Mapping[Modality, Frame | None]) -> None:
        for modality, frame in frames.items():
            if frame is None:
                continue
            stream, number = STREAMS[modality], frame.position + 1
            if stream == "rgb":
                self.frames.append(number)
            for track in snapshot.tracks.get(modality, ()):
                person = track.person_id  # one id per person, across leaving and returning
                self.rows[stream].append(result_line(number, person, track.box))
                if track.partner is not None:
                    partner = track.partner if track.partner_person is None else \
                        track.partner_person
                    self.matches.append((stream, number, person, partner))
                if track.name is not None:
                    self.names.append((stream, number, person, track.name))

    def intervals(self) -> list[dict[str, int]]:
        """Runs of the match of one visible and one infrared track over consecutive
        processed visible frames."""
        out: list[dict[str, int]] = []
        open_runs: dict[tuple[int, int], dict[str, int]] = {}
        previous = dict(zip(self.frames[1:], self.frames, strict=False))
        for stream, frame, track, partner in sorted(self.matches, key=lambda m: m[1]):
            if stream != "rgb":
                continue
            run = open_runs.get((track, partner))
            if run is not None and run["last"] == previous.get(frame):
                run["last"] = frame
                continue
            run = {"rgb": track, "ir": partner, "first": frame, "last": frame}
            open_runs[(track, partner)] = run
            out.append(run)
        return out

    def close(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        files = {f"{stream}.txt": "".join(rows) for stream, rows in self.rows.items()}
        files["matches.txt"] = "".join(f"{s},{f},{t},{p}\n" for s, f, t, p in self.matches)
        files["names.txt"] = "".join(f"{s},{f},{t},{n}\n" for s, f, t, n in self.names)
        files["matches.json"] = json.dumps(self.intervals(), indent=1) + "\n"
        for name, text in files.items():
            with atomic_path(self.folder / name) as tmp:
                tmp.write_text(text)

    def discard(self) -> None:
        self.rows = {s: [] for s in STREAMS.values()}
        self.matches, self.names, self.frames = [], [], []
