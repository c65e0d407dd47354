"""The cameras' view map on generated scenes: when a map is learned, and whether it is right.

Replays each scene's truth boxes (the tracker a perfect detector would feed) through
:class:`deen.runtime.registration.CameraRegistration` as a live run would: rounds at
``--rate`` a second, each taking both cameras' newest frames, the pair used when the two
frames were taken within ``place.view_map.pair_skew_s`` of each other. Every map the
registration accepts is checked against the truth:

- cameras apart (``--views apart``) watch different places, so any map is false;
- with overlapping views a map is right when it lays the people both cameras see at that
  moment onto themselves: the median mapped distance of the truth pairs (in person heights,
  as the registration measures it) is within the registration's inlier distance.

Per scene: the time of the first map, how many of the fits (one every 50 rounds) gave a map
and how many of those maps were false, and when the first false one came. No model, no
embedding: it measures the registration alone, and takes a few seconds a scene.

    python benchmarks/view_map.py --seeds 11,12,13,14,21,22,23,24 --views overlap,apart \\
        --out DIR

writes DIR/view_map.json and DIR/view_map.md. Scenes come from --work (default
~/.cache/deen/live-accuracy), written there first when missing (as live_accuracy.py does).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from live_accuracy import scene_dir, seed_list

from deen.fileio import atomic_path
from deen.mot import SequenceInfo, read_boxes, read_seqinfo
from deen.runtime.registration import (
    CameraRegistration,
    ViewMap,
    ViewMapSettings,
    box_distance,
)
from deen.scenes import VIEWS

RIGHT = 1.0  # a right map: truth pairs' median mapped distance, in inlier distances


@dataclass(frozen=True)
class Stream:
    """One stream's truth: per frame (1-based) the (person, x1 y1 x2 y2 box) rows."""

    rows: dict[int, list[tuple[int, np.ndarray]]]
    info: SequenceInfo

    @classmethod
    def read(cls, folder: Path) -> Stream:
        boxes = read_boxes(folder / "gt" / "gt.txt")
        rows = {f: [(int(i), np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]], np.float64))
                    for i, b in zip(boxes.ids[f], boxes.boxes[f], strict=True)]
                for f in boxes.frames()}
        return cls(rows, read_seqinfo(folder / "seqinfo.ini"))

    def newest(self, now: float) -> int | None:
        """The newest frame (1-based) taken by ``now``."""
        frame = int(np.floor((now - self.info.start) * self.info.fps + 1e-9)) + 1
        return frame if 1 <= frame <= self.info.length else None


def right(view: ViewMap, visible: list, infrared: list, inlier: float) -> bool | None:
    """Whether ``view`` lays the people both cameras see now onto themselves (None: nobody
    is seen by both now)."""
    theirs = {p: b for p, b in infrared}
    pairs = [(b, theirs[p]) for p, b in visible if p in theirs]
    if not pairs:
        return None
    distance = box_distance(view.apply(np.array([v for v, _ in pairs])),
                            np.array([r for _, r in pairs]))
    return bool(np.median(np.diag(distance)) <= RIGHT * inlier)


def replay(scene: Path, rate: float) -> dict:
    """One scene's registration, round by round: what it accepted and when."""
    visible, infrared = Stream.read(scene / "rgb"), Stream.read(scene / "ir")
    apart = json.loads((scene / "scene.json").read_text()).get("views") == "apart"
    skew = ViewMapSettings().pair_skew_s
    registration = CameraRegistration()
    first = first_false = None
    accepted = false = 0
    last: tuple[int | None, int | None] = (None, None)
    current: ViewMap | None = None
    verdict: bool | None = None
    end = min(visible.info.time_of(visible.info.length + 1),
              infrared.info.time_of(infrared.info.length + 1))
    for step in range(int(end * rate)):
        now = step / rate
        v, r = visible.newest(now), infrared.newest(now)
        if v is None or r is None or (v, r) == last:
            continue
        last = (v, r)
        paired = abs(visible.info.time_of(v) - infrared.info.time_of(r)) <= skew
        seen_v = visible.rows.get(v, []) if paired else []
        seen_r = infrared.rows.get(r, []) if paired else []
        registration.observe(seen_v, seen_r)
        if registration.current is not current:
            current, verdict = registration.current, None
            if current is not None:
                accepted += 1
                first = now if first is None else first
        if current is not None and verdict is None and not apart and seen_v and seen_r:
            verdict = right(current, seen_v, seen_r, registration.inlier_distance)
            if verdict is False:
                false += 1
                first_false = now if first_false is None else first_false
        if current is not None and apart and verdict is None:
            verdict = False
            false += 1
            first_false = now if first_false is None else first_false
    return {"views": "apart" if apart else "overlap", "maps": accepted, "false_maps": false,
            "first_map_s": None if first is None else round(first, 1),
            "first_false_s": None if first_false is None else round(first_false, 1),
            "apart_found": registration.apart}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="11,12,13,14", type=seed_list)
    parser.add_argument("--views", default="overlap,apart")
    parser.add_argument("--rate", type=float, default=18.0,
                        help="rounds a second (a real-time run on 2 cores makes about 18)")
    parser.add_argument("--work", type=Path,
                        default=Path.home() / ".cache" / "deen" / "live-accuracy")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    views = [v.strip() for v in args.views.split(",") if v.strip()]
    bad = [v for v in views if v not in VIEWS]
    if bad or not views or args.rate <= 0:
        what = f"--views: {bad[0]!r} is not one of {', '.join(VIEWS)}" if bad else \
            "--rate must be above 0" if args.rate <= 0 else "--views names none"
        print(what, file=sys.stderr)
        return 2
    rows = []
    for view in views:
        for seed in args.seeds:
            row = {"seed": seed, **replay(scene_dir(args.work, seed, view), args.rate)}
            rows.append(row)
            print(f"scene {seed} {view}: first map {row['first_map_s']} s, "
                  f"{row['false_maps']} false of {row['maps']} fits with a map", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "view_map.json") as tmp:
        tmp.write_text(json.dumps({"rate": args.rate, "scenes": rows}, indent=1) + "\n")
    lines = ["# The cameras' view map on generated scenes (truth boxes)", "",
             f"Rounds at {args.rate:g} a second; a map is false when the cameras are apart, "
             "or when it does not lay the people both cameras see onto themselves.", "",
             "| seed | views | fits with a map | false | first map | first false map |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['views']} | {r['maps']} | {r['false_maps']} | "
                     f"{'-' if r['first_map_s'] is None else str(r['first_map_s']) + ' s'} | "
                     f"{'-' if r['first_false_s'] is None else str(r['first_false_s']) + ' s'}"
                     " |")
    with atomic_path(args.out / "view_map.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
