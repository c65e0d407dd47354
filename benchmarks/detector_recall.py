"""The default (motion) detector alone on generated scenes: which people it finds.

Runs :class:`deen.runtime.detect.MotionDetector` over every frame of each scene's two
videos and matches its boxes one to one to the counted truth boxes at IoU ≥ 0.5 (the
scorer's rule, :func:`deen.eval.live_score._assign`; boxes on ignored truth are neither hits
nor extras). Recall is reported over all counted people and by kind of moment, because each
kind fails differently:

- ``near``: the person's truth box touches another person's (crossing, walking in a group,
  one behind the other), where a moving-region detector sees one region; ``alone``: not;
- ``still``: the person moved under a tenth of their height in the last half second
  (they fade into the background model); ``moving``: the rest;
- ``small`` (under 80 px tall), ``middle`` (80-130 px), ``large``;
- ``hidden``: under 80% of the person visible (occluders, other people).

Precision counts every box with a score of at least ``--score`` (0.5: those that may start a
track; 0: all). No tracker, no model: seconds a scene.

    python benchmarks/detector_recall.py --seeds 11,12,13,14 --out DIR [--set k=v]

``--set`` passes MotionDetector keyword arguments (e.g. ``split_behind=false``). Writes
DIR/detector_recall.json. Scenes come from --work (default ~/.cache/deen/live-accuracy),
written there first when missing (as live_accuracy.py does).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from live_accuracy import scene_dir, seed_list

from deen.eval.live_score import _assign, box_iou, read_truth
from deen.fileio import atomic_path
from deen.runtime.detect import MotionDetector

WARM_UP = 10  # frames in which the background model learns the empty scene


def kinds(boxes: np.ndarray, before: np.ndarray | None, visibility: np.ndarray, a: int
          ) -> list[str]:
    """The kinds of moment truth box ``a`` (x, y, w, h) of a frame is in (see above)."""
    x, y, w, h = boxes[a]
    out = ["all", "small" if h < 80 else "middle" if h < 130 else "large"]
    others = np.delete(boxes, a, axis=0)
    touch = (others[:, 0] < x + w) & (others[:, 0] + others[:, 2] > x) & \
        (others[:, 1] < y + h) & (others[:, 1] + others[:, 3] > y)
    out.append("near" if touch.any() else "alone")
    if before is not None:
        moved = np.hypot(x + w / 2 - before[0] - before[2] / 2, y + h - before[1] - before[3])
        out.append("still" if moved < 0.1 * h else "moving")
    if visibility[a] < 0.8:
        out.append("hidden")
    return out


def scene_recall(scene: Path, detector_args: dict, min_score: float) -> dict:
    """Hits and truth boxes per kind, and boxes and extras, over both streams of ``scene``."""
    truth = read_truth(scene)
    hits, counted, boxes_total, extra = Counter(), Counter(), 0, 0
    for stream, video in (("rgb", "visible.mp4"), ("ir", "infrared.mp4")):
        visibility = _visibility(scene / stream / "gt" / "gt.txt")
        detector, capture = MotionDetector(**detector_args), cv2.VideoCapture(str(scene / video))
        frames = truth.streams[stream].info.length
        places: dict[tuple[int, int], np.ndarray] = {}
        for frame in range(1, frames + 1):
            ok, image = capture.read()
            if not ok:
                break
            found = detector.detect(image, stream, frame - 1)
            keep = found.scores >= min_score
            xyxy = found.boxes[keep]
            mine = np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]])
            gt = truth.streams[stream].counted
            people = gt.boxes.get(frame, np.zeros((0, 4)))
            ids = gt.ids.get(frame, np.zeros(0, np.int64))
            for n, person in enumerate(ids):
                places[int(person), frame] = people[n]
            if frame <= WARM_UP:
                continue
            ignored = truth.streams[stream].ignored.boxes.get(frame, np.zeros((0, 4)))
            pairs = _assign(box_iou(mine, np.concatenate([people, ignored])))
            found_people = {g for _, g in pairs if g < len(people)}
            boxes_total += len(mine) - sum(g >= len(people) for _, g in pairs)
            extra += len(mine) - len(pairs)
            seen = np.array([visibility.get((frame, int(p)), 1.0) for p in ids])
            for n, person in enumerate(ids):
                for kind in kinds(people, places.get((int(person), frame - 5)), seen, n):
                    counted[kind] += 1
                    hits[kind] += n in found_people
        capture.release()
    return {"hits": dict(hits), "counted": dict(counted), "boxes": boxes_total, "extra": extra}


def _visibility(gt: Path) -> dict[tuple[int, int], float]:
    """Each truth row's visible share (MOTChallenge column 9), by (frame, id)."""
    out = {}
    for line in gt.read_text().splitlines():
        cells = line.split(",")
        out[int(cells[0]), int(cells[1])] = float(cells[8])
    return out


def _value(text: str) -> object:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="11,12,13,14", type=seed_list)
    parser.add_argument("--views", default="overlap", choices=("overlap", "apart"))
    parser.add_argument("--score", type=float, default=0.5,
                        help="least score of a box that counts (0.5: may start a track)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a MotionDetector keyword argument")
    parser.add_argument("--work", type=Path,
                        default=Path.home() / ".cache" / "deen" / "live-accuracy")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    detector_args = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"--set: {item!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        detector_args[key] = _value(value)
    try:
        MotionDetector(**detector_args)
    except TypeError as error:
        print(f"--set: {error}", file=sys.stderr)
        return 2
    total = {"hits": Counter(), "counted": Counter(), "boxes": 0, "extra": 0}
    rows = []
    for seed in args.seeds:
        row = scene_recall(scene_dir(args.work, seed, args.views), detector_args, args.score)
        rows.append({"seed": seed, **row})
        for key in ("hits", "counted"):
            total[key].update(row[key])
        total["boxes"] += row["boxes"]
        total["extra"] += row["extra"]
        print(f"scene {seed}: recall {row['hits'].get('all', 0) / row['counted']['all']:.3f}, "
              f"precision {1 - row['extra'] / max(row['boxes'], 1):.3f}", flush=True)
    recall = {k: round(total["hits"][k] / n, 4) for k, n in sorted(total["counted"].items())}
    precision = round(1 - total["extra"] / max(total["boxes"], 1), 4)
    for kind, value in recall.items():
        print(f"  {kind:7s} {total['counted'][kind]:6d} people  recall {value:.3f}")
    print(f"  precision {precision:.3f} ({total['boxes']} boxes scoring {args.score} or more)")
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "detector_recall.json") as tmp:
        tmp.write_text(json.dumps({"seeds": args.seeds, "views": args.views, "score": args.score,
                                   "detector": detector_args, "recall": recall,
                                   "counted": dict(total["counted"]), "precision": precision,
                                   "scenes": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
