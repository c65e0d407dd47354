"""The live runtime on real fixed-camera footage: a camera pair made from one real video,
the default detector's tracks drawn on sampled frames for counting by hand, and the share
of the people in view that the tracks cover.

Real footage with a registered visible/thermal pair and truth is rarely free to share, so the
pair is made from one real visible video: the visible stream is the video scaled to the
camera size (768x576 by default), and the "infrared" stream is its inverted, blurred
luminance (people in dark clothes turn bright on a dark floor, as warm bodies do in a
thermal image, and detail is softer, as a thermal sensor's is). The people, their sizes,
their motion and the scene's clutter are the real video's.

    python benchmarks/real_footage.py pair VIDEO --out DIR     # DIR/visible.mp4, infrared.mp4
    python benchmarks/real_footage.py sheets --pair DIR --model M --out OUT [--frames 12]
    python benchmarks/real_footage.py coverage --counts OUT/counts.csv

``sheets`` runs ``deen run`` offline with the default detector (every frame, ``--tracks-out``)
and draws each sampled frame of both streams with the tracks live in it, numbered, into
OUT/frame-NNNN.png, plus OUT/counts.csv with one row per sampled frame and stream for a
person to fill in: ``people_in_view`` (people at least half visible and at least 50 px
tall) and ``covered`` (of those, how many have a track box on them alone: one box on two or
three people covers none of them). ``coverage`` reads the filled file and prints the average
coverage per stream and overall (JSON with --json).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deen.mot import read_boxes

REPO = Path(__file__).resolve().parents[1]


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def make_pair(video: Path, out: Path, size: tuple[int, int]) -> None:
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        sys.exit(f"{video}: cannot open as a video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    out.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    visible = cv2.VideoWriter(str(out / "visible.mp4"), fourcc, fps, size)
    infrared = cv2.VideoWriter(str(out / "infrared.mp4"), fourcc, fps, size)
    frames = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
        gray = 255 - cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        gray = cv2.GaussianBlur(gray, (5, 5), 1.5)
        visible.write(image)
        infrared.write(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
        frames += 1
    visible.release()
    infrared.release()
    (out / "source.json").write_text(json.dumps({
        "video": video.name, "frames": frames, "fps": fps, "size": list(size),
        "infrared": "inverted luminance, Gaussian blur 5x5 sigma 1.5"}, indent=2) + "\n")
    print(f"wrote {out / 'visible.mp4'} and infrared.mp4: {frames} frames at {fps:g} fps")


def sheets(pair: Path, model: Path, out: Path, frames: int, detector: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    run = out / "tracks"
    command = [sys.executable, "-m", "deen", "run", "--rgb", str(pair / "visible.mp4"),
               "--ir", str(pair / "infrared.mp4"), "--model", str(model), "--device", "cpu",
               "--detector", detector, "--no-realtime", "--events", "none",
               "--set", "outputs.status_every_s=0", "--tracks-out", str(run)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        sys.exit(f"deen run failed: {done.stderr.strip()[-1000:]}")
    captures = {s: cv2.VideoCapture(str(pair / f)) for s, f in
                (("rgb", "visible.mp4"), ("ir", "infrared.mp4"))}
    length = int(captures["rgb"].get(cv2.CAP_PROP_FRAME_COUNT))
    tracks = {s: read_boxes(run / f"{s}.txt") for s in captures}
    # Sampled frames spread over the video, after the background model's first seconds.
    chosen = np.linspace(min(50, length // 4), length - 1, frames).round().astype(int)
    rows = []
    for frame in chosen:
        panels = []
        for stream, capture in captures.items():
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(frame))
            ok, image = capture.read()
            if not ok:
                continue
            boxes = tracks[stream]
            ids = boxes.ids.get(int(frame) + 1, np.zeros(0, int))
            for identity, (x, y, w, h) in zip(ids, boxes.boxes.get(int(frame) + 1, []),
                                              strict=True):
                cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)),
                              (0, 255, 0), 2)
                cv2.putText(image, str(identity), (int(x), int(y) - 3),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
            cv2.putText(image, f"{stream} frame {frame}", (8, 22), cv2.FONT_HERSHEY_SIMPLEX,
                        0.7, (0, 0, 255), 2)
            panels.append(image)
            rows.append({"frame": int(frame), "stream": stream, "tracks": len(ids),
                         "people_in_view": "", "covered": ""})
        cv2.imwrite(str(out / f"frame-{frame:04d}.png"), np.hstack(panels))
    counts = out / "counts.csv"
    if counts.exists():
        print(f"kept {counts} (already there; delete it to start the counts afresh)")
    else:
        with counts.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    print(f"wrote {len(chosen)} sheets to {out}; fill in {counts}")


def coverage(counts: Path) -> dict:
    with counts.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["people_in_view"].strip()]
    if not rows:
        sys.exit(f"{counts}: no row has people_in_view filled in")
    result: dict = {"frames": len({r["frame"] for r in rows}), "per_stream": {}}
    shares = []
    for stream in sorted({r["stream"] for r in rows}):
        mine = [r for r in rows if r["stream"] == stream and int(r["people_in_view"]) > 0]
        share = [int(r["covered"]) / int(r["people_in_view"]) for r in mine]
        shares += share
        result["per_stream"][stream] = {
            "people_in_view": sum(int(r["people_in_view"]) for r in mine),
            "covered": sum(int(r["covered"]) for r in mine),
            "mean_coverage": round(float(np.mean(share)), 3) if share else None}
    result["mean_coverage"] = round(float(np.mean(shares)), 3)
    result["rule"] = ("a person counts when at least half visible and 50 px tall or more; "
                      "covered when a track box is on them alone (one box on two or three "
                      "people covers none of them)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pair = commands.add_parser("pair", help="make a visible/infrared pair from one video")
    pair.add_argument("video", type=Path)
    pair.add_argument("--out", type=Path, required=True)
    pair.add_argument("--size", type=_size, default=(768, 576), metavar="WxH")
    sheet = commands.add_parser("sheets", help="run deen run and draw sampled frames")
    sheet.add_argument("--pair", type=Path, required=True)
    sheet.add_argument("--model", type=Path, required=True)
    sheet.add_argument("--out", type=Path, required=True)
    sheet.add_argument("--frames", type=int, default=12)
    sheet.add_argument("--detector", default="motion")
    cover = commands.add_parser("coverage", help="the share of people covered, from counts")
    cover.add_argument("--counts", type=Path, required=True)
    cover.add_argument("--json", type=Path, default=None)
    cover.add_argument("--footage", default="real footage",
                       help="what was counted, for the report")
    args = parser.parse_args()
    if args.command == "pair":
        make_pair(args.video, args.out, args.size)
    elif args.command == "sheets":
        sheets(args.pair, args.model, args.out, args.frames, args.detector)
    else:
        result = {"footage": args.footage, **coverage(args.counts)}
        print(json.dumps(result, indent=1))
        if args.json is not None:
            args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
