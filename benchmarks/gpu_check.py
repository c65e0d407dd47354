"""Verify and time every GPU path of the toolchain in one prepared run.

    bash benchmarks/gpu_check.sh OUT_DIR        # ≤ 8 minutes on one GPU

Checks, each recorded with a verdict (pass / fail / skipped, with the reason) and its
numbers; one failing check never stops the others:

- ``environment``: GPU, driver, CUDA, PyTorch, nvcc, TensorRT and ONNX Runtime versions;
- ``build_cuda``: ``deen build-ops --cuda`` for the GPU present;
- ``kernel_correctness``: ``torch.ops.deen.dee_conv`` against the reference (both DEE
  branches' six dilated convolutions, computed in fp32) on a grid of batches, odd and even
  sizes, channel counts, dtypes and a non-contiguous input, plus gradients through the op.
  Without a GPU the same harness runs against the CPU kernel (fp32, a smaller grid);
- ``kernel_speed``: the fused op against cuDNN's six dilated convolutions (fp32/fp16,
  batch 1/8/32), and the whole model with each DEE path (``benchmarks/dee_conv.py``);
- ``bench``: ``deen bench --device cuda`` (PyTorch fp32, fp16, ``torch.compile``);
- ``training`` / ``training_ddp``: a few hundred AMP steps of ``deen train`` on synthetic
  data, then the same under ``torchrun --nproc_per_node 1`` (DDP over NCCL); losses finite
  and falling;
- ``tensorrt``: where TensorRT is installed, build, verify and time an engine with and
  without the DeeConv plugin; else "TensorRT not installed".

Writes ``OUT_DIR/gpu_check.json`` and ``OUT_DIR/gpu_check.md`` and prints a summary. Exit
status 1 when a check failed, else 0 (a machine without a GPU exits 0).
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402

#: Largest error of the fused op relative to the largest reference output, per dtype. fp32
#: differs from the reference only in summation order; fp16/bf16 round x, the weight and the
#: output (the kernel accumulates in fp32).
TOLERANCES = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}
GPU_GRID = {"batches": (1, 3, 32, 96), "spatial": ((24, 9), (48, 18), (23, 9), (13, 6)),
            "channels": (512, 1024), "dtypes": (torch.float32, torch.float16, torch.bfloat16)}
CPU_GRID = {"batches": (1, 3), "spatial": ((24, 9), (23, 9)), "channels": (512,),
            "dtypes": (torch.float32,)}


@dataclass
class Check:
    """One check's outcome; ``data`` holds its numbers."""

    name: str
    verdict: str = "pass"  # pass, fail, skipped
    reason: str = ""
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


class Skip(Exception):
    """Raised by a check that cannot run here; the message says why."""


def run_check(name: str, fn: Callable[[Check], None]) -> Check:
    check = Check(name)
    start = time.monotonic()
    try:
        fn(check)
    except Skip as exc:
        check.verdict, check.reason = "skipped", str(exc)
    except Exception as exc:  # recorded; the other checks still run
        check.verdict = "fail"
        check.reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}" \
            if str(exc).strip() else type(exc).__name__
        check.data["traceback"] = traceback.format_exc()[-3000:]
    check.seconds = round(time.monotonic() - start, 1)
    print(f"[gpu_check] {name}: {check.verdict.upper()} ({check.seconds:.0f} s)"
          + (f" - {check.reason}" if check.reason else ""), flush=True)
    return check


def _command(args: list[str], timeout: float, cwd: Path = REPO,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
                   **(env or {})}
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=environment)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{' '.join(map(str, args[:6]))} … exited {done.returncode}: "
                           f"{tail[0][:300]}")
    return done


def _version(args: list[str]) -> str | None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[-1].strip() if done.returncode == 0 and lines else None


def _require_gpu() -> None:
    if not torch.cuda.is_available():
        raise Skip("no CUDA GPU here")


# -- the checks --------------------------------------------------------------------------
def environment(check: Check) -> None:
    data = check.data
    data.update(python=platform.python_version(), torch=torch.__version__,
                torch_cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                nvcc=_version(["nvcc", "--version"]), machine=platform.machine(),
                cpu_count=os.cpu_count())
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        data.update(gpu=properties.name, gpu_memory_gib=round(properties.total_memory / 2**30, 1),
                    compute_capability=f"{properties.major}.{properties.minor}",
                    driver=_version(["nvidia-smi", "--query-gpu=driver_version",
                                     "--format=csv,noheader"]))
    for module in ("tensorrt", "onnxruntime", "onnx", "openvino"):
        try:
            data[module] = __import__(module).__version__
        except Exception:
            data[module] = None


