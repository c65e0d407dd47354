"""Real-time check of `deen run`: a 768×576 camera pair at 10 fps (generated, or a real
pair given with --pair), looped, run as a user runs it (its own process, an exported
model), for N minutes.

Reports, per stream, the share of captured frames the pipeline processed; capture→event
latency (p50/p95); the process's peak resident memory (VmHWM) and its growth after warm-up;
the stage breakdown per round (ms: detect, track, embed, match; embedding runs on its own
thread beside the rounds, so its time is not on the round's path); and the events. The
target on a 2-core CPU: ≥ 90% of frames processed per stream, p95 ≤ 300 ms,
peak RSS ≤ 800 MiB, with the fastest CPU export.

    python benchmarks/runtime_soak.py --minutes 3 --out benchmarks/results/avx2/runtime_soak.json
    python benchmarks/runtime_soak.py --pair PAIR --detector motion --minutes 2

``--detector boxes`` (default for generated pairs) feeds the generator's exact boxes, so the
numbers are the pipeline's own; ``motion`` is deen run's default detector and ``hog``
OpenCV's people detector, each run on every frame as ``deen run`` does. ``--pair DIR`` reads
DIR/visible.mp4 and DIR/infrared.mp4 (benchmarks/real_footage.py pair makes one from a real
video).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweep_common import input_size_arg

from deen.bench.run import machine_description
from deen.embedding import EmbeddingConfig
from deen.export.onnx_export import export_onnx
from deen.export.openvino_export import export_openvino
from deen.models.checkpoint import load_checkpoint, random_model
from deen.runtime.matching import EmbeddingSettings
from deen.scenes import write_stream_pair

STAGE_LINE = re.compile(r"ms/round: ((?:[a-z]+ [\d.]+ ?)+)")
SUMMARY = re.compile(r"(\w+): (\d+) processed of (\d+) captured, (\d+) dropped")
LATENCY = re.compile(r"p50 ([\d.]+|nan) ms, p95 ([\d.]+|nan) ms")


def _frame_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT``, as video sizes are written."""
    width, _, height = text.partition("x")
    return int(width), int(height)


def _memory_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of a running process, in KiB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M))
    return int(values.get("VmRSS", 0)), int(values.get("VmHWM", 0))


