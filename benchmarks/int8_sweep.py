"""Which layers to keep in float for int8: cosine and rank-1 agreement per choice, on a dataset.

    .venv/bin/python benchmarks/int8_sweep.py --checkpoint CKPT --dataset sysu --root DIR \\
        --extra-float model.layer4 --extra-float model.layer3,model.layer4

The shipped choice (:data:`deen.export.quantize.FLOAT_PATTERNS`) is always the first row; each
``--extra-float`` adds module-path prefixes to it. Accuracy is measured as ``deen bench``
measures it (:func:`deen.bench.harness.protocol_accuracy`), against PyTorch fp32. The rows
behind the "same person vs same image" table of benchmarks/README.md came from this script on
the model ``benchmarks/regenerate.sh`` trains (``DEEN_BENCH_WORK`` keeps it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweep_common import add_model_arguments, load_model_and_split, run

from deen.backends.onnxrt_backend import OnnxRuntimeEmbedder
from deen.backends.torch_backend import TorchEmbedder
from deen.bench.harness import protocol_accuracy
from deen.bench.run import REFERENCE
from deen.embedding import EmbeddingConfig
from deen.export.onnx_export import export_onnx
from deen.export.quantize import FLOAT_PATTERNS


def sweep() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--extra-float", action="append", default=[],
                        help="comma-separated module-path prefixes kept in float on top of "
                             "the shipped ones (repeat for more rows)")
    args = parser.parse_args()

    loaded, split = load_model_and_split(args)
    model, size, config = loaded.model, loaded.input_size, EmbeddingConfig()
    choices = {"shipped": FLOAT_PATTERNS}
    for extra in args.extra_float:
        choices[f"+ {extra}"] = (*FLOAT_PATTERNS, *extra.split(","))
    backends = {REFERENCE: TorchEmbedder(model, config, "cpu", size)}
    with tempfile.TemporaryDirectory(prefix="int8-sweep-") as scratch:
        for index, (name, patterns) in enumerate(choices.items()):
            result = export_onnx(model, Path(scratch) / f"int8-{index}.onnx", config=config,
                                 source=loaded.source, input_size=size, precision="int8",
                                 calib=args.calib, float_patterns=patterns)
            backends[name] = OnnxRuntimeEmbedder(result.model_path)
        results = protocol_accuracy(backends, REFERENCE, split)
    print("| int8 graph | min cosine | mean cosine | same person | same image |")
    print("|---|---:|---:|---:|---:|")
    for a in results:
        if a.backend != REFERENCE:
            print(f"| {a.backend} | {a.min_cosine:.4f} | {a.mean_cosine:.4f} | "
                  f"{100 * a.rank1_agreement:.1f}% | {100 * a.top1_image_agreement:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(run(sweep))