def build_cuda(check: Check) -> None:
    _require_gpu()
    if shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists():
        raise RuntimeError("nvcc not found: the CUDA kernels cannot be built")
    done = _command([sys.executable, "-m", "deen", "build-ops", "--cuda"], timeout=300)
    check.data["output"] = done.stdout.strip()[-500:]


def _cases(grid: dict[str, tuple]) -> list[tuple[int, tuple[int, int], int, torch.dtype, bool]]:
    return [(b, hw, c, dtype, contiguous) for b in grid["batches"] for hw in grid["spatial"]
            for c in grid["channels"] for dtype in grid["dtypes"] for contiguous in (True, False)]


def kernel_error(device: str, batch: int, spatial: tuple[int, int], channels: int,
                 dtype: torch.dtype, contiguous: bool,
                 op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                 ) -> float:
    """max |op − reference| / max |reference| for one case; ``op`` defaults to the fused
    ``deen::dee_conv`` (a test passes a broken one to see the harness catch it)."""
    from deen.models.dee import DEE
    from deen.ops.dee_conv import dee_conv, dee_conv_reference

    op = op or dee_conv
    generator = torch.Generator(device="cpu").manual_seed(batch * 7919 + channels)
    dee = DEE(channels, impl="reference").eval()
    weight32 = dee.fold().detach().to(device)
    height, width = spatial
    wide = torch.randn(batch, channels, height, width + 3, generator=generator).to(device)
    x32 = wide[..., :width].contiguous() if contiguous else wide[..., :width]
    assert x32.is_contiguous() == contiguous
    x, weight = x32.to(dtype), weight32.to(dtype)
    with torch.inference_mode():
        expected = dee_conv_reference(x.float(), weight.float())  # the rounded inputs, in fp32
        got = op(x, weight).float()
    return float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


def kernel_correctness(check: Check) -> None:
    from deen.ops import native

    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    problem = native.available(cuda=on_gpu)
    if problem is not None:
        raise RuntimeError(f"the {'CUDA' if on_gpu else 'CPU'} kernel is unavailable: {problem}")
    torch.backends.cuda.matmul.allow_tf32 = False  # the reference in true fp32
    torch.backends.cudnn.allow_tf32 = False
    rows, worst = [], {}
    for batch, spatial, channels, dtype, contiguous in _cases(GPU_GRID if on_gpu else CPU_GRID):
        error = kernel_error(device, batch, spatial, channels, dtype, contiguous)
        name = str(dtype).split(".")[1]
        ok = error <= TOLERANCES[dtype]
        rows.append({"batch": batch, "spatial": list(spatial), "channels": channels,
                     "dtype": name, "contiguous": contiguous, "relative_error": error,
                     "tolerance": TOLERANCES[dtype], "ok": ok})
        worst[name] = max(worst.get(name, 0.0), error)
    check.data.update(device=device, cases=len(rows), worst_relative_error=worst,
                      tolerances={str(k).split(".")[1]: v for k, v in TOLERANCES.items()},
                      failures=[r for r in rows if not r["ok"]], rows=rows)
    check.data["gradients"] = gradient_errors(device)
    bad_grads = {k: v for k, v in check.data["gradients"].items() if v > 1e-4}
    if check.data["failures"] or bad_grads:
        check.verdict = "fail"
        check.reason = (f"{len(check.data['failures'])} of {len(rows)} cases outside tolerance"
                        + (f"; gradients off: {bad_grads}" if bad_grads else ""))


def gradient_errors(device: str) -> dict[str, float]:
    """Relative error of d(x), d(weight) through ``torch.ops.deen.dee_conv`` against the
    reference's autograd, fp32, one small case."""
    from deen.models.dee import DEE
    from deen.ops.dee_conv import dee_conv_reference

    torch.manual_seed(0)
    weight = DEE(64, impl="reference").fold().detach().to(device)
    x = torch.randn(2, 64, 11, 7, device=device)
    grad = torch.randn(2, weight.shape[2], 11, 7, device=device)
    results = []
    for fn in (torch.ops.deen.dee_conv, dee_conv_reference):
        x_, w_ = x.clone().requires_grad_(), weight.clone().requires_grad_()
        (fn(x_, w_) * grad).sum().backward()
        results.append((x_.grad, w_.grad))
    (dx, dw), (rx, rw) = results
    return {"x": float((dx - rx).abs().max() / rx.abs().max()),
            "weight": float((dw - rw).abs().max() / rw.abs().max())}


