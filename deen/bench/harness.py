"""Timing backends side by side, with accuracy next to speed.

Every backend embeds the same preprocessed batches. Warm-up calls are excluded; timed calls
are interleaved across backends (round-robin), so drift in the machine (frequency, other
load) falls on all of them alike; GPU work is synchronised before a clock is read. Each
backend's embeddings of a fixed set of generated people are compared with the reference
backend's (PyTorch fp32): min/mean cosine and the rank-1 agreement of cross-modality
retrieval (does each query find the same gallery image first?). The images are a dataset's
test protocol when one is given (:func:`protocol_accuracy`; each backend's own rank-1 and mAP
are reported too), else a fixed set of generated people (:func:`accuracy_against`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from deen.backends.base import Embedder
from deen.datasets.common import ImageRecord, ProtocolSplit
from deen.eval.evaluate import FeatureCache, evaluate_split
from deen.export.compare import row_cosines
from deen.modality import Modality
from deen.preprocess import preprocess
from deen.synthetic import make_people, render_person


@dataclass
class Timing:
    backend: str
    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    images_per_s: float
    speedup: float = float("nan")  # median over rounds of reference time / this time
    gflops_per_s: float = float("nan")


@dataclass
class Accuracy:
    backend: str
    min_cosine: float
    mean_cosine: float
    #: Fraction of queries whose rank-1 match is the same person as the reference's: the
    #: retrieval result rank-1 accuracy scores, so the two backends' rank-1 outcomes agree.
    rank1_agreement: float
    #: Fraction of queries whose rank-1 match is the very same gallery image. Stricter: a
    #: gallery holds several images of each person, often near-ties for a query.
    top1_image_agreement: float
    rank1: float = float("nan")  # the backend's own protocol rank-1 (with a dataset only)
    mAP: float = float("nan")
    max_abs_diff: float = float("nan")  # largest element difference from the reference


@dataclass
class BackendInfo:
    backend: str
    cold_ms: float  # building it plus its first call
    added_rss_mib: float  # resident memory the process gained building it and its first call


@dataclass
class BenchReport:
    machine: dict[str, object]
    settings: dict[str, object]
    timings: list[Timing] = field(default_factory=list)
    accuracy: list[Accuracy] = field(default_factory=list)
    backends: list[BackendInfo] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"machine": self.machine, "settings": self.settings,
                "timings": [asdict(t) for t in self.timings],
                "accuracy": [asdict(a) for a in self.accuracy],
                "backends": [asdict(b) for b in self.backends], "skipped": self.skipped}


def rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def people_batch(count: int, input_size: tuple[int, int], seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``count`` generated people, alternating visible and infrared, preprocessed."""
    rng = np.random.default_rng(seed)
    people = make_people(max(1, (count + 1) // 2), seed)
    images, codes = [], []
    for i in range(count):
        modality = Modality.VISIBLE if i % 2 == 0 else Modality.INFRARED
        images.append(render_person(people[i // 2], modality, rng))
        codes.append(int(modality))
    return preprocess(images, size=input_size), np.array(codes, dtype=np.int64)


def accuracy_against(reference: np.ndarray, candidate: np.ndarray, people: int,
                     backend: str) -> Accuracy:
    """Cosines row by row, and rank-1 agreement of visible→infrared retrieval, where the
    first ``people`` rows are visible and the next ``people`` their infrared images."""
    cos = row_cosines(reference, candidate)

    def top1(emb: np.ndarray) -> np.ndarray:
        return np.argmax(emb[:people] @ emb[people:].T, axis=1)

    agreement = float(np.mean(top1(reference) == top1(candidate)))  # one image per person
    return Accuracy(backend, float(cos.min()), float(cos.mean()), agreement, agreement,
                    max_abs_diff=_max_abs_diff(reference, candidate))


def _max_abs_diff(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float(np.abs(reference.astype(np.float64) - candidate).max())


def protocol_accuracy(backends: dict[str, Embedder], reference: str,
                      split: ProtocolSplit) -> list[Accuracy]:
    """Each backend on a dataset's test protocol: its rank-1 and mAP (mean over the split's
    trials), how often its rank-1 match is the same person (and the same image) as
    ``reference``'s over queries × trials, and cosines against ``reference`` over every
    query and gallery image."""
    records = list(dict.fromkeys([*split.query, *(r for g in split.galleries for r in g)]))
    features = {name: FeatureCache(embedder) for name, embedder in backends.items()}

    def top1(name: str, gallery: list[ImageRecord]) -> np.ndarray:
        return np.argmax(features[name](split.query) @ features[name](gallery).T, axis=1)

    results = []
    for name in backends:
        metrics = evaluate_split(split, features[name]).mean
        same_image, same_person = [], []
        for gallery in split.galleries:
            ours, theirs = top1(name, gallery), top1(reference, gallery)
            person = np.array([record.identity for record in gallery])
            same_image.append(ours == theirs)
            same_person.append(person[ours] == person[theirs])
        expected, got = features[reference](records), features[name](records)
        cos = row_cosines(expected, got)
        results.append(Accuracy(name, float(cos.min()), float(cos.mean()),
                                float(np.mean(same_person)), float(np.mean(same_image)),
                                metrics["rank1"], metrics["mAP"], _max_abs_diff(expected, got)))
    return results


def time_backends(backends: dict[str, Embedder], batches: list[int], input_size: tuple[int, int],
                  runs: int = 20, warmup: int = 3,
                  synchronize: Callable[[], None] | None = None,
                  reference: str | None = None) -> list[Timing]:
    """p50/p90/p99 per backend and batch, timed calls interleaved across backends.

    With ``reference``, each backend's speed-up is the median over rounds of the reference's
    time divided by the backend's time *in the same round*: drift that slows a whole round
    cancels out, which makes the ratio repeat better than a ratio of medians.
    """
    timings = []
    for batch in batches:
        images, codes = people_batch(batch, input_size, seed=batch)
        for embedder in backends.values():
            for _ in range(warmup):
                embedder.run(images, codes)
        samples: dict[str, list[float]] = {name: [] for name in backends}
        for _ in range(runs):
            for name, embedder in backends.items():
                if synchronize is not None:
                    synchronize()
                start = time.perf_counter()
                embedder.run(images, codes)
                if synchronize is not None:
                    synchronize()
                samples[name].append(time.perf_counter() - start)
        for name, values in samples.items():
            ms = 1000 * np.asarray(values)
            p50 = float(np.percentile(ms, 50))
            speedup = (float(np.median(np.asarray(samples[reference]) / np.asarray(values)))
                       if reference in samples else float("nan"))
            timings.append(Timing(name, batch, p50, float(np.percentile(ms, 90)),
                                  float(np.percentile(ms, 99)), 1000 * batch / p50, speedup))
    return timings
