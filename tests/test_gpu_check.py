"""benchmarks/gpu_check.sh: the one prepared GPU check, tested as far as a CPU allows. On a
machine without a GPU it says so, runs the kernel harness against the CPU kernel, marks the
GPU checks skipped and exits 0; the harness itself catches a wrong kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_check  # noqa: E402

from deen.ops import native  # noqa: E402

needs_cpu_kernel = pytest.mark.skipif(native.available() is not None,
                                      reason=f"the CPU kernel is unavailable: "
                                             f"{native.available()}")


@needs_cpu_kernel
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the full check would "
                                                      "run (minutes); run it by hand")
def test_without_a_gpu_it_runs_the_cpu_half_and_exits_0(tmp_path) -> None:
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DEEN_PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0].startswith("[gpu_check] no CUDA GPU here")
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    checks = report["checks"]
    assert report["gpu"] is False
    correctness = checks["kernel_correctness"]
    assert correctness["verdict"] == "pass" and correctness["device"] == "cpu"
    assert correctness["cases"] == 8 and correctness["worst_relative_error"]["float32"] < 1e-4
    assert max(correctness["gradients"].values()) < 1e-4
    for name in ("build_cuda", "kernel_speed", "bench", "training", "training_ddp",
                 "tensorrt"):
        assert checks[name]["verdict"] == "skipped" and checks[name]["reason"], name
    assert checks["environment"]["torch"] == torch.__version__
    assert "| kernel_correctness | pass |" in (tmp_path / "gpu_check.md").read_text()


@needs_cpu_kernel
def test_the_harness_catches_a_wrong_kernel() -> None:
    from deen.ops.dee_conv import dee_conv

    case = ("cpu", 1, (13, 6), 64, torch.float32, False)
    assert gpu_check.kernel_error(*case) <= gpu_check.TOLERANCES[torch.float32]
    off_by_a_tap = gpu_check.kernel_error(*case, op=lambda x, w: dee_conv(x, w.roll(1, 0)))
    assert off_by_a_tap > 100 * gpu_check.TOLERANCES[torch.float32]
    slightly = gpu_check.kernel_error(*case, op=lambda x, w: dee_conv(x, w) * 1.001)
    assert slightly > gpu_check.TOLERANCES[torch.float32]


def test_a_failing_check_is_recorded_and_the_next_still_runs(tmp_path) -> None:
    def broken(check: gpu_check.Check) -> None:
        raise ValueError("the kernel launch failed\nsecond line")

    def fine(check: gpu_check.Check) -> None:
        check.data["value"] = 1

    checks = [gpu_check.run_check("broken", broken), gpu_check.run_check("fine", fine)]
    assert checks[0].verdict == "fail" and checks[0].reason == (
        "ValueError: the kernel launch failed")
    assert checks[1].verdict == "pass" and checks[1].data == {"value": 1}
    report = gpu_check.write_report(tmp_path, checks, 0.0)
    assert set(report["checks"]) == {"broken", "fine"}
    assert "| broken | fail |" in (tmp_path / "gpu_check.md").read_text()