def kernel_speed(check: Check) -> None:
    _require_gpu()
    import dee_conv as harness  # benchmarks/dee_conv.py

    rows = [row for dtype in (torch.float32, torch.float16)
            for row in harness.operator_rows("cuda", dtype, [1, 8, 32], runs=30, warmup=5)]
    check.data["operator"] = [{k: r[k] for k in ("shape", "channels", "batch", "dtype")}
                              | {"reference_ms": r["reference"]["p50_ms"],
                                 "fused_ms": r["fused"]["p50_ms"],
                                 "fused_speedup": r["fused_speedup"]["median_ratio"]}
                              for r in rows]
    check.data["model"] = [{"batch": r["batch"], "reference_ms": r["reference"]["p50_ms"],
                            "fused_ms": r["fused"]["p50_ms"],
                            "fused_speedup": r["fused_speedup"]["median_ratio"],
                            "max_abs_error": r["max_abs_error_vs_reference"]}
                           for r in harness.model_rows("cuda", [1, 8, 32], 15, 3, (384, 144))]


def bench(check: Check, out: Path) -> None:
    _require_gpu()
    folder = out / "bench"
    _command([sys.executable, "-m", "deen", "bench", "--device", "cuda", "--backends",
              "pytorch-fp32,pytorch-fp16,pytorch-compile", "--input-size", "384x144",
              "--batches", "1,8,32", "--runs", "20", "--warmup", "3", "--out-dir", str(folder),
              "--force"],
             timeout=420)
    report = json.loads((folder / "bench.json").read_text())
    check.data["rows"] = [{k: row.get(k) for k in ("backend", "batch", "p50_ms", "speedup",
                                                    "images_per_s")}
                          for row in report.get("timings", report.get("rows", []))]
    check.data["accuracy"] = report.get("accuracy")


def _losses(run: Path) -> list[float]:
    with (run / "log.csv").open() as handle:
        return [float(row["total"]) for row in csv.DictReader(handle) if row.get("total")]


def _training(check: Check, scratch: Path, distributed: bool) -> None:
    _require_gpu()
    data = scratch / "sysu"
    if not data.exists():
        _command([sys.executable, "-m", "deen", "data", "synth", "--layout", "sysu", "--out",
                  str(data), "--identities", "24", "--per-camera", "4", "--size", "128x64",
                  "--seed", "1"], timeout=120)
    run = scratch / ("ddp" if distributed else "single")
    settings = ["height=128", "width=48", "identities=4", "per_identity=4", "lr=0.003",
                "warmup_epochs=0", "epochs=3" if not distributed else "epochs=1",
                "steps_per_epoch=100", "val_identities=0", "workers=2", "amp=true",
                "device=cuda", "seed=0"]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
                 "--master_port", "29531"] if distributed else [sys.executable])
    started = time.monotonic()
    _command([*launcher, "-m", "deen", "train", "--dataset", "sysu", "--root", str(data),
              "--out", str(run), *[f"--set={s}" for s in settings]], timeout=240)
    losses = _losses(run)
    check.data.update(steps=300 if not distributed else 100, losses=losses,
                      seconds_training=round(time.monotonic() - started, 1))
    if not losses or not all(math.isfinite(v) for v in losses):
        raise RuntimeError(f"non-finite or missing losses: {losses}")
    if not distributed and losses[-1] >= losses[0]:
        raise RuntimeError(f"loss did not fall: {losses}")


def tensorrt(check: Check, scratch: Path) -> None:
    _require_gpu()
    try:
        import tensorrt as trt
    except ImportError:
        raise Skip("TensorRT not installed") from None
    check.data["version"] = trt.__version__
    from deen.models.checkpoint import random_model, save_checkpoint

    model, _ = random_model("sysu", 0)
    checkpoint = scratch / "trt.pt"
    save_checkpoint(model, checkpoint, {"input_size": [384, 144]})
    for dee_op in ("standard", "custom"):
        engine = scratch / f"deen_{dee_op}.engine"
        started = time.monotonic()
        done = _command([sys.executable, "-m", "deen", "export", "--engine", "trt",
                         "--checkpoint", str(checkpoint), "--out", str(engine), "--dee-op",
                         dee_op, "--precision", "fp16"], timeout=300)
        check.data[dee_op] = {"build_and_verify_s": round(time.monotonic() - started, 1),
                              "output": done.stdout.strip().splitlines()[-3:]}
    folder = scratch / "trt-bench"
    _command([sys.executable, "-m", "deen", "bench", "--device", "cuda", "--checkpoint",
              str(checkpoint), "--backends", "pytorch-fp32,pytorch-fp16,tensorrt",
              "--batches", "1,8", "--runs", "20", "--out-dir", str(folder)], timeout=300)
    check.data["bench"] = json.loads((folder / "bench.json").read_text()).get("timings")


