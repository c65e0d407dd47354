"""``deen run --tracks-out DIR``: what the run emitted, in files a scorer reads.

- ``rgb.txt``, ``ir.txt``: each stream's tracks in MOTChallenge result format,
  ``frame,id,x,y,w,h,conf,-1,-1,-1`` with frame = the source's frame number + 1 and id =
  the **person id the run gave that track at that frame** (the one its events carried; one
  id space for both streams), never changed afterwards;
- ``matches.txt``: ``stream,frame,id,partner,partner_frame`` for every row above whose track
  was matched at that moment to the other stream's track, and that track had a box in its
  stream's newest frame ``partner_frame`` (neither box wider than a group of people in one
  box, ``matching.group_width``): ``partner`` is that track's person id then;
- ``names.txt``: ``stream,frame,id,name`` for rows whose track had a gallery name;
- ``matches.json``: the match intervals, ``{"rgb": id, "ir": id, "first": frame, "last":
  frame}`` in visible-stream frames;
- ``run.npz``: each row's track id and each track's summed embeddings, from which ``deen
  tracks settle`` (:func:`settle_run`) can decide ids again offline, with the whole run seen.

The files are written when the run ends normally (nothing half-written after an error).
:mod:`deen.eval.live_score` scores them against a scene's truth.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from deen.errors import DeenError
from deen.fileio import atomic_path, require_new_folder
from deen.modality import Modality
from deen.mot import SETTLED_MARK, result_line
from deen.runtime import relink
from deen.runtime.outputs import Output
from deen.runtime.pipeline import PipelineSnapshot
from deen.runtime.sources import Frame
from deen.streams import OTHER_STREAM, STREAM_MODALITY, STREAMS

#: The files a tracks folder holds (a folder holding any of them holds an earlier run).
TRACKS_FILES = ("rgb.txt", "ir.txt", "matches.txt", "matches.json", "names.txt", "run.npz",
                SETTLED_MARK)
#: A row: (frame, track id, person id, (x1, y1, x2, y2)).
Row = tuple[int, int, int, tuple[float, ...]]
#: A match row: (stream, frame, track, person, partner track, partner person, partner frame).
MatchRow = tuple[str, int, int, int, int, int, int]


class TracksWriter(Output):
    """Collects every processed frame's tracks and matches; writes them on :meth:`close`."""

    name = "tracks"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.appearance: dict[tuple[str, int], np.ndarray] = {}  # newest summed embeddings
        self.rows: dict[str, list[Row]] = {s: [] for s in STREAMS.values()}
        self.matches: list[MatchRow] = []
        self.names: list[tuple[str, int, int, str]] = []  # stream, frame, person, name
        self.last_frame: dict[str, int] = {}  # each stream's newest frame number

    def __call__(self, snapshot: PipelineSnapshot,
                 frames: Mapping[Modality, Frame | None]) -> None:
        for modality, frame in frames.items():
            if frame is not None:
                self.last_frame[STREAMS[modality]] = frame.position + 1
        for modality, frame in frames.items():
            if frame is None:
                continue
            stream, number = STREAMS[modality], frame.position + 1
            other = OTHER_STREAM[stream]
            for track in snapshot.tracks.get(modality, ()):
                if track.held:
                    continue
                if track.appearance is not None:
                    self.appearance[stream, track.track_id] = track.appearance
                self.rows[stream].append((number, track.track_id, track.person_id,
                                          tuple(track.box)))
                if track.partner is not None and track.partner_person is not None:
                    self.matches.append((stream, number, track.track_id, track.person_id,
                                         track.partner, track.partner_person,
                                         self.last_frame.get(other, number)))
                if track.name is not None:
                    self.names.append((stream, number, track.person_id, track.name))

    def close(self) -> None:
        write_run(self.folder, self.rows, self.matches, self.names, self.appearance)

    def discard(self) -> None:
        self.rows = {s: [] for s in STREAMS.values()}
        self.matches, self.names, self.appearance = [], [], {}


def intervals(matches: list[MatchRow], rgb_frames: list[int]) -> list[dict[str, int]]:
    """Runs of the match of one visible and one infrared person over consecutive processed
    visible frames."""
    out: list[dict[str, int]] = []
    open_runs: dict[tuple[int, int], dict[str, int]] = {}
    previous = dict(zip(rgb_frames[1:], rgb_frames, strict=False))
    for stream, frame, _, person, _, partner, _ in sorted(matches, key=lambda m: m[1]):
        if stream != "rgb":
            continue
        run = open_runs.get((person, partner))
        if run is not None and run["last"] == previous.get(frame):
            run["last"] = frame
            continue
        run = {"rgb": person, "ir": partner, "first": frame, "last": frame}
        open_runs[(person, partner)] = run
        out.append(run)
    return out


