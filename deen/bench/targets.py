"""The CPU speed target, judged against what the machine's instructions allow.

A fixed speed-up over PyTorch eager fp32 says little across machines: int8 gains about 2× on
AVX2 and more with VNNI or AMX, whatever the exporter does. The reachable bound is measured
instead, on the machine that runs the benchmark: the **int8 ceiling** is the machine's int8
GEMM rate (ONNX Runtime's ``MatMulInteger``, :func:`deen.bench.run.int8_gemm_gops`) over the
rate PyTorch fp32 reaches on the model at batch 1 — the speed-up of a graph that did all its
work at the int8 peak. The target: the fastest CPU backend at batch 1 reaches at least
:data:`CEILING_SHARE` of that ceiling, with its accuracy held (min cosine and rank-1
agreement against PyTorch fp32). The former fixed ratios (5× with VNNI or AMX, 3× on AVX2)
are still shown beside it, for comparison.

Reads the JSON form of a report (:meth:`deen.bench.harness.BenchReport.to_dict`), so that
``deen bench`` and ``benchmarks/write_results.py`` judge from the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deen.bench.run import REFERENCE, isa_class
from deen.formats import cpu_bench_backends

#: The share of the measured int8 ceiling the fastest CPU backend must reach.
CEILING_SHARE = 0.9
#: Accuracy the fastest backend must hold against PyTorch fp32.
MIN_COSINE = 0.99
MIN_AGREEMENT = 0.95


def fixed_ratio(machine: dict[str, Any]) -> tuple[float, str]:
    """The former fixed speed-up target by instruction sets, shown for comparison."""
    isa = isa_class(machine.get("simd", []))
    if isa == "amx" or isa.startswith("avx512-vnni"):
        return 5.0, "AVX-512 VNNI/AMX"
    return 3.0, "AVX2 without VNNI" if isa.startswith("avx") else "no AVX2"


def int8_ceiling(report: dict[str, Any]) -> tuple[float, float, float] | None:
    """(ceiling, PyTorch fp32 GFLOP/s at batch 1, int8 GOP/s), or None when the report lacks
    either rate."""
    int8 = report["machine"].get("int8_gemm_gops")
    eager = next((t for t in report["timings"]
                  if t["backend"] == REFERENCE and t["batch"] == 1), None)
    if not int8 or eager is None or not eager["gflops_per_s"]:
        return None
    return int8 / eager["gflops_per_s"], eager["gflops_per_s"], int8


@dataclass(frozen=True)
class CpuVerdict:
    """The fastest CPU backend at batch 1 against the targets."""

    backend: str
    speedup: float  # over PyTorch eager fp32
    min_cosine: float
    rank1_agreement: float
    top1_image_agreement: float
    ceiling: float | None  # the measured int8 ceiling, as a speed-up
    fixed: float  # the former fixed ratio
    isa: str  # what the fixed ratio was for

    @property
    def share(self) -> float | None:
        return None if not self.ceiling else self.speedup / self.ceiling

    @property
    def accurate(self) -> bool:
        return self.min_cosine >= MIN_COSINE and self.rank1_agreement >= MIN_AGREEMENT

    @property
    def met(self) -> bool | None:
        """Whether the target holds; None when the ceiling was not measured."""
        return None if self.share is None else self.share >= CEILING_SHARE and self.accurate

    def lines(self) -> list[str]:
        """The verdict as markdown list items."""
        accuracy = (f"min cosine {self.min_cosine:.4f}, rank-1 agreement "
                    f"{100 * self.rank1_agreement:.1f}% (same top-1 image "
                    f"{100 * self.top1_image_agreement:.1f}%)")
        if self.share is None:
            target = "the int8 ceiling was not measured — **not judged**"
        else:
            verdict = "met" if self.met else "not met"
            target = (f"{100 * self.share:.0f}% of the measured int8 ceiling "
                      f"{self.ceiling:.2f}× (target ≥ {100 * CEILING_SHARE:.0f}%, min cosine "
                      f"≥ {MIN_COSINE}, agreement ≥ {100 * MIN_AGREEMENT:.0f}%) — **{verdict}**")
        fixed = "reached" if self.speedup >= self.fixed and self.accurate else "not reached"
        return [f"- Fastest CPU backend at batch 1: {self.backend}, {self.speedup:.2f}× PyTorch "
                f"eager fp32, {accuracy}: {target}.",
                f"- For comparison, the former fixed ratio {self.fixed:g}× ({self.isa}): "
                f"{fixed}."]


def cpu_verdict(report: dict[str, Any]) -> CpuVerdict | None:
    """The fastest CPU backend at batch 1 (every CPU backend but the reference competes)."""
    at1 = {t["backend"]: t for t in report["timings"] if t["batch"] == 1}
    candidates = [b for b in cpu_bench_backends() if b != REFERENCE and b in at1]
    accuracy = {a["backend"]: a for a in report["accuracy"]}
    candidates = [b for b in candidates if b in accuracy]
    if not candidates:
        return None
    best = max(candidates, key=lambda b: at1[b]["speedup"])
    acc = accuracy[best]
    ceiling = int8_ceiling(report)
    fixed, isa = fixed_ratio(report["machine"])
    return CpuVerdict(best, at1[best]["speedup"], acc["min_cosine"], acc["rank1_agreement"],
                      acc.get("top1_image_agreement", float("nan")),
                      None if ceiling is None else ceiling[0], fixed, isa)
