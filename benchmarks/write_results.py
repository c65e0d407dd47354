"""Write benchmarks/RESULTS.md from the bench.json files that regenerate.sh produced.

Every number in RESULTS.md comes from those files, so the page cannot drift from the
results next to it. The CPU acceptance lines are checked here, from each run's numbers: the
fastest CPU backend at batch 1 at 90% or more of the int8 ceiling measured on its machine
with its accuracy held (:mod:`deen.bench.targets`, which also gives the former fixed ratios
for comparison), OpenVINO fp32 within 1e-3 of PyTorch, and ONNX Runtime int8 faster than
ONNX Runtime fp32.

    python benchmarks/write_results.py --results benchmarks/results --out benchmarks/RESULTS.md

Results are kept per instruction-set class (``results/avx2/``, ``results/avx512-vnni-bf16/``,
... from ``deen.bench.run.isa_class``), since the ratios depend on them; the page shows them
all, with a summary table first.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deen.bench.targets import cpu_verdict, int8_ceiling
from deen.fileio import atomic_path


def _table(report: dict) -> list[str]:
    accuracy = {a["backend"]: a for a in report["accuracy"]}
    lines = ["| backend | batch | p50 ms | p99 ms | img/s | speed-up | GFLOP/s | min cosine "
             "| rank-1 agreement (same person) | same top-1 image | rank-1 | mAP |",
             "|---|" + "---:|" * 11]
    for t in report["timings"]:
        a = accuracy[t["backend"]]
        own = [f"{100 * a[k]:.1f}%" if a.get(k) == a.get(k) and k in a else ""
               for k in ("rank1", "mAP")]
        lines.append(f"| {t['backend']} | {t['batch']} | {t['p50_ms']:.1f} | {t['p99_ms']:.1f} "
                     f"| {t['images_per_s']:.1f} | {t['speedup']:.2f}× | "
                     f"{t['gflops_per_s']:.0f} | {a['min_cosine']:.5f} | "
                     f"{100 * a['rank1_agreement']:.1f}% | "
                     f"{100 * a['top1_image_agreement']:.1f}% | {own[0]} | {own[1]} |")
    for name, why in report.get("skipped", {}).items():
        lines.append(f"| {name} | skipped: {why} |" + " |" * 10)
    return lines


def acceptance(report: dict) -> list[str]:
    """The CPU targets against one report (:mod:`deen.bench.targets`)."""
    accuracy = {a["backend"]: a for a in report["accuracy"]}
    verdict = cpu_verdict(report)
    lines = [] if verdict is None else verdict.lines()
    if "openvino-fp32" in accuracy:
        diff = accuracy["openvino-fp32"].get("max_abs_diff", float("nan"))
        lines.append(f"- OpenVINO fp32 matches PyTorch (max abs ≤ 1e-3): {diff:.2g} — "
                     f"**{'met' if diff <= 1e-3 else 'not met'}**.")
    by_batch: dict[int, dict[str, float]] = {}
    for t in report["timings"]:
        by_batch.setdefault(t["batch"], {})[t["backend"]] = t["p50_ms"]
    ratios = {b: v["onnxruntime-fp32"] / v["onnxruntime-int8"] for b, v in by_batch.items()
              if "onnxruntime-fp32" in v and "onnxruntime-int8" in v}
    if ratios:
        met = all(r > 1.0 for r in ratios.values())
        lines.append("- ONNX int8 faster than ONNX fp32 in ONNX Runtime (p50 fp32 / p50 int8): "
                     + ", ".join(f"batch {b}: {r:.2f}×" for b, r in ratios.items())
                     + f" — **{'met' if met else 'not met'}**.")
    return lines


def instruction_sets(machine: dict) -> str:
    """Which of the instruction sets that decide these ratios the machine has."""
    simd = set(machine.get("simd", []))
    checks = {"AVX2": {"avx2"}, "AVX-512": {"avx512f"},
              "VNNI": {"avx512_vnni", "avx_vnni"}, "bf16": {"avx512_bf16", "amx_bf16"},
              "AMX": {"amx_tile", "amx_int8", "amx_bf16"}}
    return ", ".join(f"{name} {'yes' if simd & flags else 'no'}"
                     for name, flags in checks.items())


def _summary(runs: list[tuple[str, Path, dict]]) -> list[str]:
    lines = ["| instruction sets | run | fastest CPU backend (batch 1) | speed-up | int8 ceiling "
             "| share of the ceiling (target ≥ 90%) | min cosine | rank-1 agreement | met "
             "| former fixed ratio |", "|---|---|---|---:|---:|---:|---:|---:|---|---|"]
    for isa, folder, report in runs:
        v = cpu_verdict(report)
        if v is None:
            continue
        ceiling = "n/a" if v.ceiling is None else f"{v.ceiling:.2f}×"
        share = "n/a" if v.share is None else f"{100 * v.share:.0f}%"
        met = {True: "yes", False: "no", None: "not judged"}[v.met]
        fixed = "reached" if v.speedup >= v.fixed and v.accurate else "not reached"
        lines.append(f"| {isa} | {folder.name} | {v.backend} | {v.speedup:.2f}× | {ceiling} "
                     f"| {share} | {v.min_cosine:.4f} | {100 * v.rank1_agreement:.1f}% "
                     f"| {met} | {v.fixed:g}×: {fixed} |")
    return lines


def _machine(machine: dict) -> list[str]:
    int8 = machine.get("int8_gemm_gops")
    return [f"**Machine:** {machine['description']}; measured fp32 GEMM rate "
            f"{machine.get('gemm_gflops', float('nan')):.0f} GFLOP/s"
            + (f", int8 GEMM rate {int8:.0f} GOP/s (ONNX Runtime `MatMulInteger`)"
               if int8 else "")
            + f"; PyTorch {machine.get('torch', '?')}, {machine.get('torch_threads', '?')} "
            "threads.", "",
            f"**Instruction sets:** {instruction_sets(machine)}."]


def ceiling_line(report: dict) -> str | None:
    """How the int8 ceiling was measured on this machine."""
    measured = int8_ceiling(report)
    if measured is None:
        return None
    ceiling, eager, int8 = measured
    return (f"- The int8 ceiling on this machine: PyTorch fp32 runs the model at {eager:.0f} "
            f"GFLOP/s at batch 1, the int8 GEMM peak is {int8:.0f} GOP/s, so a graph doing "
            f"all its work at that peak would be {ceiling:.2f}× PyTorch eager.")


def render(runs: list[tuple[str, Path, dict]]) -> str:
    """RESULTS.md from every run, grouped by the instruction-set class that measured it."""
    out = ["# deen bench results", "",
           "Generated by `bash benchmarks/regenerate.sh` (which ends by running "
           "`benchmarks/write_results.py`); do not edit by hand. Each machine class keeps its "
           "own results (`results/<instruction sets>/`): a regenerate run replaces only its "
           "own class's.", "",
           "Ratios depend on the instruction sets: int8 gains most with VNNI or AMX, bf16 "
           "needs bf16 instructions (without them the bf16 backends are skipped, with the "
           "reason). Speed-ups are medians of per-round ratios against PyTorch eager fp32, "
           "timed interleaved in the same run; absolute times depend on the machine. Accuracy "
           "is each backend's embeddings against PyTorch fp32 on the images named under each "
           "table.", "", "## Summary", "", *_summary(runs)]
    shown: set[str] = set()
    for isa, folder, report in runs:
        if isa not in shown:
            shown.add(isa)
            out += ["", f"## {isa}", "", *_machine(report["machine"])]
        s = report["settings"]
        h, w = s["input_size"]
        where = f"{isa}/{folder.name}"
        out += ["", f"### {where}: {s['model_source']} model, {h}×{w}, "
                    f"flip {'on' if s['flip'] else 'off'}, {s['gflop_per_image']:.1f} GFLOP "
                    f"per image", "",
                f"Measured {report['machine'].get('date', '(date not recorded)')}. "
                f"Accuracy on: {s.get('accuracy_on', '')}", "", *_table(report), "",
                "The CPU targets, from this run:", "", *acceptance(report),
                *filter(None, [ceiling_line(report)]), "",
                f"Full table (p90, cold start, memory): `results/{where}/bench.md`; plot: "
                f"`results/{where}/bench.png`.", "",
                f"![{where}](results/{where}/bench.png)"]
    return "\n".join(out) + "\n"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


#: The live targets (ids as emitted, in real time at the deployed model's cost), per views and
#: detector: (key, the bound, at least or at most, what the row shows).
LIVE_TARGETS = {
    ("overlap", "boxes"): (("match_precision", 0.95, "≥"), ("match_recall", 0.80, "≥"),
                           ("idf1.rgb", 0.85, "≥"), ("idf1.ir", 0.85, "≥"),
                           ("idf1_cross", 0.80, "≥")),
    ("overlap", "default"): (("match_precision", 0.90, "≥"), ("idf1_cross", 0.65, "≥")),
    ("apart", "boxes"): (("idf1_cross", 0.70, "≥"), ("one_id_share", 0.70, "≥"),
                         ("wrong_cross_link_share", 0.05, "≤")),
}


def _value(row: dict, key: str) -> float | None:
    value: object = row
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) else None


def live_targets(row: dict) -> list[tuple[str, bool]]:
    """Each target of the row's views and detector: (what, met)."""
    out = []
    for key, bound, sign in LIVE_TARGETS.get((row.get("views", "overlap"), row["detector"]), ()):
        value = _value(row, key)
        met = value is not None and (value >= bound if sign == "≥" else value <= bound)
        out.append((f"{key} {sign} {100 * bound:.0f}%", met))
    return out


