"""How well a model finds a returning person again, on the live benchmark scenes' truth.

Relinking (one id per person across leaving and coming back) is what a stream's IDF1 needs
on the generated scenes, and it rests on one thing: the model's similarity between two
visits of the same person against two different people. This measures that alone, with
the tracker and detector out of the way, in about a minute:

- each person's visits in a stream are their runs of truth frames (a gap of more than 10
  frames ends a visit); a visit's appearance is the normalised mean embedding of up to 12
  of its crops spread over it (counted boxes at least 40 px tall and 60% visible);
- ``auc``: the chance that a pair of visits of one person is more similar than a pair of
  two people's; ``tpr_at_q99``: the share of same-person pairs above the 99th percentile
  of the different-person pairs (the relinker's calibrated threshold is such a quantile);
- ``rank1``: for each visit of a person seen before, whether the most similar earlier visit
  is theirs;
- ``cross``: the same across the modalities, an infrared visit against the visible visits
  (what cameras apart need: the person seen in colour found again in infrared);
- ``cross_person``: across the modalities with all of a person's visits in a stream summed
  (what a relinker that remembers people can use at best): ``rank1``, for each person both
  streams saw, whether their infrared look is most like their own visible look; ``auc`` and
  ``tpr_at_q99`` over person pairs; and the 99th percentile of the pairs of two people over
  all the scenes (``cross_person_q99``): a cross-modality threshold for the model before
  live pairs calibrate one (deen run's ``relink.cross_default``).

    python benchmarks/reid_probe.py --model M.xml [--seeds 1,2,3] [--views overlap|apart]
                                    [--json OUT.json]

The scenes are live_accuracy.py's (``--work``, written there first when missing).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from live_accuracy import scene_dir, seed_list

from deen.backends.registry import open_embedder
from deen.bench.run import machine_description
from deen.errors import DeenError
from deen.fileio import atomic_path
from deen.modality import Modality
from deen.scenes import VIEWS

GAP = 10  # frames: a longer absence ends a visit
PER_VISIT = 12
MIN_HEIGHT, MIN_VISIBLE = 40.0, 0.6
STREAMS = (("rgb", "visible.mp4", Modality.VISIBLE), ("ir", "infrared.mp4", Modality.INFRARED))


def visits(gt: Path) -> tuple[list[tuple[int, int, int, list[int]]], dict]:
    """(person, first frame, last frame, sampled frames) per visit, and the sampled boxes."""
    frames: dict[int, list[int]] = defaultdict(list)
    good = {}
    for line in gt.read_text().splitlines():
        f, i, x, y, w, h, counted, _, visible = line.split(",")[:9]
        frames[int(i)].append(int(f))
        if counted.strip() == "1" and float(h) >= MIN_HEIGHT and float(visible) >= MIN_VISIBLE:
            good[int(f), int(i)] = (float(x), float(y), float(w), float(h))
    found = []
    for person, seen in frames.items():
        seen = sorted(seen)
        cuts = [k for k in range(1, len(seen)) if seen[k] - seen[k - 1] > GAP]
        for run in np.split(np.array(seen), cuts):
            usable = [int(f) for f in run if (int(f), person) in good]
            if len(usable) < 5:
                continue
            picks = np.linspace(0, len(usable) - 1, min(PER_VISIT, len(usable)))
            found.append((person, int(run[0]), int(run[-1]),
                          [usable[k] for k in picks.round().astype(int)]))
    return found, good


def visit_means(embedder, scene: Path, stream: str, video: str, modality: Modality
                ) -> tuple[list, np.ndarray]:
    """The stream's visits and their normalised mean embeddings (one row per visit)."""
    found, good = visits(scene / stream / "gt" / "gt.txt")
    wanted: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for index, (person, _, _, picks) in enumerate(found):
        for frame in picks:
            wanted[frame].append((index, person))
    crops: dict[int, list[np.ndarray]] = defaultdict(list)
    capture, frame = cv2.VideoCapture(str(scene / video)), 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frame += 1
        for index, person in wanted.get(frame, []):
            x, y, w, h = good[frame, person]
            crops[index].append(image[max(int(y), 0):int(y + h), max(int(x), 0):int(x + w)])
    capture.release()
    flat = [c for index in range(len(found)) for c in crops[index]]
    vectors = np.asarray(embedder.embed(flat, [modality] * len(flat), batch_size=16), float)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    means, start = [], 0
    for index in range(len(found)):
        mean = vectors[start:start + len(crops[index])].mean(0)
        start += len(crops[index])
        means.append(mean / np.linalg.norm(mean))
    return found, np.stack(means)


def separation(positives: np.ndarray, negatives: np.ndarray) -> dict:
    """AUC and the share of positives above the negatives' 99th percentile."""
    q99 = float(np.quantile(negatives, 0.99))
    return {"auc": float((positives[:, None] > negatives[None]).mean()),
            "tpr_at_q99": float((positives > q99).mean()), "q99": q99}


