"""The ONNX int8 (QDQ) graph that ONNX Runtime and TensorRT run: this project's recipe
(:mod:`deen.export.quantize`) against NNCF's ONNX post-training quantisation, on speed in
ONNX Runtime and on cosine against the fp32 graph, in one run.

    .venv/bin/python benchmarks/onnx_int8_recipes.py [--checkpoint CKPT] [--size 384x144]

Without ``--checkpoint`` the seeded random model is used (speed does not depend on the
weights; accuracy on the trained model is ``deen bench``'s job). Timed calls are interleaved
across the three graphs; speed-ups are medians of per-round ratios against ONNX Runtime fp32.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnx
from sweep_common import input_size_arg

from deen.backends.onnxrt_backend import OnnxRuntimeEmbedder
from deen.bench.harness import people_batch, time_backends
from deen.bench.run import machine_description
from deen.embedding import EmbeddingConfig
from deen.export.calibration import calibration_batches, calibration_crops
from deen.export.compare import row_cosines
from deen.export.onnx_export import export_onnx
from deen.export.openvino_export import nncf_without_telemetry
from deen.models.checkpoint import load_checkpoint, random_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--size", type=input_size_arg, default=(384, 144))
    parser.add_argument("--batches", type=lambda t: [int(b) for b in t.split(",")],
                        default=[1, 8])
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    if args.checkpoint is None:
        model, source = random_model("sysu", 0)
    else:
        loaded = load_checkpoint(args.checkpoint)
        model, source = loaded.model, loaded.source
    config = EmbeddingConfig()
    with tempfile.TemporaryDirectory(prefix="int8-recipes-") as scratch:
        folder = Path(scratch)
        fp32 = export_onnx(model, folder / "fp32.onnx", config=config, source=source,
                           input_size=args.size).model_path
        ours = export_onnx(model, folder / "ours.onnx", config=config, source=source,
                           input_size=args.size, precision="int8").model_path
        nncf = nncf_without_telemetry()
        batches = calibration_batches(calibration_crops(None), args.size, 1)
        quantised = nncf.quantize(onnx.load(str(fp32)), nncf.Dataset(batches),
                                  subset_size=len(batches),
                                  preset=nncf.QuantizationPreset.MIXED,
                                  ignored_scope=nncf.IgnoredScope(types=["MatMul"]))
        theirs = folder / "nncf.onnx"
        onnx.save(quantised, str(theirs))
        # NNCF's graph has no manifest: lend it the fp32 export's sidecar.
        theirs.with_name("nncf.onnx.json").write_text(
            fp32.with_name("fp32.onnx.json").read_text())
        embedders = {"onnxruntime-fp32": OnnxRuntimeEmbedder(fp32, device="cpu"),
                     "deen-recipe-int8": OnnxRuntimeEmbedder(ours, device="cpu"),
                     "nncf-onnx-int8": OnnxRuntimeEmbedder(theirs, device="cpu")}
        images, codes = people_batch(16, args.size, seed=3)
        reference = embedders["onnxruntime-fp32"].run(images, codes)
        cosines = {name: float(row_cosines(reference, e.run(images, codes)).min())
                   for name, e in embedders.items()}
        timings = time_backends(embedders, args.batches, args.size, args.runs, warmup=1,
                                reference="onnxruntime-fp32")
    print(f"machine: {machine_description()['description']}")
    print(f"{args.size[0]}x{args.size[1]}, flip on, {source.kind} model; speed-up vs ONNX "
          "Runtime fp32, min cosine vs fp32 over 16 generated people")
    print("| graph | batch | p50 ms | speed-up | min cosine |")
    print("|---|---:|---:|---:|---:|")
    for t in timings:
        print(f"| {t.backend} | {t.batch} | {t.p50_ms:.0f} | {t.speedup:.2f}× | "
              f"{cosines[t.backend]:.5f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
