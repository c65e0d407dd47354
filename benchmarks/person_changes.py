"""Which of a live run's identity decisions were right, judged against the scene's truth.

Every ``person_changed`` event moves one track to another person id: a relink (the track's
own look matched a person who had left), a cross-camera match (the other stream's person),
or a link across the modalities. IDF1 says how much identity was lost; this says which
kind of decision lost it. Judged as ``deen score`` judges ids: each emitted person id
belongs to the truth person it is on in most of the run's rows, and a change is right when
its new id belongs to the person the track itself is on (its first box's truth person).
It also counts the tracks that ended under a fresh id though their person had been seen
before: links never made, which cost IDF1 without any wrong decision.

With ``--ceiling`` it also scores the run's own rows (the same tracks, boxes and frames,
held rows still missing) under two other sets of ids, to say how much of the IDF1 lost is
the identity decisions' and how much the detector's and tracker's: each track keeping the
id it started with (no decision at all), and each track under the truth person it is on in
most of its rows (every decision right: an *offline* ceiling no live system reaches, since
a track that changes person midway is still one track).

    python benchmarks/person_changes.py --truth SCENE --run RUN [--events FILE] [--list]
        [--ceiling]

``RUN`` is a tracks-out folder and ``FILE`` its events (default ``RUN.events.jsonl``, as
``realtime_sim.py`` writes them; for ``deen run``, its ``--events`` file).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deen.errors import DeenError
from deen.eval.live_score import _assign, _on_person, box_iou, read_run, read_truth, score_run
from deen.mot import Boxes
from deen.runtime.tracks_out import write_run
from deen.streams import STREAM_MODALITY


def owners(truth, run) -> dict[tuple[str, int], str]:
    """(stream, person id) → the truth person that id is on in most of its rows. Ids are
    per stream here, as each stream's IDF1 maps them."""
    votes: dict[tuple[str, int], Counter] = defaultdict(Counter)
    for stream, boxes in run.tracks.items():
        for (_, pid), person in _on_person(truth, stream, boxes).items():
            votes[stream, pid][person] += 1
    return {key: count.most_common(1)[0][0] for key, count in votes.items()}


def track_people(truth, events: list[dict]) -> dict[tuple[str, int], str | None]:
    """(stream, track) → the truth person under the track's first box (None: on no one)."""
    out = {}
    for event in events:
        if event["event"] != "track_started":
            continue
        stream, frame = event["stream"], event["frame"] + 1  # rows count frames from 1
        counted = truth.streams[stream].counted
        person = None
        if frame in counted.boxes:
            box = np.asarray([event["box"]], float)
            box[:, 2:] -= box[:, :2]  # x1,y1,x2,y2 → x,y,w,h, as the truth's boxes
            for _, g in _assign(box_iou(box, counted.boxes[frame])):
                person = truth.person[stream, int(counted.ids[frame][g])]
        out[stream, event["track"]] = person
    return out


