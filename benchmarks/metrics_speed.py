"""Time the metric function on 4,000 queries × 4,000 gallery on one core (target < 2 s).

    .venv/bin/python benchmarks/metrics_speed.py

Runs each protocol rule, repeated, and prints the median CPU time. Pinned to one core with
os.sched_setaffinity where the platform allows it.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from deen.eval.metrics import IgnoreRule, evaluate_ranking


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rng = np.random.default_rng(0)
    num = 4000
    distances = rng.random((num, num)).astype(np.float32)
    q_ids, g_ids = rng.integers(0, 400, num), rng.integers(0, 400, num)
    q_cams, g_cams = rng.integers(1, 7, num), rng.integers(1, 7, num)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"one core used; numpy {np.__version__}")
    for rule, dedup in ((IgnoreRule.NONE, False), (IgnoreRule.SYSU_CAM3_CAM2, True),
                        (IgnoreRule.SAME_ID_SAME_CAMERA, True)):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            evaluate_ranking(distances, q_ids, g_ids, q_cams, g_cams, rule=rule, dedup_cmc=dedup)
            times.append(time.perf_counter() - start)
        print(f"{rule.value:5s} dedup_cmc={dedup!s:5s}: median {np.median(times):.2f} s "
              f"over {len(times)} runs ({num} × {num})")


if __name__ == "__main__":
    main()
