"""Running a protocol: embed queries and galleries with any embedder, rank, average trials.

Every image is embedded once even when it appears in several trials' galleries. Distances
are −S with S the embedding dot product (the reference similarity); optionally re-ranked.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deen.backends.base import Embedder
from deen.datasets import registry
from deen.datasets.common import ImageRecord, ProtocolSplit
from deen.errors import DeenError
from deen.eval.metrics import CMC_RANKS, IgnoreRule, Metrics, evaluate_ranking
from deen.eval.ranks import rank_queries, write_ranks
from deen.eval.rerank import k_reciprocal_rerank
from deen.fileio import atomic_path
from deen.preprocess import load_rgb, preprocess
from deen.progress import Progress


@dataclass
class SplitResult:
    name: str
    trials: list[Metrics]

    @property
    def mean(self) -> dict[str, float]:
        keys = self.trials[0].to_dict().keys()
        return {k: float(np.mean([t.to_dict()[k] for t in self.trials])) for k in keys}


@dataclass
class EvalReport:
    dataset: str
    model: str
    splits: list[SplitResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"dataset": self.dataset, "model": self.model,
                "results": [{"setting": s.name, "mean": s.mean,
                             "trials": [t.to_dict() for t in s.trials]} for s in self.splits]}

    def table(self) -> str:
        header = ["setting", *[f"R{k}" for k in CMC_RANKS], "mAP", "mINP", "trials"]
        rows = [header]
        for s in self.splits:
            m = s.mean
            rows.append([s.name, *[f"{100 * m[f'rank{k}']:.2f}" for k in CMC_RANKS],
                         f"{100 * m['mAP']:.2f}", f"{100 * m['mINP']:.2f}", str(len(s.trials))])
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                         for r in rows)


class FeatureCache:
    """Embeddings of image records, computed once per path."""

    def __init__(self, embedder: Embedder, batch_size: int = 32,
                 progress: Callable[[int], None] | None = None) -> None:
        self.embedder, self.batch_size, self.progress = embedder, batch_size, progress
        self.features: dict[Path, np.ndarray] = {}

    def __call__(self, records: Sequence[ImageRecord]) -> np.ndarray:
        todo = list(dict.fromkeys(r for r in records if r.path not in self.features))
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start: start + self.batch_size]
            images = [np.asarray(load_rgb(r.path)) for r in chunk]
            batch = preprocess(images, "rgb", self.embedder.input_size)
            codes = np.array([int(r.modality) for r in chunk], dtype=np.int64)
            rows = self.embedder.run(batch, codes)
            bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
            if bad.size:
                raise DeenError(
                    f"the model gives non-finite embeddings for {bad.size} of {len(chunk)} "
                    f"images (e.g. {chunk[bad[0]].path}): its features are all zero or diverged "
                    "(the reference normalises without an epsilon, so a zero feature is NaN)")
            for record, row in zip(chunk, rows, strict=True):
                self.features[record.path] = row
            if self.progress:
                self.progress(len(chunk))
        return np.stack([self.features[r.path] for r in records])


def evaluate_split(split: ProtocolSplit, features: FeatureCache,
                   rerank: bool = False) -> SplitResult:
    query = features(split.query)
    q_ids = np.array([r.identity for r in split.query])
    q_cams = np.array([r.camera for r in split.query])
    trials = []
    for gallery_records in split.galleries:
        gallery = features(gallery_records)
        distances = -(query @ gallery.T)
        if rerank:
            distances = k_reciprocal_rerank(query, gallery)
        trials.append(evaluate_ranking(
            distances.astype(np.float32), q_ids, np.array([r.identity for r in gallery_records]),
            q_cams, np.array([r.camera for r in gallery_records]),
            rule=IgnoreRule(split.ignore_rule), dedup_cmc=split.dedup_cmc))
    return SplitResult(split.name, trials)


def protocol_settings(dataset: str, root: Path,
                      trials: int | None = None) -> list[tuple[str, list[ProtocolSplit]]]:
    """Every setting a dataset's protocol reports (both modes or directions), each as the
    splits whose trials are averaged: SYSU/LLCM one split with a gallery per trial; RegDB
    one split per trial (each trial has its own queries)."""
    return registry.layout(dataset).test_settings(Path(root), trials)


def evaluate_dataset(embedder: Embedder, dataset: str, root: Path, model_name: str,
                     trials: int | None = None, rerank: bool = False,
                     show_progress: bool = False, ranks: Path | None = None,
                     top: int = 10) -> EvalReport:
    """Every protocol setting of ``dataset``; ``show_progress`` reports the embedding of
    the test images (the long part) with rate and ETA on stderr. ``ranks``: a folder that
    gets, per setting, its first trial's queries with their ``top`` gallery images
    (:mod:`deen.eval.ranks`)."""
    report = EvalReport(dataset, model_name)
    settings = protocol_settings(dataset, Path(root), trials)
    images = {r.path for _, splits in settings for split in splits
              for r in (*split.query, *(g for gallery in split.galleries for g in gallery))}
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(Progress(f"embedding {dataset} test images", len(images),
                                           "images")) if show_progress else None
        features = FeatureCache(embedder, progress=bar.advance if bar else None)
        for name, splits in settings:
            results = [t for split in splits
                       for t in evaluate_split(split, features, rerank).trials]
            report.splits.append(SplitResult(name, results))
            if ranks is not None:
                first = splits[0]
                rankings = rank_queries(first, features(first.query),
                                        features(first.galleries[0]), top)
                write_ranks(name, rankings, Path(ranks) / name, top)
    return report


def write_report(report: EvalReport, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