def probe(found: list, means: np.ndarray) -> dict:
    """Within one stream: a visit against the stream's earlier visits."""
    similarity = means @ means.T
    persons = np.array([v[0] for v in found])
    upper = np.triu_indices(len(found), 1)
    same = (persons[:, None] == persons[None, :])[upper]
    hits = returning = 0
    for index, (person, first, _, _) in enumerate(found):
        earlier = [j for j, v in enumerate(found) if v[2] < first]
        if any(found[j][0] == person for j in earlier):
            returning += 1
            hits += found[max(earlier, key=lambda j: similarity[index, j])][0] == person
    return {"visits": len(found), **separation(similarity[upper][same],
                                               similarity[upper][~same]),
            "rank1": hits / max(returning, 1), "returning": returning}


def _cross_pairs(visible: tuple[list, np.ndarray], infrared: tuple[list, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Infrared rows against visible rows: their similarities, the visible and infrared
    persons, and which pairs are one person."""
    (found_v, means_v), (found_i, means_i) = visible, infrared
    persons_v = np.array([v[0] for v in found_v])
    persons_i = np.array([v[0] for v in found_i])
    return means_i @ means_v.T, persons_v, persons_i, persons_i[:, None] == persons_v[None, :]


def cross_probe(visible: tuple[list, np.ndarray], infrared: tuple[list, np.ndarray]) -> dict:
    """Across the modalities: an infrared visit against every visible visit (the people
    both streams saw). ``rank1``: the most similar visible visit is the same person's."""
    similarity, persons_v, persons_i, same = _cross_pairs(visible, infrared)
    both = same.any(1)
    hits = (persons_v[similarity[both].argmax(1)] == persons_i[both]).mean()
    return {"visits": int(both.sum()), **separation(similarity[same], similarity[~same]),
            "rank1": float(hits), "returning": int(both.sum())}


def cross_negatives(visible: tuple[list, np.ndarray], infrared: tuple[list, np.ndarray]
                    ) -> np.ndarray:
    """The similarities of every infrared person to every other visible person."""
    similarity, _, _, same = _cross_pairs(visible, infrared)
    return similarity[~same]


def person_means(found: list, means: np.ndarray) -> tuple[list, np.ndarray]:
    """Each person's visits in a stream as one: (person, first frame, last frame, sampled
    frames) per person, and their visits' means summed and normalised (one row each)."""
    persons = sorted({v[0] for v in found})
    merged, rows = [], []
    for person in persons:
        mine = [k for k, v in enumerate(found) if v[0] == person]
        merged.append((person, min(found[k][1] for k in mine), max(found[k][2] for k in mine),
                       [f for k in mine for f in found[k][3]]))
        rows.append(means[mine].sum(0))
    rows = np.stack(rows)
    return merged, rows / np.linalg.norm(rows, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--seeds", default="1,2,3",
                        type=seed_list)
    parser.add_argument("--views", choices=VIEWS, default="overlap",
                        help="the scenes' views (live_accuracy.py's scenes of that kind)")
    parser.add_argument("--work", type=Path,
                        default=Path.home() / ".cache" / "deen" / "live-accuracy")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    try:
        embedder = open_embedder(args.model, device="cpu")
    except DeenError as exc:
        sys.exit(f"reid_probe: --model {exc}")
    rows, apart = [], []
    for seed in args.seeds:
        scene = scene_dir(args.work, seed, args.views)
        seen = {}
        for stream, video, modality in STREAMS:
            seen[stream] = visit_means(embedder, scene, stream, video, modality)
        people = {stream: person_means(*seen[stream]) for stream in ("rgb", "ir")}
        apart.append(cross_negatives(people["rgb"], people["ir"]))
        for stream, result in (("rgb", probe(*seen["rgb"])), ("ir", probe(*seen["ir"])),
                               ("cross", cross_probe(seen["rgb"], seen["ir"])),
                               ("cross_person", cross_probe(people["rgb"], people["ir"]))):
            row = {"seed": seed, "views": args.views, "stream": stream, **result}
            rows.append(row)
            of = "people both streams saw" if stream == "cross_person" else "returning visits"
            print(f"scene {seed} {stream}: AUC {row['auc']:.3f}, TPR at q99 "
                  f"{row['tpr_at_q99']:.2f} (q99 {row['q99']:.2f}), rank-1 {row['rank1']:.2f} "
                  f"of {row['returning']} {of}", flush=True)
    for stream in ("rgb", "ir", "cross", "cross_person"):
        mine = [r for r in rows if r["stream"] == stream]
        print(f"{stream} mean: AUC {np.mean([r['auc'] for r in mine]):.3f}, TPR at q99 "
              f"{np.mean([r['tpr_at_q99'] for r in mine]):.2f}, rank-1 "
              f"{np.mean([r['rank1'] for r in mine]):.2f}")
    pooled = float(np.quantile(np.concatenate(apart), 0.99))
    print(f"cross_person q99 of all scenes' pairs of two people: {pooled:.3f} (a cross_default "
          "for relink, when these scenes are like the site's)")
    if args.json is not None:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"model": str(args.model),
                                       "machine": machine_description(), "rows": rows,
                                       "cross_person_q99": pooled},
                                      indent=1))


if __name__ == "__main__":
    main()
