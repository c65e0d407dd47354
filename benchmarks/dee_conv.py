"""Fused DEE operator vs the reference's three dilated convolutions, alone and in the model.

Measures, in one run and interleaved (so machine drift hits both alike):
- the operator alone at DEE's real shapes — SYSU/LLCM (C=1024 at 24×9, after layer3 of a
  384×144 input) and RegDB (C=512 at 48×18) — at each batch size: ``reference`` is both
  branches' six dilated convolutions + add + /3 + ReLU as the model runs them (oneDNN on CPU,
  cuDNN on CUDA), ``fused`` is ``deen::dee_conv`` on the folded weight;
- the whole model's embedding (``--model-batches``), DEE on each path.
CPU always; on CUDA also fp16 (and fp32) when a GPU is present. Writes JSON that
``PREFERRED_IMPL`` in ``deen/models/dee.py`` is set from.

    python benchmarks/dee_conv.py --out benchmarks/results/avx2/dee_conv-cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deen.bench.run import machine_description
from deen.fileio import atomic_path
from deen.models.checkpoint import random_model
from deen.models.dee import DEE
from deen.ops.dee_conv import dee_conv

SHAPES = {"sysu": (1024, 24, 9), "regdb": (512, 48, 18)}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: dict[str, object], runs: int, warmup: int, device: str
                ) -> dict[str, dict[str, float]]:
    """p50 ms per function and the median per-round ratio reference / fused."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(1000 * (time.perf_counter() - start))
    out = {name: {"p50_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90))}
           for name, v in times.items()}
    ratio = np.asarray(times["reference"]) / np.asarray(times["fused"])
    out["fused_speedup"] = {"median_ratio": float(np.median(ratio))}
    return out


def operator_rows(device: str, dtype: torch.dtype, batches: list[int], runs: int,
                  warmup: int) -> list[dict[str, object]]:
    rows = []
    for name, (channels, h, w) in SHAPES.items():
        torch.manual_seed(0)
        dee = DEE(channels, impl="reference").eval().to(device, dtype)
        weight = dee.fold().detach()
        for batch in batches:
            x = torch.randn(batch, channels, h, w, device=device, dtype=dtype)

            def reference(dee: DEE = dee, x: torch.Tensor = x) -> None:
                for branch in (dee.branch1, dee.branch2):
                    torch.relu(sum(conv(x) for conv in branch.dilated) / 3)

            with torch.inference_mode():
                error = max((dee_conv(x, weight)[:, :channels // 4] - torch.relu(
                    sum(c(x) for c in dee.branch1.dilated) / 3)).abs().max().item(), 0.0)
                result = interleaved({"reference": reference,
                                      "fused": lambda x=x, weight=weight: dee_conv(x, weight)},
                                     runs, warmup, device)
            rows.append({"shape": name, "channels": channels, "spatial": [h, w],
                         "batch": batch, "dtype": str(dtype).split(".")[1],
                         "max_abs_error_vs_reference": error, **result})
            print(f"{device} {rows[-1]['dtype']} operator {name} C={channels} {h}x{w} "
                  f"batch {batch}: reference {result['reference']['p50_ms']:.2f} ms, fused "
                  f"{result['fused']['p50_ms']:.2f} ms, fused speed-up "
                  f"{result['fused_speedup']['median_ratio']:.2f}x", flush=True)
    return rows


def model_rows(device: str, batches: list[int], runs: int, warmup: int,
               input_size: tuple[int, int]) -> list[dict[str, object]]:
    """The SYSU model (DEE on 1024 channels) twice, one copy per DEE path, same weights."""
    import copy

    reference, _ = random_model("sysu", 0)
    reference = reference.eval().to(device)
    reference.set_dee_impl("reference")
    fused = copy.deepcopy(reference)
    fused.set_dee_impl("fused")
    rows = []
    for batch in batches:
        images = torch.randn(batch, 3, *input_size, device=device)
        modality = torch.arange(batch, device=device) % 2
        with torch.inference_mode():
            error = (reference(images, modality).feat - fused(images, modality).feat).abs()
            result = interleaved(
                {"reference": lambda images=images, modality=modality: reference(images, modality),
                 "fused": lambda images=images, modality=modality: fused(images, modality)},
                runs, warmup, device)
        rows.append({"model": "sysu", "input_size": list(input_size), "batch": batch,
                     "max_abs_error_vs_reference": float(error.max()), **result})
        print(f"{device} model {input_size[0]}x{input_size[1]} batch {batch}: reference "
              f"{result['reference']['p50_ms']:.1f} ms, fused {result['fused']['p50_ms']:.1f} "
              f"ms, fused speed-up {result['fused_speedup']['median_ratio']:.2f}x", flush=True)
    return rows


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=_ints, default=[1, 8])
    parser.add_argument("--model-batches", type=_ints, default=[1])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report: dict[str, object] = {"machine": machine_description(), "device": args.device,
                                 "torch_threads": torch.get_num_threads(), "runs": args.runs}
    dtypes = [torch.float32] + ([torch.float16] if args.device == "cuda" else [])
    report["operator"] = [row for dtype in dtypes for row in
                          operator_rows(args.device, dtype, args.batches, args.runs,
                                        args.warmup)]
    report["model"] = model_rows(args.device, args.model_batches, max(5, args.runs // 2),
                                 args.warmup, (384, 144))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
