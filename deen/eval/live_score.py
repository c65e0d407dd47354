"""``deen score``: a live run's tracks and matches against a scene's truth.

Truth is a folder in MOTChallenge layout per stream (``rgb/`` and ``ir/``, each with
``gt/gt.txt`` and ``seqinfo.ini``, as ``deen data scene`` writes and CVAT exports) plus
``identities.csv`` (``stream,id,person[,name]``), the key that says which annotated track in
one stream is which person in the other. The streams may differ in frame rate and length;
``seqinfo.ini``'s ``startTime`` (deen's own key, 0 when absent) places each stream's first
frame on the pair's shared clock. The run is a ``deen run --tracks-out`` folder: its ids are
the person ids the run emitted, one id space for both streams.

Reported:

- per stream, HOTA, IDF1 and MOTA, by TrackEval's implementations of the metrics;
- **multi-camera IDF1** (``idf1_cross``), as multi-camera tracking benchmarks score it: both
  streams as one sequence (the visible frames, then the infrared ones), truth ids the key's
  persons and run ids the emitted person ids: a person who keeps one id in both streams
  counts once;
- across the pair:
  - **match precision**: the share of matched rows (a track at a frame, carrying a match)
    whose partner's box, on the partner's stream at the frame it was matched on, is on the
    same person;
  - **match recall**: the share of (person, visible frame) where the person is tracked in
    both streams at that moment (the infrared frame nearest in time) and the two tracks
    carry their match;
  - **matches per true pair**: match intervals formed per true pair, a visit of one person
    tracked in both streams (a gap over 2 s starts a new visit); 1.0: each pair matched
    once and kept;
  - the median time from a person being tracked in both streams to their first correct
    match;
- **one id across the cameras** (what cameras at different places need): of the people
  both cameras saw (``both_seen_people``), the share whose rows in each stream mostly carry
  one and the same id (``one_id_share``); of the ids the run gave in both streams
  (``cross_links``), the share that joined two different people (``wrong_cross_link_share``);
- gallery recognition accuracy, when the run named tracks and the key has names.

A run row is on a person at a frame when it overlaps that person's truth box by IoU >= 0.5
(one-to-one, by the assignment that maximises IoU). Rows on ignored truth (column 7 = 0:
people mostly hidden or out of the frame) are dropped first, as TrackEval's MOTChallenge
reader drops rows on distractors. A run folder whose ids were settled after the run (``deen
tracks settle``) is scored the same way and marked ``offline``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from deen.errors import DeenError
from deen.fileio import atomic_path
from deen.mot import SETTLED_MARK, Boxes, SequenceInfo, read_boxes, read_seqinfo
from deen.runtime.tracking import iou_matrix
from deen.scenes import TRUTH_FILES
from deen.streams import OTHER_STREAM, STREAMS

STREAM_NAMES = tuple(STREAMS.values())  # ("rgb", "ir")
MATCH_IOU = 0.5


def _xyxy(xywh: np.ndarray) -> np.ndarray:
    return np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every x, y, w, h box in ``a`` with every one in ``b``."""
    return iou_matrix(_xyxy(a).reshape(-1, 4), _xyxy(b).reshape(-1, 4)).astype(np.float64)


