"""Which modules NNCF should leave in float for the OpenVINO int8 IR: accuracy and speed per
choice, measured, not guessed.

    .venv/bin/python benchmarks/openvino_int8_sweep.py --checkpoint CKPT --dataset sysu \\
        --root DIR --ignore "" --ignore model.layer4.0.downsample --ignore model.layer4

Each ``--ignore`` is one row: comma-separated module-path prefixes kept in float (MFA's
types in :data:`deen.export.openvino_export.IGNORED_TYPES` always are). Accuracy is
measured at the checkpoint's trained size as ``deen bench`` measures it
(:func:`deen.bench.harness.protocol_accuracy`, against PyTorch fp32); speed at ``--time-size``
(default 384x144, flip on, batch 1): each row's IR is re-exported at that size and timed
interleaved with PyTorch eager fp32 in one run. The table in benchmarks/README.md came from
this script on the model ``benchmarks/regenerate.sh`` trains (``DEEN_BENCH_WORK`` keeps it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweep_common import add_model_arguments, input_size_arg, load_model_and_split, run

from deen.backends.openvino_backend import OpenVinoEmbedder
from deen.backends.torch_backend import TorchEmbedder
from deen.bench.harness import protocol_accuracy, time_backends
from deen.bench.run import REFERENCE, machine_description
from deen.embedding import EmbeddingConfig
from deen.errors import DeenError
from deen.export.onnx_export import export_onnx
from deen.export.openvino_export import export_openvino


def sweep() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--ignore", action="append", default=[],
                        help="comma-separated module-path prefixes NNCF leaves in float "
                             "(\"\" for none); one row each")
    parser.add_argument("--time-size", type=input_size_arg, default=(384, 144))
    parser.add_argument("--accuracy-size", type=input_size_arg, default=None,
                        help="input size of the accuracy rows (default: the trained size)")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    loaded, split = load_model_and_split(args)
    model, config = loaded.model, EmbeddingConfig()
    size = args.accuracy_size or loaded.input_size
    choices = {text or "(none)": tuple(p for p in text.split(",") if p)
               for text in (args.ignore or [""])}
    accuracy_backends = {REFERENCE: TorchEmbedder(model, config, "cpu", size)}
    timed = {REFERENCE: TorchEmbedder(model, config, "cpu", args.time_size)}
    with tempfile.TemporaryDirectory(prefix="ov-int8-sweep-") as scratch:
        folder = Path(scratch)
        onnx_small = export_onnx(model, folder / "small.onnx", config=config,
                                 source=loaded.source, input_size=size).model_path
        onnx_large = onnx_small if size == args.time_size else export_onnx(
            model, folder / "large.onnx", config=config, source=loaded.source,
            input_size=args.time_size).model_path
        failed: dict[str, str] = {}
        for index, (name, modules) in enumerate(choices.items()):
            builds = [(onnx_small, size, (accuracy_backends, timed) if onnx_large is onnx_small
                       else (accuracy_backends,))]
            if onnx_large is not onnx_small:
                builds.append((onnx_large, args.time_size, (timed,)))
            try:
                for onnx, at, targets in builds:
                    result = export_openvino(model, folder / f"{index}-{at[0]}.xml",
                                             config=config, source=loaded.source,
                                             input_size=at, precision="int8",
                                             calib=args.calib, ignored_modules=modules,
                                             onnx_path=onnx)
                    for into in targets:
                        into[name] = OpenVinoEmbedder(result.model_path)
            except DeenError as exc:  # the export's own verification refused it: a row too
                failed[name] = str(exc).split("(", 1)[-1].split(")")[0]
                for into in (accuracy_backends, timed):
                    into.pop(name, None)
            print(f"built {name}" if name not in failed else f"{name}: failed verification",
                  flush=True)
        results = protocol_accuracy(accuracy_backends, REFERENCE, split)
        timings = {t.backend: t for t in time_backends(timed, [1], args.time_size, args.runs,
                                                       warmup=2, reference=REFERENCE)}
    print(f"machine: {machine_description()['description']}")
    print(f"accuracy at {size[0]}x{size[1]} on {args.dataset} ({args.root}); speed at "
          f"{args.time_size[0]}x{args.time_size[1]}, flip on, batch 1, vs PyTorch eager fp32")
    print("| kept in float (besides IGNORED_TYPES) | min cosine | mean cosine | same person | "
          "same image | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for a in results:
        if a.backend != REFERENCE:
            print(f"| {a.backend} | {a.min_cosine:.4f} | {a.mean_cosine:.4f} | "
                  f"{100 * a.rank1_agreement:.1f}% | {100 * a.top1_image_agreement:.1f}% | "
                  f"{timings[a.backend].speedup:.2f}× |")
    for name, why in failed.items():
        print(f"| {name} | export refused by verification: {why} | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(run(sweep))