def _live_accuracy(folder: Path, isa: str, report: dict) -> list[str]:
    seeds = ",".join(dict.fromkeys(str(r["seed"]) for r in report["scenes"]))
    if "realtime" not in report:  # written before the ids as emitted were scored
        return ["", f"### {isa}/{folder.name}: generated scenes, offline, ids settled after "
                "the run (earlier scenes and scorer; not what a live user receives)", "",
                f"Machine: {report['machine']['description']}. Seeds {seeds}.", "",
                "| seed | detector | match precision | match recall | IDF1 rgb / ir |",
                "|---|---|---|---|---|",
                *(f"| {r['seed']} | {r['detector']} | {_pct(r['match_precision'])} | "
                  f"{_pct(r['match_recall'])} | {_pct(r['idf1']['rgb'])} / "
                  f"{_pct(r['idf1']['ir'])} |" for r in report["scenes"])]
    mode = ("in real time at the deployed model's cost" if report["realtime"]
            else "offline (every frame, the benchmark model's own cost)")
    held = " — seeds not looked at when the settings were chosen" \
        if "heldout" in folder.name else ""
    flags = (" --realtime" if report["realtime"] else "") + f" --views {report['views']}"
    detectors = sorted({r["detector"] for r in report["scenes"]})
    if detectors != ["boxes", "default"]:  # live_accuracy.py runs both unless told
        flags += f" --detectors {','.join(detectors)}"
    out = ["", f"### {isa}/{folder.name}: {report['views']} views, {mode}, ids as "
           f"emitted{held}",
           "", f"Machine: {report['machine']['description']}. Model: the DEEN trained on "
           "generated people (`benchmarks/live_model.py`), exported as deen run deploys it "
           f"(`{Path(report['model']).name}`). Cost: {report['cost']}. Command: `python "
           f"benchmarks/live_accuracy.py --seeds {seeds}{flags} --out "
           f"benchmarks/results/{isa}/{folder.name}`"
           + (f" (settings: `{' '.join(report['settings'])}`)" if report.get("settings")
              else "") + "."
           + (f" The benchmark model's own settings: `{' '.join(report['model_settings'])}`."
              if report.get("model_settings") else ""), "",
           "| seed | detector | match precision | match recall | IDF1 rgb / ir | multi-camera "
           "IDF1 | one id in both | wrong links | targets |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in report["scenes"]:
        targets = live_targets(r)
        verdict = ("all met" if all(m for _, m in targets) else "not met: " + ", ".join(
            t for t, m in targets if not m)) if targets else "reported"
        out.append(f"| {r['seed']} | {r['detector']} | {_pct(r['match_precision'])} | "
                   f"{_pct(r['match_recall'])} | {_pct(r['idf1']['rgb'])} / "
                   f"{_pct(r['idf1']['ir'])} | {_pct(r['idf1_cross'])} | "
                   f"{_pct(r['one_id_share'])} | {_pct(r['wrong_cross_link_share'])} | "
                   f"{verdict} |")
    return out


def live(root: Path) -> list[str]:
    """The live runtime's numbers per instruction-set class: live_accuracy.py's scored
    scenes (``<class>/live*/live_accuracy.json``, judged against :data:`LIVE_TARGETS`), the
    real-footage coverage counted by hand (``coverage.json``) and runtime_soak.py on real
    footage (``runtime_soak_real.json``)."""
    out: list[str] = []
    for folder in sorted(p for p in root.glob("*/live*") if p.is_dir()):
        isa = folder.parent.name
        accuracy = folder / "live_accuracy.json"
        if accuracy.is_file():
            out += _live_accuracy(folder, isa, json.loads(accuracy.read_text()))
        coverage = folder / "coverage.json"
        if coverage.is_file():
            c = json.loads(coverage.read_text())
            out += ["", f"### {isa}: real footage, people covered by the default detector's "
                    "tracks (counted by hand)", "",
                    f"{c['frames']} sampled frames of {c.get('footage', 'real footage')}: "
                    f"{_pct(c['mean_coverage'])} of the people in view covered on average "
                    "(target ≥ 60%); " + ", ".join(
                        f"{s}: {v['covered']} of {v['people_in_view']}"
                        for s, v in c["per_stream"].items()) + "."]
        soak = folder / "runtime_soak_real.json"
        if soak.is_file():
            k = json.loads(soak.read_text())
            streams = ", ".join(f"{s} {100 * v['processed_share']:.1f}%"
                                for s, v in k["streams"].items())
            out += ["", f"### {isa}: real time on real footage", "",
                    f"Machine: {k['machine']}. `{k['command']}`: {k['engine']} embedder, "
                    f"{k['detector']} detector, {k['frame_size'][0]}×{k['frame_size'][1]} at "
                    f"{k['fps']:g} fps, {k['minutes']:g} minutes. Frames processed: {streams} "
                    f"(target ≥ 90%); capture→event p95 {k['latency_p95_ms']:.0f} ms (≤ 300); "
                    f"peak RSS {k['peak_rss_mib']:.0f} MiB (≤ 800); per round (ms): "
                    + ", ".join(f"{a} {b}" for a, b in k["stage_ms_per_round"].items()) + "."]
    return ["", "## Live runtime", *out] if out else []


def site(root: Path) -> list[str]:
    """One served model against a model per box (``<class>/site/site_serving.json``, from
    benchmarks/site_serving.py)."""
    out: list[str] = []
    for path in sorted(root.glob("*/site/site_serving.json")):
        report = json.loads(path.read_text())
        machine = report["machine"]
        h, w = report["input_size"]
        out += ["", f"### {path.parent.parent.name}: boxes sharing one served model", "",
                f"Machine: {machine.get('cpu', '?')}, {machine.get('cpus', '?')} cores "
                f"({instruction_sets(machine)}). `{report['command']}`: every box is a `deen "
                f"run` on a {report['pair']}, for {report['seconds']:g} s, with a random DEEN "
                f"at {h}×{w} exported to ONNX; 'own': each box loads it (ONNX Runtime); "
                "'served': all use one `deen serve` (Triton Inference Server, dynamic "
                "batching, ONNX Runtime inside). Memory is the peak of the total over every "
                "process, the server's included.", "",
                "| model | boxes | frames/s (all boxes) | crops embedded/s (all boxes) | "
                "least share of frames processed | worst capture→event p95 | total RSS |",
                "|---|---|---|---|---|---|---|"]
        for row in report["rows"]:
            out.append(f"| {row['model']} | {row['boxes']} | {row['frames_per_s']:.1f} | "
                       f"{row['crops_embedded_per_s']:.1f} | "
                       f"{_pct(row['processed_share_min'])} | "
                       f"{row['latency_p95_ms_max']:.0f} ms | {row['peak_rss_mib']:.0f} MiB |")
    return ["", "## A site: one served model", *out] if out else []


def collect(root: Path) -> list[tuple[str, Path, dict]]:
    """Every ``root/<instruction sets>/<run>/bench.json``, sorted by class then run."""
    runs = []
    for path in sorted(root.glob("*/*/bench.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"{path}: cannot read ({exc})") from None
        runs.append((path.parent.parent.name, path.parent, report))
    if not runs:
        raise SystemExit(f"{root}: no <instruction sets>/<run>/bench.json below it")
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"),
                        help="folder holding <instruction sets>/<run>/bench.json")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/RESULTS.md"))
    args = parser.parse_args()
    runs = collect(args.results)
    with atomic_path(args.out) as tmp:
        tmp.write_text(render(runs) + "".join(
            f"{line}\n" for line in live(args.results) + site(args.results)))
    print(f"wrote {args.out} from {len(runs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
