"""Soak test of `deen run`: a generated camera pair, looped in real time, for N minutes.

Reports memory (resident set size) over the run and its growth after warm-up, event latency
from frame capture to event (p50/p95), processed fps and dropped frames per stream. With
``--slow-embedder-ms`` every embedder call is delayed, to show that a consumer slower than
the cameras makes frames drop (counted) while memory stays flat.

    python benchmarks/runtime_soak.py --minutes 10 --out benchmarks/results/soak.json
    python benchmarks/runtime_soak.py --minutes 3 --slow-embedder-ms 500
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from deen.backends.base import DelayedEmbedder, Embedder
from deen.backends.onnxrt_backend import OnnxRuntimeEmbedder
from deen.bench.harness import rss_mib
from deen.bench.run import machine_description
from deen.embedding import EmbeddingConfig
from deen.export.onnx_export import export_onnx
from deen.models.checkpoint import random_model
from deen.runtime.live import LiveSettings, run_live
from deen.runtime.pipeline import PipelineOptions
from deen.runtime.scene import write_stream_pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--input-size", default="128x48", help="embedder input HxW")
    parser.add_argument("--slow-embedder-ms", type=float, default=0.0)
    parser.add_argument("--sample-every", type=float, default=10.0, help="RSS sample period, s")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    height, width = (int(v) for v in args.input_size.split("x"))

    with tempfile.TemporaryDirectory(prefix="deen-soak-") as scratch:
        scratch = Path(scratch)
        pair = write_stream_pair(scratch / "pair", people=6, seconds=30, fps=10, seed=1)
        model, source = random_model("sysu", 0)
        exported = export_onnx(model, scratch / "deen.onnx", config=EmbeddingConfig(),
                               source=source, input_size=(height, width))
        embedder: Embedder = OnnxRuntimeEmbedder(exported.model_path, device="cpu")
        if args.slow_embedder_ms:
            embedder = DelayedEmbedder(embedder, args.slow_embedder_ms / 1000)
        settings = LiveSettings(rgb=str(pair.visible), ir=str(pair.infrared),
                                detector=str(pair.boxes), events=None, loop=True,
                                duration_s=60 * args.minutes, status_every_s=60)
        samples: list[tuple[float, float]] = []
        done = threading.Event()

        def sample() -> None:
            start = time.monotonic()
            while not done.wait(args.sample_every):
                samples.append((time.monotonic() - start, rss_mib()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        summary = run_live(embedder, exported.model_path, settings, PipelineOptions())
        done.set()
        sampler.join()

    warm = [m for t, m in samples if t >= 60] or [m for _, m in samples]
    result = {
        "machine": machine_description()["description"],
        "minutes": args.minutes, "input_size": [height, width],
        "slow_embedder_ms": args.slow_embedder_ms,
        "rss_mib_first": samples[0][1] if samples else None,
        "rss_mib_after_1min": warm[0] if warm else None,
        "rss_mib_last": samples[-1][1] if samples else None,
        "rss_growth_after_1min_mib": (warm[-1] - warm[0]) if warm else None,
        "rss_samples": [[round(t, 1), round(m, 1)] for t, m in samples],
        "latency_p50_ms": summary.latency_p50_ms, "latency_p95_ms": summary.latency_p95_ms,
        "rounds": summary.rounds, "seconds": summary.seconds,
        "processed": summary.processed, "captured": summary.captured,
        "dropped": summary.dropped, "events": summary.events,
    }
    for line in summary.lines():
        print(line)
    print(f"RSS: {result['rss_mib_first']:.1f} MiB at first sample, "
          f"{result['rss_mib_after_1min']:.1f} MiB after 1 min, "
          f"{result['rss_mib_last']:.1f} MiB at the end "
          f"(growth after warm-up {result['rss_growth_after_1min_mib']:+.1f} MiB)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