def build_model(engine: str, checkpoint: Path | None, input_size: tuple[int, int],
                folder: Path) -> Path:
    if checkpoint is not None:
        loaded = load_checkpoint(checkpoint)
        model, source = loaded.model, loaded.source
    else:
        model, source = random_model("sysu", 0)
    config = EmbeddingConfig(flip=False)  # live runs embed without the flip (deen run's use)
    onnx = export_onnx(model, folder / "deen.onnx", config=config, source=source,
                       input_size=input_size).model_path
    if engine == "onnx":
        return onnx
    return export_openvino(model, folder / "deen_int8.xml", config=config, source=source,
                           input_size=input_size, precision="int8", onnx_path=onnx,
                           calibration_images=32).model_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--frame-size", type=_frame_size, default=(768, 576), metavar="WxH")
    parser.add_argument("--people", type=int, default=8,
                        help="identities walking (about 3-8 in view at once at the default)")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--input-size", type=input_size_arg, default=(384, 144), metavar="HxW",
                        help="embedder input (default the real one, 384x144)")
    parser.add_argument("--engine", choices=["openvino-int8", "onnx"], default="openvino-int8")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="weights to export (default: a random-initialised DEEN)")
    parser.add_argument("--detector", choices=["boxes", "motion", "hog"], default=None,
                        help="default: boxes for a generated pair, motion for --pair")
    parser.add_argument("--pair", type=Path, default=None,
                        help="a real pair: DIR/visible.mp4 and DIR/infrared.mp4")
    parser.add_argument("--status-every", type=float, default=10.0)
    parser.add_argument("--embed-batch", type=int, default=EmbeddingSettings.batch,
                        help="crops per model call, as deen run's embedding.batch "
                             f"(default {EmbeddingSettings.batch})")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    width, height = args.frame_size

    detector = args.detector or ("motion" if args.pair else "boxes")
    if args.pair is not None and detector == "boxes":
        sys.exit("--detector boxes needs a generated pair (no --pair)")
    with tempfile.TemporaryDirectory(prefix="deen-soak-") as scratch:
        folder = Path(scratch)
        if args.pair is None:
            pair = write_stream_pair(folder / "pair", people=args.people, seconds=30,
                                     fps=args.fps, size=(height, width), seed=1)
            visible, infrared = pair.visible, pair.infrared
        else:
            visible, infrared = args.pair / "visible.mp4", args.pair / "infrared.mp4"
            capture = cv2.VideoCapture(str(visible))
            width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), \
                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            args.fps = capture.get(cv2.CAP_PROP_FPS)
            capture.release()
        model = build_model(args.engine, args.checkpoint, args.input_size, folder)
        command = [sys.executable, "-m", "deen", "run", "--rgb", str(visible), "--ir",
                   str(infrared), "--loop", "--model", str(model), "--no-flip",
                   "--detector", str(pair.boxes) if detector == "boxes" else detector,
                   "--events", str(folder / "events.jsonl"),
                   "--duration", str(60 * args.minutes),
                   "--set", f"outputs.status_every_s={args.status_every}",
                   "--set", f"embedding.batch={args.embed_batch}"]
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                                   cwd=Path(__file__).resolve().parents[1])
        samples: list[tuple[float, int, int]] = []

        def sample() -> None:
            start = time.monotonic()
            while process.poll() is None:
                memory = _memory_kib(process.pid)
                if memory is not None:
                    samples.append((time.monotonic() - start, *memory))
                time.sleep(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, stderr = process.communicate()
        sampler.join()
        if process.returncode != 0:
            sys.exit(f"deen run failed ({process.returncode}): {stderr.strip()[-2000:]}")
        events = [json.loads(line) for line in
                  (folder / "events.jsonl").read_text().splitlines()]

    stages = [dict(zip(m.group(1).split()[::2], map(float, m.group(1).split()[1::2]),
                       strict=True)) for m in STAGE_LINE.finditer(stderr)][1:]
    per_stream = {name: {"processed": int(p), "captured": int(c), "dropped": int(d),
                         "processed_share": int(p) / max(int(c), 1)}
                  for name, p, c, d in SUMMARY.findall(stderr)}
    p50, p95 = (float(v) for v in LATENCY.search(stderr).groups())
    warm = [s for s in samples if s[0] >= 30] or samples
    result = {
        "machine": machine_description()["description"],
        "command": " ".join(["python", "benchmarks/runtime_soak.py", *sys.argv[1:]]),
        "engine": args.engine, "detector": detector, "minutes": args.minutes,
        "pair": str(args.pair) if args.pair else "generated",
        "frame_size": [width, height], "fps": args.fps, "people": args.people,
        "input_size": list(args.input_size), "embed_batch": args.embed_batch,
        "streams": per_stream, "latency_p50_ms": p50, "latency_p95_ms": p95,
        "peak_rss_mib": max(s[2] for s in samples) / 1024 if samples else None,
        "rss_growth_after_warmup_mib": (warm[-1][1] - warm[0][1]) / 1024 if warm else None,
        "stage_ms_per_round": {name: round(sum(s[name] for s in stages) / len(stages), 1)
                               for name in stages[0]} if stages else {},
        "events": {kind: sum(e["event"] == kind for e in events)
                   for kind in sorted({e["event"] for e in events})},
        "targets_met": {
            "processed_90pct": all(s["processed_share"] >= 0.9 for s in per_stream.values()),
            "latency_p95_300ms": p95 <= 300,
            "peak_rss_800mib": bool(samples) and max(s[2] for s in samples) / 1024 <= 800},
    }
    print(stderr.strip().splitlines()[-2])
    print(stderr.strip().splitlines()[-1])
    print(json.dumps({k: result[k] for k in ("streams", "latency_p95_ms", "peak_rss_mib",
                                             "stage_ms_per_round", "targets_met")}, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
