"""Do two `deen bench` runs of the same command agree? Compares their speed-up ratios.

    python benchmarks/repeatability.py run1/bench.json run2/bench.json [--bound 0.10]

Prints each (backend, batch) speed-up in both runs and their relative difference, and exits
1 if any differs by more than the bound (default 10%).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def speedups(path: Path) -> dict[tuple[str, int], float]:
    report = json.loads(Path(path).read_text())
    return {(t["backend"], t["batch"]): t["speedup"] for t in report["timings"]
            if t["backend"] != "pytorch-fp32"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--bound", type=float, default=0.10)
    args = parser.parse_args()
    first, second = speedups(args.first), speedups(args.second)
    worst = 0.0
    print(f"{'backend':<20}{'batch':>6}{'run 1':>9}{'run 2':>9}{'diff':>8}")
    for key in sorted(first.keys() & second.keys()):
        a, b = first[key], second[key]
        diff = abs(a - b) / max(a, b)
        worst = max(worst, diff)
        print(f"{key[0]:<20}{key[1]:>6}{a:>8.2f}×{b:>8.2f}×{100 * diff:>7.1f}%")
    verdict = "within" if worst <= args.bound else "OUTSIDE"
    print(f"largest difference {100 * worst:.1f}%: {verdict} the {100 * args.bound:.0f}% bound")
    return 0 if worst <= args.bound else 1


if __name__ == "__main__":
    sys.exit(main())
