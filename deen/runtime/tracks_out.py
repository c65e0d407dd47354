"""``deen run --tracks-out DIR``: what the run tracked and matched, in files a scorer reads.

- ``rgb.txt``, ``ir.txt``: each stream's tracks in MOTChallenge result format,
  ``frame,id,x,y,w,h,conf,-1,-1,-1`` with frame = the source's frame number + 1;
- ``matches.txt``: ``stream,frame,id,partner`` for every row above whose track was matched
  to the other stream's track ``partner`` at that moment;
- ``names.txt``: ``stream,frame,id,name`` for rows whose track had a gallery name;
- ``matches.json``: the match intervals, ``{"rgb": id, "ir": id, "first": frame, "last":
  frame}`` in visible-stream frames.

Ids are person ids: one id per person in a stream across leaving and coming back. The files
are a record of the whole run, written when it ends normally (nothing half-written after an
error), so their ids are settled then with everything seen (:func:`deen.runtime.relink.settle`:
each track's whole appearance, which tracks were seen together, which were matched across the
cameras), not the ids the live events showed at the moment, which had only the past. With
``settle`` off, each track's rows carry the person id the live relinker last gave it (except
where that person still had another track at the time: those rows keep the track's own id).
:mod:`deen.eval.live_score` scores the files against a scene's truth.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from deen.fileio import atomic_path
from deen.modality import Modality
from deen.mot import result_line
from deen.runtime import relink
from deen.runtime.outputs import Output
from deen.runtime.pipeline import PipelineSnapshot
from deen.runtime.sources import Frame
from deen.streams import OTHER_STREAM, STREAM_MODALITY, STREAMS


class TracksWriter(Output):
    """Collects every processed frame's tracks and matches; writes them on :meth:`close`."""

    name = "tracks"

    def __init__(self, folder: Path, settle: bool = True,
                 lead: Modality | None = Modality.VISIBLE) -> None:
        self.folder = Path(folder)
        self.settle, self.lead = settle, lead
        self.appearance: dict[tuple[str, int], np.ndarray] = {}  # newest summed embeddings
        # Rows and matches name tracks; :meth:`close` names each track's person.
        # (frame, track, person id then, box)
        self.rows: dict[str, list[tuple[int, int, int, tuple[float, ...]]]] = {
            s: [] for s in STREAMS.values()}
        self.matches: list[tuple[str, int, int, int]] = []  # (stream, frame, track, partner)
        self.names: list[tuple[str, int, int, str]] = []
        self.frames: list[int] = []  # visible-stream frames processed, in order
        self.person: dict[tuple[str, int], int] = {}  # (stream, track) → its last person id

    def __call__(self, snapshot: PipelineSnapshot,
                 frames: Mapping[Modality, Frame | None]) -> None:
        for modality, frame in frames.items():
            if frame is None:
                continue
            stream, number = STREAMS[modality], frame.position + 1
            if stream == "rgb":
                self.frames.append(number)
            for track in snapshot.tracks.get(modality, ()):
                self.person[stream, track.track_id] = track.person_id
                if track.appearance is not None:
                    self.appearance[stream, track.track_id] = track.appearance
                self.rows[stream].append((number, track.track_id, track.person_id,
                                          tuple(track.box)))
                if track.partner is not None:
                    self.matches.append((stream, number, track.track_id, track.partner))
                    if track.partner_person is not None:
                        self.person.setdefault((OTHER_STREAM[stream], track.partner),
                                               track.partner_person)
                if track.name is not None:
                    self.names.append((stream, number, track.track_id, track.name))

    def settled(self) -> dict[tuple[str, int], int]:
        """Each track's person id decided with the whole run (:func:`relink.settle`)."""
        frames: dict[tuple[str, int], set[int]] = {}
        for stream, lines in self.rows.items():
            for number, track, _, _ in lines:
                frames.setdefault((stream, track), set()).add(number)
        tracks = {STREAM_MODALITY[stream]: {
            track: relink.TrackRecord(self.appearance[stream, track], frozenset(seen))
            for (s, track), seen in frames.items() if s == stream
            and (stream, track) in self.appearance} for stream in self.rows}
        matched = Counter((t, p) for s, _, t, p in self.matches if s == "rgb")
        persons = relink.settle(tracks, matched, self.lead)
        return {(STREAMS[m], t): p for (m, t), p in persons.items()}

    def _named(self) -> tuple[dict[str, list[str]], list[tuple[str, int, int, int]],
                              list[tuple[str, int, int, str]]]:
        """Rows, matches and names with each track's person id in place of its id."""
        settled = self.settled() if self.settle else {}
        if settled:
            # Settled persons never share a frame; a track not settled (never embedded)
            # is its own person under its own track id, which no settled person has.
            def person(stream: str, frame: int, track: int) -> int:
                return settled.get((stream, track), track)
        else:
            then = {(s, f, t): p for s, lines in self.rows.items() for f, t, p, _ in lines}
            used = {(s, f, p) for (s, f, _), p in then.items()}
            named = {}
            for (stream, frame, track), live in then.items():
                last = self.person.get((stream, track), live)
                named[stream, frame, track] = live if last != live and \
                    (stream, frame, last) in used else last

            def person(stream: str, frame: int, track: int) -> int:
                return named.get((stream, frame, track), self.person.get((stream, track), track))

        rows = {stream: [result_line(number, person(stream, number, track), box)
                         for number, track, _, box in lines]
                for stream, lines in self.rows.items()}
        matches = [(s, f, person(s, f, t), person(OTHER_STREAM[s], f, p))
                   for s, f, t, p in self.matches]
        names = [(s, f, person(s, f, t), n) for s, f, t, n in self.names]
        return rows, matches, names

    def intervals(self, matches: list[tuple[str, int, int, int]] | None = None
                  ) -> list[dict[str, int]]:
        """Runs of the match of one visible and one infrared person over consecutive
        processed visible frames."""
        if matches is None:
            matches = self._named()[1]
        out: list[dict[str, int]] = []
        open_runs: dict[tuple[int, int], dict[str, int]] = {}
        previous = dict(zip(self.frames[1:], self.frames, strict=False))
        for stream, frame, track, partner in sorted(matches, key=lambda m: m[1]):
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
        rows, matches, names = self._named()
        files = {f"{stream}.txt": "".join(lines) for stream, lines in rows.items()}
        files["matches.txt"] = "".join(f"{s},{f},{t},{p}\n" for s, f, t, p in matches)
        files["names.txt"] = "".join(f"{s},{f},{t},{n}\n" for s, f, t, n in names)
        files["matches.json"] = json.dumps(self.intervals(matches), indent=1) + "\n"
        for name, text in files.items():
            with atomic_path(self.folder / name) as tmp:
                tmp.write_text(text)

    def discard(self) -> None:
        self.rows = {s: [] for s in STREAMS.values()}
        self.matches, self.names, self.frames = [], [], []
        self.person = {}
        self.appearance = {}
