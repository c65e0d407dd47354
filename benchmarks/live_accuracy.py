"""The live runtime's accuracy on generated scenes, scored against their truth, ids as emitted.

For each seed: a 2-minute scene (`deen data scene --views overlap|apart` with the
generator's defaults: 12 people, 2 to 6 in view per camera, 60 to 250 px tall, groups,
people who stop, shadows, the cameras at 10 and 8 fps with their clocks 0.15 s apart), the
benchmark model (benchmarks/live_model.py, from its cache or trained; exported to OpenVINO
fp32 without the flip, as deen run deploys it) and a run of the live pipeline per detector
(the scene's exact boxes, and deen run's default detector) with --tracks-out, scored by
`deen score`: the ids each row carries are the ones the run emitted at that frame.

`--realtime` runs as live cameras do: the files paced at their frame rates, frames dropped
when the pipeline has no time for them, embedding on its own thread; and every embedding
call pays the deployed model's cost: it also runs a 384×144 int8 OpenVINO export of DEEN
(no flip; random weights, which cost the same) on the same crops and discards its output.
Without it, runs are offline (every frame, the small benchmark model's cost only).

Writes OUT/live_accuracy.json:

    {"model": ..., "machine": ..., "cost": ..., "scenes": [{"seed", "views", "realtime",
      "detector": "boxes" | "default", "match_precision", "match_recall",
      "matches_per_true_pair", "idf1": {"rgb", "ir"}, "idf1_cross", "one_id_share",
      "wrong_cross_link_share", "hota": {...}, ...}, ...]}

and OUT/live_accuracy.md. Scenes, models and every run's folder (tracks, score.md,
timelines) stay in --work (default ~/.cache/deen/live-accuracy; a scene already there is
reused).

    python benchmarks/live_accuracy.py --seeds 1,2,3 --views overlap --realtime --out DIR
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from live_model import live_model

from deen.backends.base import Embedder
from deen.backends.registry import open_embedder
from deen.bench.run import machine_description
from deen.embedding import EmbeddingConfig
from deen.eval.live_score import score_run, write_score
from deen.fileio import atomic_path
from deen.runtime.live import run_live
from deen.runtime.settings import LiveSettings
from deen.scenes import VIEWS

DEEN = [sys.executable, "-m", "deen"]
#: The deployed model's input, whose cost a real-time run pays.
DEPLOYED_SIZE = (384, 144)
COST = ("each embedding call also ran a 384x144 int8 OpenVINO export of DEEN (no flip, random "
        "weights) on the same crops, output discarded: the deployed model's time on this "
        "machine, beside the benchmark model's")

#: What deen run is told about the benchmark model, as a site would set it for its own: the
#: cross-modality threshold until live pairs calibrate one, the 99th percentile of its
#: similarities between two people across the modalities on the tuning scenes
#: (``reid_probe.py --seeds 11,12,13,14 --views apart``: 0.716). Another ``--model`` takes
#: ``--set relink.cross_default=…`` of its own.
MODEL_SETTINGS = ("relink.cross_default=0.72",)


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


def cost_model(work: Path) -> Path:
    """The 384×144 int8 OpenVINO export whose time real-time runs pay, made once in
    ``work``."""
    out = work / "model" / "deployed-cost-int8.xml"
    if not out.is_file():
        from deen.export.onnx_export import export_onnx
        from deen.export.openvino_export import export_openvino
        from deen.models.checkpoint import random_model

        model, source = random_model("sysu", 0)
        config = EmbeddingConfig(flip=False)
        onnx = export_onnx(model, out.with_suffix(".onnx"), config=config, source=source,
                           input_size=DEPLOYED_SIZE).model_path
        export_openvino(model, out, config=config, source=source, input_size=DEPLOYED_SIZE,
                        precision="int8", onnx_path=onnx, calibration_images=32)
    return out


class CostedEmbedder(Embedder):
    """``model``'s embeddings at ``cost``'s price: every call runs both on the same crops
    and returns ``model``'s."""

    def __init__(self, model: Embedder, cost: Embedder) -> None:
        self.model, self.cost = model, cost
        self.backend = f"{model.backend}+cost"
        self.variant, self.config, self.dim = model.variant, model.config, model.dim
        self.input_size = model.input_size

    def fingerprint(self) -> str | None:
        return self.model.fingerprint()

    def weights_source(self) -> dict | None:
        return self.model.weights_source()

    def embed(self, images, modality, color_order="bgr", batch_size: int = 16) -> np.ndarray:
        self.cost.embed(images, modality, color_order, batch_size)
        return self.model.embed(images, modality, color_order, batch_size)

    def run(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        raise NotImplementedError("embed runs both models")


def seed_list(text: str) -> list[int]:
    """``--seeds``: comma-separated whole numbers, at least one (an argparse ``type``)."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of whole numbers")
    return seeds


def scene_dir(work: Path, seed: int, views: str = "overlap") -> Path:
    """The benchmark scene of ``seed`` in ``work``, written first if missing."""
    scene = work / f"scene{seed}-{views}"
    if not scene.is_dir():
        print(f"scene {seed} ({views}): writing ...", file=sys.stderr)
        _run([*DEEN, "data", "scene", "--out", str(scene), "--seed", str(seed),
              "--views", views])
    return scene


def run_settings(scene: Path, detector: str | None, folder: Path, realtime: bool,
                 overrides: list[str]) -> LiveSettings:
    """deen run's settings for one run of ``scene`` into ``folder``: ``detector`` a detector
    spec (None: deen run's default), :data:`MODEL_SETTINGS`, then ``overrides`` as deen run
    --set."""
    settings = LiveSettings().updated({
        "sources.rgb": str(scene / "visible.mp4"), "sources.ir": str(scene / "infrared.mp4"),
        "sources.realtime": realtime, "outputs.events": (), "outputs.status_every_s": 0.0,
        "outputs.tracks_out": str(folder),
        "detection.detector": detector or LiveSettings().detection.detector,
        # Offline, the whole budget in one call: results do not depend on the batch.
        **({} if realtime else {"embedding.batch": 8})})
    from deen import settings as tree

    return settings.updated(tree.parse_overrides(LiveSettings, [*MODEL_SETTINGS, *overrides]))


def check_overrides(parser: argparse.ArgumentParser, overrides: list[str]) -> None:
    """Refuse a bad --set in one line before any work starts."""
    from deen import settings as tree

    try:
        LiveSettings().updated(tree.parse_overrides(LiveSettings, overrides))
    except tree.SettingError as exc:
        parser.error(f"--set {exc}")


def detector_runs(scene: Path) -> dict[str, str | None]:
    """The runs of a scene by label: its exact boxes, and deen run's default detector."""
    return {"boxes": str(scene / "boxes.jsonl"), "default": None}


def chosen_detectors(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """--detectors' labels (comma-separated), each one of :func:`detector_runs`'; else one
    line and exit 2, before any work starts."""
    known = list(detector_runs(Path()))
    chosen = [label.strip() for label in text.split(",") if label.strip()]
    unknown = sorted(set(chosen) - set(known))
    if unknown or not chosen:
        parser.error(f"--detectors: {', '.join(unknown) or 'none given'}: expected "
                     f"{', '.join(known)}")
    return chosen


def open_model(model: Path | None, work: Path) -> tuple[Path, Embedder]:
    """``model`` (None: the cached benchmark model, exported into ``work`` as deen run uses
    it live) and its embedder."""
    model = model or _exported(live_model(lambda line: print(line, file=sys.stderr)), work)
    return model, open_embedder(model, device="cpu")


def run_one(scene: Path, model: Path, embedder: Embedder, detector: str | None,
            folder: Path, realtime: bool, overrides: list[str]) -> float:
    """One live run of ``scene`` into ``folder``; returns its seconds."""
    if folder.exists():
        shutil.rmtree(folder)
    settings = run_settings(scene, detector, folder, realtime, overrides)
    start = time.perf_counter()
    summary = run_live(embedder, model, settings)
    if summary.failure is not None:
        sys.exit(f"live_accuracy: {scene.name}: {summary.failure}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3",
                        type=seed_list)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--views", choices=VIEWS, default="overlap",
                        help="the scenes' cameras: on one pole, or at two places")
    parser.add_argument("--realtime", action="store_true",
                        help="paced as live cameras, each embedding paying the deployed "
                             "384x144 int8 model's time (default: offline, every frame)")
    parser.add_argument("--work", type=Path,
                        default=Path.home() / ".cache" / "deen" / "live-accuracy")
    parser.add_argument("--model", type=Path, default=None,
                        help="a checkpoint or export (default: the cached benchmark model, "
                             "exported to OpenVINO fp32 without the flip, as deen run uses "
                             "it live)")
    parser.add_argument("--detectors", default="boxes,default",
                        help="which runs: boxes (the scene's exact boxes), default (deen "
                             "run's default detector)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a deen run setting for every run (as deen run --set)")
    args = parser.parse_args()
    detectors = chosen_detectors(parser, args.detectors)
    check_overrides(parser, args.set)
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    model, embedder = open_model(args.model, args.work)
    if args.realtime:
        embedder = CostedEmbedder(embedder, open_embedder(cost_model(args.work), device="CPU"))
    rows = []
    mode = "realtime" if args.realtime else "offline"
    for seed in args.seeds:
        scene = scene_dir(args.work, seed, args.views)
        runs = detector_runs(scene)
        for label, detector in [r for r in runs.items() if r[0] in detectors]:
            run = args.work / f"run{seed}-{args.views}-{label}-{mode}"
            seconds = run_one(scene, model, embedder, detector, run, args.realtime, args.set)
            score = score_run(scene, run)
            write_score(score, run)
            row = {"seed": seed, "views": args.views, "realtime": args.realtime,
                   "detector": label, **score.to_dict(), "run_seconds": round(seconds, 1)}
            rows.append(row)
            print(f"scene {seed} {args.views} {label} {mode}: precision "
                  f"{row['match_precision']}, recall {row['match_recall']}, IDF1 {row['idf1']}"
                  f", cross {row['idf1_cross']:.3f}, one id {row['one_id_share']}, wrong "
                  f"links {row['wrong_cross_link_share']} ({seconds:.0f} s)", file=sys.stderr)
    report = {"model": str(model), "machine": machine_description(), "views": args.views,
              "realtime": args.realtime, "cost": COST if args.realtime else "none (offline)",
              "settings": args.set, "model_settings": list(MODEL_SETTINGS), "scenes": rows}
    with atomic_path(args.out / "live_accuracy.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    with atomic_path(args.out / "live_accuracy.md") as tmp:
        tmp.write_text(markdown(report))
    print(f"wrote {args.out / 'live_accuracy.json'} and live_accuracy.md")


def markdown(report: dict) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    mode = "real time at the deployed model's cost" if report["realtime"] else "offline"
    lines = [f"# Live accuracy on generated scenes ({report['views']} views, {mode}, ids as "
             "emitted)", "",
             f"Machine: {report['machine']['description']}. Model: `{report['model']}`. "
             f"Cost: {report['cost']}."
             + (f" The benchmark model's settings: `{' '.join(report['model_settings'])}`."
                if report.get("model_settings") else ""), "",
             "| seed | detector | match precision | match recall | matches per true pair | "
             "IDF1 rgb / ir | multi-camera IDF1 | one id in both | wrong links |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["scenes"]:
        churn = "n/a" if r["matches_per_true_pair"] is None else \
            f"{r['matches_per_true_pair']:.2f}"
        lines.append(f"| {r['seed']} | {r['detector']} | {pct(r['match_precision'])} | "
                     f"{pct(r['match_recall'])} | {churn} | {pct(r['idf1']['rgb'])} / "
                     f"{pct(r['idf1']['ir'])} | {pct(r['idf1_cross'])} | "
                     f"{pct(r['one_id_share'])} | {pct(r['wrong_cross_link_share'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
