"""A benchmark report as a terminal table, JSON, markdown and a PNG plot.

The plot is drawn with OpenCV (already a dependency) rather than matplotlib: two panels,
latency (p50) against batch size and speed-up over PyTorch fp32 against batch size.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from deen.bench.harness import BenchReport
from deen.fileio import atomic_path


def table(report: BenchReport) -> str:
    accuracy = {a.backend: a for a in report.accuracy}
    info = {b.backend: b for b in report.backends}
    header = (f"{'backend':<22}{'batch':>6}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}"
              f"{'img/s':>9}{'speed-up':>10}{'GFLOP/s':>9}{'min cos':>10}{'rank-1 agr':>11}"
              f"{'R1 %':>7}{'mAP %':>7}{'cold ms':>9}")
    lines = [header, "-" * len(header)]
    for t in report.timings:
        a, b = accuracy.get(t.backend), info.get(t.backend)
        lines.append(
            f"{t.backend:<22}{t.batch:>6}{t.p50_ms:>10.1f}{t.p90_ms:>10.1f}{t.p99_ms:>10.1f}"
            f"{t.images_per_s:>9.1f}{t.speedup:>9.2f}×{t.gflops_per_s:>9.0f}"
            f"{(a.min_cosine if a else float('nan')):>10.5f}"
            f"{(100 * a.rank1_agreement if a else float('nan')):>10.1f}%"
            f"{_percent(a.rank1 if a else float('nan')).rstrip('%') or '-':>7}"
            f"{_percent(a.mAP if a else float('nan')).rstrip('%') or '-':>7}"
            f"{(b.cold_ms if b else float('nan')):>9.0f}")
    for name, why in report.skipped.items():
        lines.append(f"{name:<22} skipped: {why}")
    return "\n".join(lines)


def _percent(value: float) -> str:
    return "" if np.isnan(value) else f"{100 * value:.1f}%"


def markdown(report: BenchReport) -> str:
    accuracy = {a.backend: a for a in report.accuracy}
    info = {b.backend: b for b in report.backends}
    machine = report.machine
    lines = [f"Machine: {machine.get('description', '')}", "",
             f"Settings: {json.dumps(report.settings)}", "",
             "| backend | batch | p50 ms | p90 ms | p99 ms | images/s | speed-up vs PyTorch fp32"
             " | GFLOP/s | min cosine | mean cosine | rank-1 agreement (same person)"
             " | same top-1 image | rank-1 | mAP | cold ms | +RSS MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in report.timings:
        a, b = accuracy.get(t.backend), info.get(t.backend)
        lines.append(
            f"| {t.backend} | {t.batch} | {t.p50_ms:.1f} | {t.p90_ms:.1f} | {t.p99_ms:.1f} | "
            f"{t.images_per_s:.1f} | {t.speedup:.2f}× | {t.gflops_per_s:.0f} | "
            f"{a.min_cosine:.5f} | {a.mean_cosine:.5f} | {100 * a.rank1_agreement:.1f}% | "
            f"{100 * a.top1_image_agreement:.1f}% | {_percent(a.rank1)} | {_percent(a.mAP)} | "
            f"{b.cold_ms:.0f} | {b.added_rss_mib:.0f} |"
            if a and b else f"| {t.backend} | {t.batch} | {t.p50_ms:.1f} |" + " |" * 13)
    for name, why in report.skipped.items():
        lines.append(f"| {name} | skipped: {why} |" + " |" * 14)
    return "\n".join(lines) + "\n"


_COLOURS = [(200, 80, 40), (40, 160, 40), (40, 40, 220), (0, 160, 220), (160, 40, 160),
            (120, 120, 0), (0, 0, 0)]


def _panel(series: dict[str, list[tuple[float, float]]], title: str, ylabel: str,
           log_y: bool, size: tuple[int, int] = (420, 560)) -> np.ndarray:
    height, width = size
    image = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 70, 20, 40, 50
    xs = sorted({x for points in series.values() for x, _ in points})
    ys = [y for points in series.values() for _, y in points if y > 0]
    if not xs or not ys:
        return image
    fx = {x: left + (width - left - right) * i / max(len(xs) - 1, 1) for i, x in enumerate(xs)}
    lo, hi = min(ys), max(ys)
    if log_y:
        lo, hi = np.log10(lo) - 0.05, np.log10(hi) + 0.05
    else:
        lo, hi = 0.0, hi * 1.1

    def fy(y: float) -> float:
        value = np.log10(y) if log_y else y
        return height - bottom - (height - top - bottom) * (value - lo) / max(hi - lo, 1e-9)

    cv2.rectangle(image, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
    cv2.putText(image, title, (left, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1,
                cv2.LINE_AA)
    cv2.putText(image, ylabel, (5, top - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                cv2.LINE_AA)
    single = len(xs) == 1  # one batch size: a bar per backend, not points on one line
    if not single:
        for x in xs:
            cv2.putText(image, str(x), (int(fx[x]) - 6, height - bottom + 18),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, f"batch {xs[0]}" if single else "batch", (width // 2 - 20, height - 12),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for value in np.linspace(lo, hi, 5):
        y = 10 ** value if log_y else value
        cv2.putText(image, f"{y:.3g}", (5, int(fy(y)) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                    (0, 0, 0), 1, cv2.LINE_AA)
    if single:
        slot = (width - left - right) / max(len(series), 1)
        legend_rows = len(series)
        floor = top + 24 + 16 * legend_rows  # bars start below the legend
        for k, (name, points) in enumerate(series.items()):
            colour = _COLOURS[k % len(_COLOURS)]
            value = points[0][1]
            x1 = int(left + slot * k + slot * 0.2)
            x2 = int(left + slot * (k + 1) - slot * 0.2)
            y = max(int(fy(value)), floor) if value > 0 else height - bottom
            cv2.rectangle(image, (x1, y), (x2, height - bottom - 1), colour, -1)
            cv2.putText(image, f"{value:.3g}", (x1, y - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                        colour, 1, cv2.LINE_AA)
            cv2.putText(image, name, (left + 8, top + 16 + 16 * k), cv2.FONT_HERSHEY_SIMPLEX,
                        0.42, colour, 1, cv2.LINE_AA)
        return image
    for k, (name, points) in enumerate(series.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        pts = np.array([[fx[x], fy(y)] for x, y in sorted(points) if y > 0], np.int32)
        cv2.polylines(image, [pts], False, colour, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(image, tuple(int(v) for v in p), 3, colour, -1)
        cv2.putText(image, name, (left + 8, top + 16 + 16 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    colour, 1, cv2.LINE_AA)
    return image


def plot(report: BenchReport, path: Path) -> None:
    latency: dict[str, list[tuple[float, float]]] = {}
    speedup: dict[str, list[tuple[float, float]]] = {}
    for t in report.timings:
        latency.setdefault(t.backend, []).append((t.batch, t.p50_ms))
        speedup.setdefault(t.backend, []).append((t.batch, t.speedup))
    image = np.concatenate([_panel(latency, "latency p50 (ms, log scale)", "ms", True),
                            _panel(speedup, "speed-up vs PyTorch fp32", "x", False)], axis=1)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"{path}: could not encode the plot")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


#: What :func:`write_all` puts in its folder (an earlier report there is these).
REPORT_FILES = ("bench.json", "bench.md", "bench.png")


def write_all(report: BenchReport, out_dir: Path) -> list[Path]:
    """``bench.json``, ``bench.md`` and ``bench.png`` (:data:`REPORT_FILES`) in
    ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in REPORT_FILES]
    with atomic_path(paths[0]) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    with atomic_path(paths[1]) as tmp:
        tmp.write_text(markdown(report))
    plot(report, paths[2])
    return paths
