"""The live runtime's accuracy on generated scenes, scored against their truth.

For each seed: a 2-minute scene (`deen data scene`: 10 people, 2 to 4 in view, 60 to 250 px
tall), the benchmark model (benchmarks/live_model.py, from its cache or trained; exported to
OpenVINO fp32 without the flip, as deen run deploys it), two offline runs of `deen run
--tracks-out` (the scene's exact boxes, and the default detector), each scored by `deen
score`. Writes OUT/live_accuracy.json:

    {"model": ..., "machine": ..., "scenes": [{"seed", "detector": "boxes" | "default",
      "match_precision", "match_recall", "matches_per_true_pair", "idf1": {"rgb", "ir"},
      "hota": {"rgb", "ir"}, ...}, ...]}

and OUT/live_accuracy.md. The scenes and every run's folder (tracks, score.md, timelines)
stay in --work (default ~/.cache/deen/live-accuracy; a scene already there is reused). About
15 CPU-minutes on 2 cores, plus the model's training the first time.

    python benchmarks/live_accuracy.py --seeds 1,2,3 --out benchmarks/results/live
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from live_model import live_model

from deen.bench.run import machine_description
from deen.eval.live_score import score_run, write_score

DEEN = [sys.executable, "-m", "deen"]
SCENE = ["--people", "10", "--seconds", "120", "--min-in-view", "2", "--max-in-view", "4",
         "--min-height", "60", "--max-height", "250"]


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"live_accuracy: {' '.join(command[2:4])} failed: "
                 f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else '?'}")


def _exported(checkpoint: Path, work: Path) -> Path:
    """The checkpoint as a verified OpenVINO fp32 IR without the flip (what a live run
    deploys), exported once into ``work``."""
    out = work / "model" / f"{checkpoint.parent.name}-fp32.xml"
    if not out.is_file() or out.stat().st_mtime < checkpoint.stat().st_mtime:
        _run([*DEEN, "export", "--engine", "openvino", "--precision", "fp32", "--no-flip",
              "--checkpoint", str(checkpoint), "--out", str(out)])
    return out


def scene_dir(work: Path, seed: int) -> Path:
    """The benchmark scene of ``seed`` in ``work`` (``sceneN``), written first if missing."""
    scene = work / f"scene{seed}"
    if not scene.is_dir():
        print(f"scene {seed}: writing ...", file=sys.stderr)
        _run([*DEEN, "data", "scene", "--out", str(scene), "--seed", str(seed), *SCENE])
    return scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3",
                        type=lambda t: [int(s) for s in t.split(",") if s.strip()])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path,
                        default=Path.home() / ".cache" / "deen" / "live-accuracy")
    parser.add_argument("--model", type=Path, default=None,
                        help="a checkpoint or export (default: the cached benchmark model, "
                             "exported to OpenVINO fp32 without the flip, as deen run uses "
                             "it live)")
    parser.add_argument("--detectors", default="boxes,default",
                        help="which runs: boxes (the scene's exact boxes), default (deen "
                             "run's default detector)")
    parser.add_argument("--run-args", default="",
                        help="extra deen run options for every run, written with '=' since "
                             "they start with a dash: --run-args='--clean-crops'")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.model or _exported(live_model(lambda line: print(line, file=sys.stderr)),
                                    args.work)
    rows = []
    for seed in args.seeds:
        scene = scene_dir(args.work, seed)
        runs = (("boxes", str(scene / "boxes.jsonl")), ("default", None))
        for label, detector in [r for r in runs if r[0] in args.detectors.split(",")]:
            run = args.work / f"run{seed}-{label}"
            if run.exists():
                import shutil

                shutil.rmtree(run)
            command = [*DEEN, "run", "--rgb", str(scene / "visible.mp4"), "--ir",
                       str(scene / "infrared.mp4"), "--model", str(model), "--device", "cpu",
                       "--no-realtime", "--events", "none", "--set", "outputs.status_every_s=0",
                       "--set", "embedding.batch=8", "--tracks-out", str(run),
                       *args.run_args.split()]
            if detector is not None:
                command += ["--detector", detector]
            start = time.perf_counter()
            _run(command)
            seconds = time.perf_counter() - start
            score = score_run(scene, run)
            write_score(score, run)
            row = {"seed": seed, "detector": label, **score.to_dict(),
                   "run_seconds": round(seconds, 1)}
            rows.append(row)
            print(f"scene {seed} {label}: precision {row['match_precision']}, recall "
                  f"{row['match_recall']}, per pair {row['matches_per_true_pair']}, IDF1 "
                  f"{row['idf1']}, HOTA {row['hota']} ({seconds:.0f} s)", file=sys.stderr)
    report = {"model": str(model), "machine": machine_description(), "scene_settings": SCENE,
              "run_args": args.run_args, "scenes": rows}
    (args.out / "live_accuracy.json").write_text(json.dumps(report, indent=2) + "\n")

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    lines = ["# Live accuracy on generated scenes", "",
             f"Machine: {report['machine']['description']}. Model: `{model}`.", "",
             "| seed | detector | match precision | match recall | matches per true pair | "
             "IDF1 rgb / ir | HOTA rgb / ir |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        churn = "n/a" if r["matches_per_true_pair"] is None else \
            f"{r['matches_per_true_pair']:.2f}"
        lines.append(f"| {r['seed']} | {r['detector']} | {pct(r['match_precision'])} | "
                     f"{pct(r['match_recall'])} | {churn} | {pct(r['idf1']['rgb'])} / "
                     f"{pct(r['idf1']['ir'])} | {pct(r['hota']['rgb'])} / "
                     f"{pct(r['hota']['ir'])} |")
    (args.out / "live_accuracy.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'live_accuracy.json'} and live_accuracy.md")


if __name__ == "__main__":
    main()
