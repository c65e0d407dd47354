"""LLCM: ``idx/train_{vis,nir}.txt`` (``relative/path label``), ``idx/test_id.txt`` and
``test_vis/cam1…cam9``, ``test_nir/cam1, cam2, cam4…cam9`` with ``<id:04d>`` sub-folders.

Test protocol (spec §9): both directions; queries are all test images of the query modality;
each of 10 trials draws one gallery image per id per camera of the other modality; a gallery
image of the query's identity from the query's camera number is ignored; CMC de-duplicated.
"""

from __future__ import annotations

from pathlib import Path

from deen.datasets.common import (
    ImageRecord,
    ProtocolSplit,
    identity_folder_images,
    read_id_list,
    read_label_file,
    require_dir,
    sample_gallery,
)
from deen.errors import DeenError
from deen.modality import Modality

VISIBLE_CAMERAS = [f"test_vis/cam{i}" for i in range(1, 10)]
INFRARED_CAMERAS = [f"test_nir/cam{i}" for i in (1, 2, 4, 5, 6, 7, 8, 9)]
CAMERA_NUMBER = {c: int(c.rsplit("cam", 1)[1]) for c in VISIBLE_CAMERAS + INFRARED_CAMERAS}
DIRECTIONS = {"visible-to-infrared": (Modality.VISIBLE, Modality.INFRARED),
              "infrared-to-visible": (Modality.INFRARED, Modality.VISIBLE)}
_CAMERAS = {Modality.VISIBLE: VISIBLE_CAMERAS, Modality.INFRARED: INFRARED_CAMERAS}
TRIALS = 10


def _camera_of(relative: str) -> int:
    """``…/cam3/0001/x.jpg`` → 3 (the folder named cam<N>)."""
    for part in Path(relative).parts:
        if part.startswith("cam") and part[3:].isdigit():
            return int(part[3:])
    return 0


def train_records(root: Path) -> list[ImageRecord]:
    root = require_dir(Path(root))
    records = []
    for name, modality in (("train_vis.txt", Modality.VISIBLE), ("train_nir.txt",
                                                                 Modality.INFRARED)):
        listing = root / "idx" / name
        for relative, label in read_label_file(listing):
            path = root / relative
            if not path.is_file():
                raise DeenError(f"{listing}: lists {relative}, which does not exist")
            records.append(ImageRecord(path, label, _camera_of(relative), modality))
    return records


def test_protocol(root: Path, direction: str = "visible-to-infrared",
                  trials: int = TRIALS) -> ProtocolSplit:
    root = require_dir(Path(root))
    if direction not in DIRECTIONS:
        raise DeenError(f"unknown LLCM direction {direction!r}: use {' or '.join(DIRECTIONS)}")
    query_modality, gallery_modality = DIRECTIONS[direction]
    ids = read_id_list(root / "idx" / "test_id.txt")
    query = identity_folder_images(root, _CAMERAS[query_modality], ids, query_modality,
                                   CAMERA_NUMBER)
    if not query:
        raise DeenError(f"{root}: no query images for the test ids")
    galleries = [sample_gallery(root, _CAMERAS[gallery_modality], ids, gallery_modality,
                                CAMERA_NUMBER, t) for t in range(trials)]
    return ProtocolSplit(direction, query, galleries, ignore_rule="llcm", dedup_cmc=True)


def training_set(root: Path, trial: int = 1) -> list[ImageRecord]:
    """The :class:`deen.datasets.registry.Layout` entry: LLCM has one split."""
    return train_records(root)


def test_settings(root: Path, trials: int | None = None) -> list[tuple[str, list[ProtocolSplit]]]:
    """Both directions, each one split with a gallery per trial."""
    return [(d, [test_protocol(root, d, trials or TRIALS)]) for d in DIRECTIONS]
