"""One served model against a model per box: 1, 2 and 4 `deen run` processes on generated
camera pairs, each either loading its own exported ONNX model (ONNX Runtime) or sharing one
`deen serve` (Triton Inference Server, dynamic batching, the same ONNX model).

Reports per setting: frames processed and person crops embedded per second over all boxes
(both streams; embedding runs beside the rounds, so frames keep pace while crops wait), each box's
share of captured frames processed, the worst box's capture→event p95, and the peak of the
total resident memory of every process involved (the boxes, and the server's whole process
group when served), sampled every 0.5 s.

    python benchmarks/site_serving.py --out benchmarks/results/avx2/site/site_serving.json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweep_common import input_size_arg

from deen.address import ListenAddress
from deen.bench.run import machine_description
from deen.embedding import EmbeddingConfig
from deen.export.onnx_export import export_onnx
from deen.models.checkpoint import random_model
from deen.scenes import write_stream_pair
from deen.serve.server import ModelServer, free_port

REPO = Path(__file__).resolve().parents[1]
_PROCESSED = re.compile(r"(rgb|ir): (\d+) processed of (\d+) captured")
_P95 = re.compile(r"p95 (\d+) ms")
_EMBEDDED = re.compile(r"(\d+) crops embedded")


def _rss_kib(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(found.group(1)) if found else 0
    return total


def _group(pgid: int) -> set[int]:
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.add(int(stat.parent.name))
    return members


def run_boxes(count: int, model: str, pair, seconds: float,
              server: ModelServer | None) -> dict:
    boxes = [subprocess.Popen(
        [sys.executable, "-m", "deen", "run", "--rgb", str(pair.visible), "--ir",
         str(pair.infrared), "--detector", str(pair.boxes), "--model", model, "--loop",
         "--duration", str(seconds), "--events", "none", "--set", "outputs.status_every_s=0"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(count)]
    peak = 0
    while any(box.poll() is None for box in boxes):
        pids = {box.pid for box in boxes}
        if server is not None:
            pids |= _group(server.process.pid)
        peak = max(peak, _rss_kib(pids))
        time.sleep(0.5)
    processed = captured = embedded = 0
    shares, p95s = [], []
    for box in boxes:
        stderr = box.stderr.read()
        if box.returncode != 0:
            raise SystemExit(f"a box failed: {stderr.strip()}")
        counts = _PROCESSED.findall(stderr)
        done, seen = sum(int(c[1]) for c in counts), sum(int(c[2]) for c in counts)
        processed += done
        embedded += int(_EMBEDDED.search(stderr).group(1))
        captured += seen
        shares.append(done / max(seen, 1))
        p95s.append(int(_P95.search(stderr).group(1)))
    return {"boxes": count, "frames_per_s": processed / seconds,
            "crops_embedded_per_s": embedded / seconds,
            "processed_share_min": min(shares), "latency_p95_ms_max": max(p95s),
            "peak_rss_mib": peak / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--input-size", type=input_size_arg, default=(384, 144))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory(prefix="deen-site-bench-") as scratch:
        folder = Path(scratch)
        model, source = random_model("sysu", 0)
        onnx = export_onnx(model, folder / "deen.onnx", config=EmbeddingConfig(flip=False),
                           source=source, input_size=args.input_size).model_path
        pair = write_stream_pair(folder / "pair", people=4, seconds=20, fps=10,
                                 size=(576, 768), seed=11)
        rows = []
        for count in counts:
            rows.append({"model": "own", **run_boxes(count, str(onnx), pair, args.seconds,
                                                     None)})
            print(rows[-1], flush=True)
        with ModelServer(onnx, ListenAddress("127.0.0.1", free_port("127.0.0.1"))) as server:
            for count in counts:
                rows.append({"model": "served", **run_boxes(count, server.url, pair,
                                                            args.seconds, server)})
                print(rows[-1], flush=True)
    machine = machine_description()
    report = {"machine": machine, "input_size": list(args.input_size), "seconds": args.seconds,
              "command": "python benchmarks/site_serving.py " + " ".join(sys.argv[1:]),
              "pair": "generated, 768x576 at 10 fps, 4 people, exact boxes", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