# -- the report --------------------------------------------------------------------------
def write_report(out: Path, checks: list[Check], started: float) -> dict[str, Any]:
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "seconds": round(time.monotonic() - started, 1),
              "gpu": torch.cuda.is_available(),
              "checks": {c.name: {"verdict": c.verdict, "reason": c.reason,
                                  "seconds": c.seconds, **c.data} for c in checks}}
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("gpu_check.json", json.dumps(report, indent=2, default=str) + "\n"),
                       ("gpu_check.md", markdown(report))):
        partial = out / f".{name}.partial"
        partial.write_text(text)
        partial.replace(out / name)
    return report


def markdown(report: dict[str, Any]) -> str:
    checks = report["checks"]
    env = checks.get("environment", {})
    lines = ["# gpu_check", "",
             f"{report['date']}, {report['seconds']:.0f} s. GPU: {env.get('gpu', 'none')}"
             f" (driver {env.get('driver')}, compute {env.get('compute_capability')}); "
             f"PyTorch {env.get('torch')} (CUDA {env.get('torch_cuda')}); nvcc: "
             f"{env.get('nvcc')}; TensorRT {env.get('tensorrt') or 'not installed'}.", "",
             "| check | verdict | time | note |", "|---|---|---:|---|"]
    for name, check in checks.items():
        lines.append(f"| {name} | {check['verdict']} | {check['seconds']:.0f} s | "
                     f"{check['reason'] or ''} |")
    correctness = checks.get("kernel_correctness", {})
    if correctness.get("worst_relative_error"):
        lines += ["", f"Kernel correctness ({correctness['device']}, {correctness['cases']} "
                      "cases): worst error relative to the largest reference output, "
                      "against the tolerance:", ""]
        lines += [f"- {dtype}: {error:.2e} (tolerance {correctness['tolerances'][dtype]:.0e})"
                  for dtype, error in correctness["worst_relative_error"].items()]
        lines.append(f"- gradients (fp32): {correctness.get('gradients')}")
    speed = checks.get("kernel_speed", {})
    if speed.get("operator"):
        lines += ["", "| DEE operator | dtype | batch | cuDNN (6 dilated convs) | fused | "
                      "fused speed-up |", "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['shape']} C={r['channels']} | {r['dtype']} | {r['batch']} | "
                  f"{r['reference_ms']:.3f} ms | {r['fused_ms']:.3f} ms | "
                  f"{r['fused_speedup']:.2f}× |" for r in speed["operator"]]
        lines += ["", "| whole SYSU model, 384×144 | reference DEE | fused DEE | speed-up |",
                  "|---|---:|---:|---:|"]
        lines += [f"| batch {r['batch']} | {r['reference_ms']:.2f} ms | {r['fused_ms']:.2f} ms"
                  f" | {r['fused_speedup']:.2f}× |" for r in speed.get("model", [])]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: gpu_check.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    started = time.monotonic()
    if not torch.cuda.is_available():
        print("[gpu_check] no CUDA GPU here: running the CPU halves only (the kernel "
              "harness against the CPU kernel); the GPU checks are marked skipped", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch_name:
        scratch = Path(scratch_name)
        checks = [run_check("environment", environment),
                  run_check("build_cuda", build_cuda),
                  run_check("kernel_correctness", kernel_correctness),
                  run_check("kernel_speed", kernel_speed),
                  run_check("bench", lambda c: bench(c, out)),
                  run_check("training", lambda c: _training(c, scratch, False)),
                  run_check("training_ddp", lambda c: _training(c, scratch, True)),
                  run_check("tensorrt", lambda c: tensorrt(c, scratch))]
    write_report(out, checks, started)
    counts = {v: sum(c.verdict == v for c in checks) for v in ("pass", "fail", "skipped")}
    print(f"[gpu_check] {counts['pass']} passed, {counts['fail']} failed, "
          f"{counts['skipped']} skipped in {time.monotonic() - started:.0f} s; wrote "
          f"{out / 'gpu_check.json'} and {out / 'gpu_check.md'}", flush=True)
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
