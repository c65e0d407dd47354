"""``deen data synth``: a small dataset in each real layout, made of generated people.

An identity's visible and infrared images share its build, height, bag and body heat
(:mod:`deen.synthetic`), so a network can learn to match across modalities; clothing colour
is visible-only, as in real data. The dataset is written into a temporary folder and renamed
into place when complete.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from deen.errors import BadValueError, DeenError
from deen.fileio import publish_dir, require_new_folder
from deen.modality import Modality
from deen.synthetic import Identity, render_person


class _Writer:
    def __init__(self, root: Path, size: tuple[int, int], seed: int) -> None:
        self.root, self.size = root, size
        self.rng = np.random.default_rng(seed)

    def person(self, identity: Identity, modality: Modality, relative: str) -> str:
        image = render_person(identity, modality, self.rng)
        image = cv2.resize(image, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), image):
            raise DeenError(f"{path}: could not write image")
        return relative

    def text(self, relative: str, lines: list[str]) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")


def write_sysu(w: _Writer, people: dict[int, Identity], train: list[int], val: list[int],
               test: list[int], per_camera: int) -> None:
    for identity, person in people.items():
        for camera in range(1, 7):
            modality = Modality.INFRARED if camera in (3, 6) else Modality.VISIBLE
            for k in range(per_camera):
                w.person(person, modality, f"cam{camera}/{identity:04d}/{k + 1:04d}.jpg")
    for name, ids in (("train", train), ("val", val), ("test", test)):
        w.text(f"exp/{name}_id.txt", [",".join(str(i) for i in ids)])


def write_regdb(w: _Writer, people: dict[int, Identity], train: list[int], val: list[int],
                test: list[int], per_camera: int) -> None:
    """RegDB's own ten random splits of every identity; the given split is not used."""
    files: dict[tuple[int, Modality], list[str]] = {}
    for identity, person in people.items():
        for modality, folder in ((Modality.VISIBLE, "Visible"), (Modality.INFRARED, "Thermal")):
            files[identity, modality] = [
                w.person(person, modality, f"{folder}/{identity}/{k + 1:02d}.bmp")
                for k in range(2 * per_camera)]
    ids = sorted(people)
    for trial in range(1, 11):
        order = random.Random(trial).sample(ids, len(ids))
        half = len(ids) // 2
        for split, split_ids in (("train", order[:half]), ("test", order[half:])):
            for modality, tag in ((Modality.VISIBLE, "visible"), (Modality.INFRARED, "thermal")):
                w.text(f"idx/{split}_{tag}_{trial}.txt",
                       [f"{f} {i}" for i in sorted(split_ids) for f in files[i, modality]])


def write_llcm(w: _Writer, people: dict[int, Identity], train: list[int], val: list[int],
               test: list[int], per_camera: int) -> None:
    """Training on the train and validation ids, as the dataset has no validation split."""
    train = train + val
    for split, ids in (("train", train), ("test", test)):
        listings: dict[str, list[str]] = {"vis": [], "nir": []}
        for identity in ids:
            for tag, modality, cameras in (("vis", Modality.VISIBLE, (1, 2, 3)),
                                           ("nir", Modality.INFRARED, (1, 2, 4))):
                for camera in cameras:
                    for k in range(per_camera):
                        relative = w.person(people[identity], modality,
                                            f"{split}_{tag}/cam{camera}/{identity:04d}/"
                                            f"{identity:04d}_c{camera:02d}_{k:04d}.jpg")
                        listings[tag].append(f"{relative} {identity}")
        if split == "train":
            for tag, lines in listings.items():
                w.text(f"idx/train_{tag}.txt", lines)
    w.text("idx/test_id.txt", [",".join(str(i) for i in test)])


def write_folder(w: _Writer, people: dict[int, Identity], train: list[int], val: list[int],
                 test: list[int], per_camera: int) -> None:
    """Training on the train and validation ids, as the layout has no validation split."""
    train = train + val
    for split, ids in (("train", train), ("test", test)):
        for identity in ids:
            for modality, folder in ((Modality.VISIBLE, "visible"), (Modality.INFRARED,
                                                                     "infrared")):
                for k in range(2 * per_camera):
                    w.person(people[identity], modality,
                             f"{split}/{folder}/{identity:04d}/{k:04d}.jpg")


def write_synthetic_dataset(out: Path, layout: str, identities: int = 24,
                            per_camera: int = 2, size: tuple[int, int] = (128, 64),
                            seed: int = 0) -> Path:
    """Write ``identities`` people in ``layout`` under ``out`` (which must not exist)."""
    out = Path(out)
    from deen.datasets import registry

    if layout not in registry.synthetic_names():
        raise BadValueError("layout", layout,
                             f"choose one of {', '.join(registry.synthetic_names())}")
    writer_function = globals()[registry.get(layout).synthetic]  # type: ignore[index]
    if identities < 4:
        raise BadValueError("identities", identities, "must be at least 4 (people for the "
                            "train, validation and test splits)")
    if per_camera < 1:
        raise BadValueError("per_camera", per_camera, "must be at least 1")
    if min(size) < 16:
        raise BadValueError("size", f"{size[0]}x{size[1]}", "images must be at least 16x16")
    if seed < 0:
        raise BadValueError("seed", seed, "must not be negative")
    require_new_folder(out)
    rng = np.random.default_rng(seed)
    people = {i: Identity.random(rng) for i in range(1, identities + 1)}
    ids = list(people)
    n_test = max(2, identities // 3)
    n_val = max(1, identities // 8)
    train, val, test = ids[: -n_test - n_val], ids[-n_test - n_val: -n_test], ids[-n_test:]
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        writer = _Writer(scratch, size, seed)
        writer_function(writer, people, train, val, test, per_camera)
        publish_dir(scratch, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out