def judge(truth_dir: Path, run_dir: Path, events_path: Path) -> tuple[Counter, list[str]]:
    truth = read_truth(truth_dir)
    run = read_run(run_dir, truth)
    try:
        events = [json.loads(line) for line in events_path.read_text().splitlines()
                  if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise DeenError(f"{events_path}: cannot read the run's events ({exc})") from None
    try:
        return _judge(truth, run, events)
    except (KeyError, TypeError) as exc:
        raise DeenError(f"{events_path}: not a deen run event log (a record without "
                        f"{exc})") from None


def _judge(truth, run, events: list[dict]) -> tuple[Counter, list[str]]:
    owner, on = owners(truth, run), track_people(truth, events)
    tally: Counter = Counter()
    wrong = []
    final: dict[tuple[str, int], int] = {}  # (stream, track) → its person id now
    began: dict[tuple[str, int], int] = {}  # (stream, track) → its start's place in the log
    gone: dict[str, int] = {}  # truth person → where in the log their first track ended
    for order, event in enumerate(events):
        key = (event.get("stream"), event.get("track"))
        if event["event"] == "track_started":
            final[key], began[key] = event["person"], order
        elif event["event"] == "track_ended":
            person = on.get(key)
            if person is None:
                continue
            own_id = all(k == key or pid != final.get(key) for k, pid in final.items()
                         if began[k] <= began[key])
            if own_id and gone.get(person, order) < began[key]:
                tally[key[0], "never linked", "wrong"] += 1
            gone.setdefault(person, order)
        if event["event"] != "person_changed":
            continue
        final[key] = event["person"]
        person, new = on.get(key), owner.get((key[0], event["person"]))
        verdict = "unknown" if person is None or new is None else \
            "right" if new == person else "wrong"
        tally[key[0], event["reason"], verdict] += 1
        if verdict == "wrong":
            wrong.append(f"{key[0]} frame {event['frame']} track {key[1]} ({person}): id "
                         f"{event['previous']} -> {event['person']} ({new}), "
                         f"{event['reason']}, similarity {event.get('similarity')}")
    return tally, wrong


def ceilings(truth_dir: Path, run_dir: Path) -> dict[str, tuple[float, float, float]]:
    """IDF1 (visible, infrared, multi-camera) of the run's rows under three sets of ids:
    as emitted, each track's first id, and each track's own truth person (the person it is
    on in most of its rows; a track on no one, or a second track on one person in a frame,
    keeps an id of its own)."""
    truth = read_truth(truth_dir)
    try:
        table = np.load(run_dir / "run.npz")["rows"]
    except (OSError, KeyError, ValueError) as exc:
        raise DeenError(f"{run_dir / 'run.npz'}: cannot read the run's rows ({exc})") from None
    first: dict[tuple[int, int], int] = {}
    for modality, _, track, person in table[:, :4].astype(int):
        first.setdefault((modality, track), person)
    majority: dict[tuple[int, int], str] = {}
    for stream, modality in STREAM_MODALITY.items():
        rows = table[table[:, 0] == modality]
        boxes = Boxes()
        for frame in np.unique(rows[:, 1]).astype(int):
            here = rows[rows[:, 1] == frame]
            boxes.ids[frame] = here[:, 2].astype(np.int64)
            boxes.boxes[frame] = np.c_[here[:, 4:6], here[:, 6:8] - here[:, 4:6]]
            boxes.scores[frame] = np.ones(len(here))
        votes: dict[int, Counter] = defaultdict(Counter)
        for (_, track), person in _on_person(truth, stream, boxes).items():
            votes[track][person] += 1
        majority.update({(modality, t): c.most_common(1)[0][0] for t, c in votes.items()})
    number = {name: n for n, name in enumerate(sorted(set(majority.values())), 1)}
    spare = int(table[:, 3].max(initial=0)) + len(number) + 1  # ids no person has

    def alone(modality: int, track: int) -> int:
        """An id of the track's own, which no person and no other track has."""
        return spare + 100000 * (1 + modality) + track

    ways = {"as emitted": lambda m, t, p: p, "first id": lambda m, t, p: first[m, t],
            "own truth person (offline ceiling)":
                lambda m, t, p: number[majority[m, t]] if (m, t) in majority else alone(m, t)}
    out = {}
    for way, pick in ways.items():
        rows: dict[str, list] = {}
        for stream, modality in STREAM_MODALITY.items():
            used: set[tuple[int, int]] = set()
            rows[stream] = []
            for _, frame, track, person, *box in table[table[:, 0] == modality]:
                pid = pick(modality, int(track), int(person))
                if (int(frame), pid) in used:
                    pid = alone(modality, int(track))
                used.add((int(frame), pid))
                rows[stream].append((int(frame), int(track), pid, tuple(box)))
        with tempfile.TemporaryDirectory() as scratch:
            write_run(Path(scratch), rows, [], [], {})
            score = score_run(truth_dir, Path(scratch))
        out[way] = (score.streams["rgb"]["idf1"], score.streams["ir"]["idf1"],
                    score.idf1_cross)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truth", type=Path, required=True, help="the scene's folder")
    parser.add_argument("--run", type=Path, required=True, help="the run's tracks-out folder")
    parser.add_argument("--events", type=Path, default=None,
                        help="the run's events (default: RUN.events.jsonl)")
    parser.add_argument("--list", action="store_true", help="print each wrong change")
    parser.add_argument("--ceiling", action="store_true",
                        help="also score the run's rows with each track's first id and with "
                             "each track's own truth person (offline)")
    args = parser.parse_args()
    events = args.events or args.run.with_name(args.run.name + ".events.jsonl")
    try:
        tally, wrong = judge(args.truth, args.run, events)
    except DeenError as exc:
        sys.exit(f"person_changes: {exc}")
    print("| stream | reason | right | wrong | on no one |\n|---|---|---:|---:|---:|")
    for stream, reason in sorted({(s, r) for s, r, _ in tally}):
        print(f"| {stream} | {reason} | {tally[stream, reason, 'right']} | "
              f"{tally[stream, reason, 'wrong']} | {tally[stream, reason, 'unknown']} |")
    if args.list:
        print("\n".join(wrong))
    if args.ceiling:
        try:
            table = ceilings(args.truth, args.run)
        except DeenError as exc:
            sys.exit(f"person_changes: {exc}")
        print("\n| ids | IDF1 visible | IDF1 infrared | multi-camera IDF1 |\n|---|---:|---:|---:|")
        for way, values in table.items():
            print(f"| {way} | " + " | ".join("n/a" if v is None else f"{100 * v:.1f}%"
                                              for v in values) + " |")


if __name__ == "__main__":
    main()