def _assign(iou: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs (row, column) with IoU >= 0.5, maximising the total IoU."""
    if iou.size == 0:
        return []
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True)
            if iou[r, c] >= MATCH_IOU - 1e-9]


@dataclass
class StreamTruth:
    info: SequenceInfo
    counted: Boxes  # people who count
    ignored: Boxes  # ignored regions


@dataclass
class Truth:
    root: Path
    streams: dict[str, StreamTruth]
    person: dict[tuple[str, int], str]  # (stream, id) → person
    names: dict[str, str]  # person → gallery name, where the key gives one

    @property
    def fps(self) -> float:
        return self.streams["rgb"].info.fps


def _split_ignored(boxes: Boxes) -> tuple[Boxes, Boxes]:
    counted, ignored = Boxes(), Boxes()
    for frame in boxes.frames():
        keep = boxes.scores[frame] != 0
        for target, mask in ((counted, keep), (ignored, ~keep)):
            if mask.any():
                target.ids[frame] = boxes.ids[frame][mask]
                target.boxes[frame] = boxes.boxes[frame][mask]
                target.scores[frame] = boxes.scores[frame][mask]
    return counted, ignored


def read_truth(root: Path) -> Truth:
    """A scene's truth; every problem is one line naming the file."""
    root = Path(root)
    if not root.is_dir():
        what = "a file, not a truth folder" if root.exists() else "no such truth folder"
        raise DeenError(f"{root}: {what} (expected rgb/ and ir/ in MOTChallenge layout)")
    streams = {}
    for stream in STREAM_NAMES:
        info_path, gt_path = root / stream / "seqinfo.ini", root / stream / "gt" / "gt.txt"
        for path in (info_path, gt_path):
            if not path.is_file():
                raise DeenError(f"{path}: missing (a truth folder holds rgb/ and ir/, each "
                                "with gt/gt.txt and seqinfo.ini)")
        info = read_seqinfo(info_path)
        counted, ignored = _split_ignored(read_boxes(gt_path, info.length))
        streams[stream] = StreamTruth(info, counted, ignored)
    person: dict[tuple[str, int], str] = {}
    names: dict[str, str] = {}
    key = root / TRUTH_FILES["identities"]
    if not key.is_file():
        raise DeenError(f"{key}: missing: the cross-camera key (stream,id,person: which "
                        "annotated id in one stream is which person in the other) that "
                        "multi-camera IDF1 and the match scores need; where the ids are equal "
                        "in both streams, write one row per stream and id with person = id")
    with key.open(newline="") as f:
        for number, row in enumerate(csv.DictReader(f), 2):
            try:
                stream, track = row["stream"], int(row["id"])
                who = row["person"].strip()
            except (KeyError, TypeError, ValueError, AttributeError):
                raise DeenError(f"{key}:{number}: expected stream,id,person[,name]") from None
            if stream not in STREAM_NAMES or not who:
                raise DeenError(f"{key}:{number}: stream must be rgb or ir and person "
                                "non-empty")
            person[stream, track] = who
            if row.get("name"):
                names[who] = row["name"].strip()
    for stream, truth in streams.items():  # without a key entry, the id is the person
        for track in truth.counted.all_ids():
            person.setdefault((stream, track), f"id{track}")
    return Truth(root, streams, person, names)


def _rgb_to_ir(truth: Truth) -> dict[int, int]:
    """Each visible frame's nearest infrared frame in time."""
    rgb, ir = truth.streams["rgb"].info, truth.streams["ir"].info
    return {f: ir.frame_at(rgb.time_of(f)) for f in range(1, rgb.length + 1)}


@dataclass
class Run:
    tracks: dict[str, Boxes]
    # stream, frame, id, partner id, the partner's frame on its own stream
    matches: list[tuple[str, int, int, int, int]]
    names: list[tuple[str, int, int, str]]
    offline: bool = False  # ids settled after the run (deen tracks settle)


def _read_rows(path: Path, columns: int | tuple[int, ...], split: int = -1
               ) -> list[list[str]]:
    """A file's comma-separated rows that start with a stream name, each of one of
    ``columns`` lengths (``split``: at most that many splits, for a free last field)."""
    if not path.is_file():
        return []
    lengths = (columns,) if isinstance(columns, int) else columns
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            fields = [f.strip() for f in line.split(",", split)]
            if len(fields) not in lengths or fields[0] not in STREAM_NAMES:
                raise DeenError(f"{path}:{number}: expected {' or '.join(map(str, lengths))} "
                                "comma-separated fields starting with rgb or ir")
            rows.append(fields)
    return rows


def read_run(folder: Path, truth: Truth) -> Run:
    folder = Path(folder)
    if not folder.is_dir():
        what = "a file, not a run folder" if folder.exists() else "no such run folder"
        raise DeenError(f"{folder}: {what} (the tracks-out folder of deen run)")
    tracks = {}
    for stream in STREAM_NAMES:
        path = folder / f"{stream}.txt"
        if not path.is_file():
            raise DeenError(f"{path}: missing (a run's tracks-out folder holds rgb.txt and ir.txt)")
        tracks[stream] = read_boxes(path, truth.streams[stream].info.length)
    if not any(t.rows() for t in tracks.values()):
        raise DeenError(f"{folder}: the run has no tracks in either stream; nothing to score")
    try:
        # stream,frame,id,partner[,partner_frame]: without the partner's frame (older
        # files), the partner is taken on the same frame number.
        matches = [(m[0], int(m[1]), int(m[2]), int(m[3]), int(m[4] if len(m) > 4 else m[1]))
                   for m in _read_rows(folder / "matches.txt", (4, 5))]
        names = [(s, int(f), int(t), n)
                 for s, f, t, n in _read_rows(folder / "names.txt", 4, split=3)]
    except ValueError as exc:
        raise DeenError(f"{folder}: matches.txt or names.txt holds a non-integer ({exc})"
                        ) from None
    return Run(tracks, matches, names, offline=(folder / SETTLED_MARK).is_file())


def _drop_ignored(run: Boxes, truth: StreamTruth) -> Boxes:
    """The run's rows without those on ignored truth: rows are assigned to counted and
    ignored truth boxes together, and those that land on ignored ones are dropped."""
    out = Boxes()
    empty = np.zeros((0, 4))
    for frame in run.frames():
        keep = np.ones(len(run.ids[frame]), bool)
        if frame in truth.ignored.boxes:
            counted = truth.counted.boxes.get(frame, empty)
            both = np.concatenate([counted, truth.ignored.boxes[frame]])
            for r, g in _assign(box_iou(run.boxes[frame], both)):
                if g >= len(counted):
                    keep[r] = False
        if keep.any():
            out.ids[frame] = run.ids[frame][keep]
            out.boxes[frame] = run.boxes[frame][keep]
            out.scores[frame] = run.scores[frame][keep]
    return out


def tracking_metrics(truth: Boxes, run: Boxes, length: int) -> dict[str, float]:
    """HOTA, IDF1 and MOTA (and their parts) by TrackEval's metric classes."""
    try:
        # TrackEval's package announces on stdout each optional dataset reader whose
        # dependency is missing (pycocotools); the metrics need none of them.
        with contextlib.redirect_stdout(io.StringIO()):
            from trackeval.metrics import CLEAR, HOTA, Identity
    except ImportError:
        raise DeenError("TrackEval is not installed: scripts/setup.sh installs it, without "
                        "its dependencies") from None

    gt_index = {i: k for k, i in enumerate(sorted(truth.all_ids()))}
    run_index = {i: k for k, i in enumerate(sorted(run.all_ids()))}
    empty_ids, empty_boxes = np.zeros(0, int), np.zeros((0, 4))
    data: dict[str, Any] = {"num_timesteps": length, "num_gt_ids": len(gt_index),
                            "num_tracker_ids": len(run_index), "gt_ids": [],
                            "tracker_ids": [], "similarity_scores": []}
    for frame in range(1, length + 1):
        gt_ids = truth.ids.get(frame, empty_ids)
        run_ids = run.ids.get(frame, empty_ids)
        data["gt_ids"].append(np.array([gt_index[int(i)] for i in gt_ids], int))
        data["tracker_ids"].append(np.array([run_index[int(i)] for i in run_ids], int))
        data["similarity_scores"].append(box_iou(truth.boxes.get(frame, empty_boxes),
                                                 run.boxes.get(frame, empty_boxes)))
    data["num_gt_dets"] = truth.rows()
    data["num_tracker_dets"] = run.rows()
    hota = HOTA().eval_sequence(data)
    clear = CLEAR({"PRINT_CONFIG": False}).eval_sequence(data)
    identity = Identity({"PRINT_CONFIG": False}).eval_sequence(data)
    return {"hota": float(np.mean(hota["HOTA"])), "deta": float(np.mean(hota["DetA"])),
            "assa": float(np.mean(hota["AssA"])), "idf1": float(identity["IDF1"]),
            "mota": float(clear["MOTA"]), "id_switches": int(clear["IDSW"]),
            "truth_rows": truth.rows(), "run_rows": run.rows()}


@dataclass
class PersonTimeline:
    person: str
    frames: int  # the visible sequence's length: the timeline's axis
    in_view: dict[str, list[int]] = field(default_factory=dict)  # stream → visible frames
    tracked_both: list[int] = field(default_factory=list)
    matched_right: list[int] = field(default_factory=list)
    matched_wrong: list[int] = field(default_factory=list)


@dataclass
class LiveScore:
    truth: str
    run: str
    streams: dict[str, dict[str, float]]
    match_precision: float | None
    match_recall: float | None
    matched_rows: int
    true_pairs: int
    match_intervals: int
    matches_per_true_pair: float | None
    first_match_s_median: float | None
    never_matched: int
    gallery_accuracy: float | None
    idf1_cross: float = 0.0  # multi-camera IDF1: both streams as one sequence
    hota_cross: float = 0.0
    both_seen_people: int = 0  # people both cameras saw
    one_id_share: float | None = None  # … whose rows in each stream mostly carry one id
    cross_links: int = 0  # ids the run gave in both streams
    wrong_cross_link_share: float | None = None  # … that joined two different people
    offline: bool = False  # the ids were settled after the run (deen tracks settle)
    timelines: list[PersonTimeline] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("timelines")
        out["idf1"] = {s: m["idf1"] for s, m in self.streams.items()}
        out["hota"] = {s: m["hota"] for s, m in self.streams.items()}
        return out

    def markdown(self) -> str:
        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{100 * value:.1f}%"

        title = f"# deen score: {self.run} against {self.truth}"
        lines = [title + (" (offline: ids settled after the run, not as emitted)"
                          if self.offline else " (ids as emitted)"), "",
                 "| stream | HOTA | IDF1 | MOTA | DetA | AssA | ID switches |",
                 "|---|---|---|---|---|---|---|"]
        for stream, m in self.streams.items():
            lines.append(f"| {stream} | {pct(m['hota'])} | {pct(m['idf1'])} | "
                         f"{pct(m['mota'])} | {pct(m['deta'])} | {pct(m['assa'])} | "
                         f"{m['id_switches']} |")
        lines.append(f"| both (multi-camera) | {pct(self.hota_cross)} | "
                     f"{pct(self.idf1_cross)} | | | | |")
        churn = ("n/a" if self.matches_per_true_pair is None
                 else f"{self.matches_per_true_pair:.2f}")
        first = ("n/a" if self.first_match_s_median is None
                 else f"{self.first_match_s_median:.1f} s")
        lines += ["", "| across the pair | value |", "|---|---|",
                  f"| match precision | {pct(self.match_precision)} "
                  f"({self.matched_rows} matched rows) |",
                  f"| match recall | {pct(self.match_recall)} |",
                  f"| matches per true pair | {churn} ({self.match_intervals} matches, "
                  f"{self.true_pairs} true pairs: visits tracked in both streams) |",
                  f"| median time to the first correct match | {first} "
                  f"({self.never_matched} never matched) |",
                  f"| one id in both streams | {pct(self.one_id_share)} of the "
                  f"{self.both_seen_people} people both cameras saw |",
                  f"| wrong cross-stream links | {pct(self.wrong_cross_link_share)} of "
                  f"{self.cross_links} ids given in both streams |",
                  f"| gallery recognition accuracy | {pct(self.gallery_accuracy)} |"]
        return "\n".join(lines) + "\n"


def _on_person(truth: Truth, stream: str, run: Boxes) -> dict[tuple[int, int], str]:
    """(frame, run id) → the person it is on at that frame."""
    counted = truth.streams[stream].counted
    out = {}
    for frame in run.frames():
        if frame not in counted.boxes:
            continue
        for r, g in _assign(box_iou(run.boxes[frame], counted.boxes[frame])):
            out[frame, int(run.ids[frame][r])] = truth.person[stream,
                                                              int(counted.ids[frame][g])]
    return out


def _cross_metrics(truth: Truth, tracks: dict[str, Boxes]) -> dict[str, float]:
    """HOTA and IDF1 with both streams as one sequence: the visible frames, then the
    infrared ones; truth ids are the key's persons, run ids the emitted ids."""
    persons = {p: k for k, p in enumerate(sorted(set(truth.person.values())))}
    offset = truth.streams["rgb"].info.length
    gt, run = Boxes(), Boxes()
    for shift, stream in ((0, "rgb"), (offset, "ir")):
        counted = truth.streams[stream].counted
        for frame in counted.frames():
            gt.ids[frame + shift] = np.array([persons[truth.person[stream, int(i)]]
                                              for i in counted.ids[frame]], np.int64)
            gt.boxes[frame + shift] = counted.boxes[frame]
            gt.scores[frame + shift] = counted.scores[frame]
        for frame in tracks[stream].frames():
            run.ids[frame + shift] = tracks[stream].ids[frame]
            run.boxes[frame + shift] = tracks[stream].boxes[frame]
            run.scores[frame + shift] = tracks[stream].scores[frame]
    metrics = tracking_metrics(gt, run, offset + truth.streams["ir"].info.length)
    return {"idf1": metrics["idf1"], "hota": metrics["hota"]}


def _one_id(on: dict[str, dict[tuple[int, int], str]]) -> tuple[int, float | None, int,
                                                                 float | None]:
    """(people seen in both streams, the share of them whose rows mostly carry one id in
    both, ids given in both streams, the share of those that joined two people)."""
    votes = {s: defaultdict(Counter) for s in on}  # stream → person → id → rows
    owners = {s: defaultdict(Counter) for s in on}  # stream → id → person → rows
    for stream, rows in on.items():
        for (_, run_id), who in rows.items():
            votes[stream][who][run_id] += 1
            owners[stream][run_id][who] += 1
    both = set(votes["rgb"]) & set(votes["ir"])
    same = sum(votes["rgb"][p].most_common(1)[0][0] == votes["ir"][p].most_common(1)[0][0]
               for p in both)
    links = set(owners["rgb"]) & set(owners["ir"])
    wrong = sum(owners["rgb"][i].most_common(1)[0][0] != owners["ir"][i].most_common(1)[0][0]
                for i in links)
    return (len(both), same / len(both) if both else None, len(links),
            wrong / len(links) if links else None)


def score_run(truth_dir: Path, run_dir: Path) -> LiveScore:
    """Score a ``deen run --tracks-out`` folder against a truth folder."""
    truth = read_truth(truth_dir)
    run = read_run(run_dir, truth)
    length = truth.streams["rgb"].info.length
    tracks = {s: _drop_ignored(run.tracks[s], truth.streams[s]) for s in STREAM_NAMES}
    streams = {s: tracking_metrics(truth.streams[s].counted, tracks[s],
                                   truth.streams[s].info.length) for s in STREAM_NAMES}
    cross = _cross_metrics(truth, tracks)
    on = {s: _on_person(truth, s, tracks[s]) for s in STREAM_NAMES}
    kept = {s: {(f, int(i)) for f in tracks[s].frames() for i in tracks[s].ids[f]}
            for s in STREAM_NAMES}
    to_ir = _rgb_to_ir(truth)
    rgb_info = truth.streams["rgb"].info
    to_rgb = {s: (lambda f: f) if s == "rgb" else
              (lambda f, ir=truth.streams["ir"].info: rgb_info.frame_at(ir.time_of(f)))
              for s in STREAM_NAMES}
    right = wrong = 0
    timelines: dict[str, PersonTimeline] = {}

    def timeline(who: str) -> PersonTimeline:
        return timelines.setdefault(who, PersonTimeline(who, length))

    for stream, frame, run_id, partner, partner_frame in run.matches:
        if (frame, run_id) not in kept[stream]:  # a row on ignored truth: not judged
            continue
        who = on[stream].get((frame, run_id))
        partner_is = on[OTHER_STREAM[stream]].get((partner_frame, partner))
        if who is not None and who == partner_is:
            right += 1
        else:
            wrong += 1
            if who is not None:
                timeline(who).matched_wrong.append(to_rgb[stream](frame))
    # (person, frame) → that person's run id in each stream, on visible frames.
    id_of: dict[str, dict[tuple[str, int], int]] = {s: {} for s in STREAM_NAMES}
    for stream in STREAM_NAMES:
        for (frame, run_id), who in on[stream].items():
            id_of[stream][who, frame] = run_id
    carried = {(s, f, i): p for s, f, i, p, _ in run.matches}
    for stream in STREAM_NAMES:
        for frame, ids in truth.streams[stream].counted.ids.items():
            for track in ids:
                timeline(truth.person[stream, int(track)]).in_view.setdefault(
                    stream, []).append(to_rgb[stream](frame))
    both = sorted(((who, f) for who, f in id_of["rgb"] if (who, to_ir[f]) in id_of["ir"]),
                  key=lambda k: k[1])
    correct = 0
    for who, frame in both:
        line = timeline(who)
        line.tracked_both.append(frame)
        rgb_id, ir_id = id_of["rgb"][who, frame], id_of["ir"][who, to_ir[frame]]
        if carried.get(("rgb", frame, rgb_id)) == ir_id or \
                carried.get(("ir", to_ir[frame], ir_id)) == rgb_id:
            correct += 1
            line.matched_right.append(frame)
    intervals = _match_intervals(run.matches, run.tracks["rgb"])
    true_pairs = sum(_segments(line.tracked_both, round(2 * truth.fps))
                     for line in timelines.values())
    delays = []
    never = 0
    for line in timelines.values():
        if not line.tracked_both:
            continue
        if line.matched_right:
            delays.append((line.matched_right[0] - line.tracked_both[0]) / truth.fps)
        else:
            never += 1
    gallery = None
    named = [(s, f, t, n) for s, f, t, n in run.names if (f, t) in on[s]]
    if named and truth.names:
        gallery = sum(truth.names.get(on[s][f, t]) == n for s, f, t, n in named) / len(named)
    seen_both, one_id, links, wrong_links = _one_id(on)
    matched = right + wrong
    return LiveScore(
        truth=str(truth.root), run=str(run_dir), streams=streams,
        match_precision=right / matched if matched else None,
        match_recall=correct / len(both) if both else None, matched_rows=matched,
        true_pairs=true_pairs, match_intervals=intervals,
        matches_per_true_pair=intervals / true_pairs if true_pairs else None,
        first_match_s_median=float(np.median(delays)) if delays else None,
        never_matched=never, gallery_accuracy=gallery, idf1_cross=cross["idf1"],
        hota_cross=cross["hota"], both_seen_people=seen_both, one_id_share=one_id,
        cross_links=links, wrong_cross_link_share=wrong_links, offline=run.offline,
        timelines=sorted(timelines.values(), key=lambda t: t.person))


def _segments(frames: list[int], gap: int) -> int:
    """Runs of ``frames`` (sorted) split where more than ``gap`` frames are missing."""
    return sum(1 for k, f in enumerate(frames) if k == 0 or f - frames[k - 1] > gap)


def _match_intervals(matches: list[tuple[str, int, int, int, int]], rgb: Boxes) -> int:
    """Matches formed: runs of one (visible, infrared) pair over consecutive frames in which
    the visible id was reported."""
    reported = defaultdict(list)
    for frame in rgb.frames():
        for track in rgb.ids[frame]:
            reported[int(track)].append(frame)
    carried = {(f, t): p for s, f, t, p, _ in matches if s == "rgb"}
    count = 0
    for track, frames in reported.items():
        current = None
        for frame in frames:
            partner = carried.get((frame, track))
            if partner is not None and partner != current:
                count += 1
            current = partner
    return count


def draw_timeline(line: PersonTimeline, path: Path, width: int = 900) -> None:
    """A PNG of one person: when each stream saw them, when both streams tracked them, and
    when their match was right (green) or wrong (red)."""
    import cv2

    rows = [("visible: in view", line.in_view.get("rgb", []), (160, 160, 160)),
            ("infrared: in view", line.in_view.get("ir", []), (160, 160, 160)),
            ("tracked in both", line.tracked_both, (200, 140, 40)),
            ("matched right", line.matched_right, (60, 170, 60)),
            ("matched wrong", line.matched_wrong, (50, 50, 210))]
    label_w, row_h, top = 170, 26, 34
    image = np.full((top + row_h * len(rows) + 24, width, 3), 255, np.uint8)
    cv2.putText(image, f"{line.person} ({line.frames} frames)", (8, 22),
                cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    scale = (width - label_w - 10) / max(line.frames, 1)
    for k, (label, frames, colour) in enumerate(rows):
        y = top + k * row_h
        cv2.putText(image, label, (8, y + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
        cv2.rectangle(image, (label_w, y + 4), (width - 10, y + row_h - 4), (235, 235, 235), -1)
        for frame in frames:
            x = label_w + int((frame - 1) * scale)
            cv2.rectangle(image, (x, y + 4), (x + max(1, int(scale)), y + row_h - 4), colour, -1)
    y = top + row_h * len(rows) + 16
    for frame in range(0, line.frames + 1, max(1, line.frames // 10)):
        # Each label centred on its frame, kept inside the image (the last one ends at the
        # right edge, where it would be cut).
        (text_w, _), _ = cv2.getTextSize(str(frame), cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        x = min(label_w + int(frame * scale) - text_w // 2, width - text_w - 3)
        cv2.putText(image, str(frame), (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (80, 80, 80), 1,
                    cv2.LINE_AA)
    with atomic_path(path) as tmp:
        _, encoded = cv2.imencode(".png", image)
        tmp.write_bytes(encoded.tobytes())


#: What :func:`write_score` puts in its folder (an earlier score there is these).
SCORE_FILES = ("score.json", "score.md", "timelines")


def write_score(score: LiveScore, out_dir: Path) -> list[Path]:
    """``score.json``, ``score.md`` and ``timelines/<person>.png`` in ``out_dir``
    (:data:`SCORE_FILES`)."""
    out_dir = Path(out_dir)
    written = []
    for name, text in (("score.json", json.dumps(score.to_dict(), indent=2) + "\n"),
                       ("score.md", score.markdown())):
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(text)
        written.append(out_dir / name)
    for line in score.timelines:
        safe = re.sub(r"[^\w.-]", "_", line.person)
        path = out_dir / "timelines" / f"{safe}.png"
        draw_timeline(line, path)
        written.append(path)
    return written