def write_run(folder: Path, rows: dict[str, list[Row]], matches: list[MatchRow],
              names: list[tuple[str, int, int, str]],
              appearance: dict[tuple[str, int], np.ndarray],
              extra: dict[str, str] | None = None) -> None:
    """Every file of a tracks folder (see the module's description), each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rgb_frames = sorted({f for f, _, _, _ in rows.get("rgb", [])})
    files = {f"{stream}.txt": "".join(result_line(f, p, box) for f, _, p, box in lines)
             for stream, lines in rows.items()}
    files["matches.txt"] = "".join(f"{s},{f},{p},{q},{g}\n"
                                   for s, f, _, p, _, q, g in matches)
    files["names.txt"] = "".join(f"{s},{f},{p},{n}\n" for s, f, p, n in names)
    files["matches.json"] = json.dumps(intervals(matches, rgb_frames), indent=1) + "\n"
    files.update(extra or {})
    for name, text in files.items():
        with atomic_path(folder / name) as tmp:
            tmp.write_text(text)
    keys = sorted(appearance)
    table = np.array([(STREAM_MODALITY[s], f, t, p, *box) for s, lines in rows.items()
                      for f, t, p, box in lines], np.float64).reshape(-1, 8)
    with atomic_path(folder / "run.npz") as tmp, tmp.open("wb") as out:
        np.savez_compressed(
            out, rows=table,
            matches=np.array([(STREAM_MODALITY[s], f, t, p, pt, pp, g)
                              for s, f, t, p, pt, pp, g in matches], np.int64).reshape(-1, 7),
            keys=np.array([(STREAM_MODALITY[s], t) for s, t in keys], np.int64).reshape(-1, 2),
            appearance=(np.stack([appearance[k] for k in keys]) if keys
                        else np.zeros((0, 0))).astype(np.float32))


def settle_run(run: Path, out: Path, force: bool = False) -> dict[str, int]:
    """``deen tracks settle``: the tracks folder ``run`` again in the new folder ``out``,
    with person ids decided *offline* by :func:`deen.runtime.relink.settle` (each track's
    whole appearance, who was seen together, the matches), and a ``settled.json`` saying so.
    Returns how many persons each stream has before and after."""
    run, out = Path(run), Path(out)
    source = run / "run.npz"
    if not source.is_file():
        raise DeenError(f"{source}: missing (a live run's tracks folder holds it beside "
                        "rgb.txt and ir.txt)")
    if force and out.exists():
        shutil.rmtree(out)
    require_new_folder(out)
    try:
        with np.load(source) as data:
            table, matches = data["rows"], data["matches"]
            keys, vectors = data["keys"], data["appearance"]
    except (OSError, KeyError, ValueError) as exc:
        raise DeenError(f"{source}: not a run record ({exc})") from None
    appearance = {(STREAMS[Modality(int(m))], int(t)): v for (m, t), v in
                  zip(keys, vectors, strict=True)}
    seen: dict[tuple[str, int], set[int]] = {}
    for m, f, t, *_ in table:
        seen.setdefault((STREAMS[Modality(int(m))], int(t)), set()).add(int(f))
    records = {STREAM_MODALITY[s]: {t: relink.TrackRecord(appearance[s, t], frozenset(f))
                                    for (s2, t), f in seen.items()
                                    if s2 == s and (s, t) in appearance}
               for s in STREAMS.values()}
    matched = Counter((int(t), int(pt)) for m, _, t, _, pt, _, _ in matches
                      if Modality(int(m)) == Modality.VISIBLE)
    persons = relink.settle(records, matched)
    # Tracks never embedded keep an id of their own, beyond every settled one.
    spare = max(persons.values(), default=0) + 1
    person: dict[tuple[str, int], int] = {}
    for key in sorted(seen):
        settled = persons.get((STREAM_MODALITY[key[0]], key[1]))
        if settled is None:
            settled, spare = spare, spare + 1
        person[key] = settled
    rows: dict[str, list[Row]] = {s: [] for s in STREAMS.values()}
    for m, f, t, _, *box in table:
        stream = STREAMS[Modality(int(m))]
        rows[stream].append((int(f), int(t), person[stream, int(t)], tuple(box)))
    new_matches = [(STREAMS[Modality(int(m))], int(f), int(t),
                    person[STREAMS[Modality(int(m))], int(t)], int(pt),
                    person[OTHER_STREAM[STREAMS[Modality(int(m))]], int(pt)], int(g))
                   for m, f, t, _, pt, _, g in matches]
    names = []
    names_file = run / "names.txt"
    live_to_track = {(STREAMS[Modality(int(m))], int(f), int(p)): int(t)
                     for m, f, t, p, *_ in table}
    if names_file.is_file():
        for line in names_file.read_text().splitlines():
            stream, frame, live, name = line.split(",", 3)
            track = live_to_track.get((stream, int(frame), int(live)))
            if track is not None:
                names.append((stream, int(frame), person[stream, track], name))
    mark = json.dumps({"offline": True, "settled_from": str(run),
                       "method": "deen.runtime.relink.settle: each stream's tracks clustered "
                                 "by whole appearance after the run"}, indent=1) + "\n"
    write_run(out, rows, new_matches, names, appearance, {SETTLED_MARK: mark})
    before = {s: len({p for _, _, p, _ in lines}) for s, lines in
              _live_rows(table).items()}
    return {**{f"{s}_live": n for s, n in before.items()},
            **{f"{s}_settled": len({p for _, _, p, _ in lines}) for s, lines in rows.items()}}


def _live_rows(table: np.ndarray) -> dict[str, list[Row]]:
    rows: dict[str, list[Row]] = {s: [] for s in STREAMS.values()}
    for m, f, t, p, *box in table:
        rows[STREAMS[Modality(int(m))]].append((int(f), int(t), int(p), tuple(box)))
    return rows
