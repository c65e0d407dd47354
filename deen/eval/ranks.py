"""Ranked results to look at: each query with its top-K gallery images, the same person
marked (as torchreid's ``visualize_ranked_results`` draws them), and a per-query table.

For a protocol setting's first trial: ``ranks.csv`` (query, its identity and camera, the
rank of its first true match, its AP), PNG sheets of ``per_sheet`` queries each (query on
the left with a blue frame, then its top K gallery images, green when the same person, red
when not) and ``index.html`` showing the sheets and the table. Gallery images the protocol
ignores for a query (e.g. SYSU's camera 2 for camera-3 queries) are left out, as the
metrics leave them out.
"""

from __future__ import annotations

import csv
import html
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deen.datasets.common import ProtocolSplit
from deen.eval.metrics import IgnoreRule, ignore_mask
from deen.fileio import atomic_path
from deen.preprocess import load_rgb

TILE = (128, 64)  # height, width of each drawn image
GREEN, RED, BLUE = (40, 170, 40), (40, 40, 220), (200, 120, 0)


@dataclass(frozen=True)
class QueryRanking:
    query: Path
    identity: int
    camera: int
    top: list[tuple[Path, bool]]  # the first K gallery images: path, same person
    first_true_rank: int | None  # 1-based; None when the gallery holds no true match
    average_precision: float | None


def rank_queries(split: ProtocolSplit, query: np.ndarray, gallery: np.ndarray,
                 top: int) -> list[QueryRanking]:
    """Rank the first trial's gallery for every query by the reference similarity S."""
    records = split.galleries[0]
    q_ids = np.array([r.identity for r in split.query])
    g_ids = np.array([r.identity for r in records])
    q_cams = np.array([r.camera for r in split.query])
    g_cams = np.array([r.camera for r in records])
    ignored = ignore_mask(IgnoreRule(split.ignore_rule), q_ids, g_ids, q_cams, g_cams)
    scores = query @ gallery.T
    out = []
    for i, record in enumerate(split.query):
        keep = np.ones(len(records), bool) if ignored is None else ~ignored[i]
        order = [j for j in np.argsort(-scores[i], kind="stable") if keep[j]]
        same = np.array([g_ids[j] == q_ids[i] for j in order])
        hits = np.flatnonzero(same)
        ap = float(np.mean((np.arange(len(hits)) + 1) / (hits + 1))) if len(hits) else None
        out.append(QueryRanking(record.path, int(record.identity), int(record.camera),
                                [(records[j].path, bool(same[k]))
                                 for k, j in enumerate(order[:top])],
                                int(hits[0]) + 1 if len(hits) else None, ap))
    return out


def _tile(path: Path, colour: tuple[int, int, int]) -> np.ndarray:
    image = cv2.cvtColor(np.asarray(load_rgb(path)), cv2.COLOR_RGB2BGR)
    image = cv2.resize(image, (TILE[1], TILE[0]), interpolation=cv2.INTER_AREA)
    return cv2.copyMakeBorder(image[3:-3, 3:-3], 3, 3, 3, 3, cv2.BORDER_CONSTANT,
                              value=colour)


def _sheet(rows: list[QueryRanking], top: int) -> np.ndarray:
    gap = 8
    width = (top + 1) * (TILE[1] + 4) + gap
    out = np.full((len(rows) * (TILE[0] + 22), width, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        y = r * (TILE[0] + 22) + 18
        label = (f"id {row.identity} cam {row.camera}: first true match at rank "
                 f"{row.first_true_rank or '-'}")
        cv2.putText(out, label, (2, y - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
        out[y:y + TILE[0], 0:TILE[1]] = _tile(row.query, BLUE)
        for k, (path, same) in enumerate(row.top):
            x = gap + (k + 1) * (TILE[1] + 4)
            out[y:y + TILE[0], x:x + TILE[1]] = _tile(path, GREEN if same else RED)
    return out


def write_ranks(setting: str, rankings: list[QueryRanking], out: Path, top: int,
                per_sheet: int = 12) -> list[Path]:
    """``ranks.csv``, ``sheet-NNN.png`` and ``index.html`` in ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with atomic_path(out / "ranks.csv") as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", "identity", "camera", "first_true_rank", "ap"])
        for r in rankings:
            writer.writerow([r.query, r.identity, r.camera, r.first_true_rank or "",
                             "" if r.average_precision is None else
                             f"{r.average_precision:.4f}"])
    written.append(out / "ranks.csv")
    sheets = []
    for n, start in enumerate(range(0, len(rankings), per_sheet)):
        ok, encoded = cv2.imencode(".png", _sheet(rankings[start:start + per_sheet], top))
        if not ok:
            raise OSError(f"{out}: could not encode a sheet")
        name = f"sheet-{n + 1:03d}.png"
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(encoded.tobytes())
        sheets.append(name)
    written += [out / s for s in sheets]
    found = [r.first_true_rank for r in rankings if r.first_true_rank is not None]
    rank1 = sum(rank == 1 for rank in found) / max(len(found), 1)
    rows = "\n".join(
        f"<tr><td>{html.escape(str(r.query))}</td><td>{r.identity}</td><td>{r.camera}</td>"
        f"<td>{r.first_true_rank or '-'}</td><td>"
        f"{'-' if r.average_precision is None else f'{r.average_precision:.3f}'}</td></tr>"
        for r in rankings)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>deen eval: {html.escape(setting)}</title>
<style>body{{font-family:sans-serif}} td,th{{padding:2px 8px}}
img{{display:block;margin:8px 0}}</style>
</head><body>
<h1>{html.escape(setting)}: top {top} per query</h1>
<p>{len(rankings)} queries; rank-1 {100 * rank1:.1f}% of those with a true match. Query framed
blue; gallery green when the same person, red when not.</p>
{''.join(f'<img src="{s}" alt="{s}">' for s in sheets)}
<table><tr><th>query</th><th>identity</th><th>camera</th><th>first true match</th>
<th>AP</th></tr>
{rows}
</table></body></html>
"""
    with atomic_path(out / "index.html") as tmp:
        tmp.write_text(page)
    written.append(out / "index.html")
    return written
