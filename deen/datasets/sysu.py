"""SYSU-MM01: ``cam1``…``cam6/<id:04d>/*.jpg`` and ``exp/{train,val,test}_id.txt``.

Visible cameras 1, 2, 4, 5; infrared cameras 3, 6. Training uses the train and val ids (as
the reference pre-processing does). Test protocol (spec §9): queries are all test-id images
from cam3 and cam6; each of 10 trials draws a gallery of one visible image per id per camera
(all-search: cam1, 2, 4, 5; indoor-search: cam1, 2).
"""

from __future__ import annotations

from pathlib import Path

from deen.datasets.common import (
    ImageRecord,
    ProtocolSplit,
    identity_folder_images,
    read_id_list,
    require_dir,
    sample_gallery,
)
from deen.errors import DeenError
from deen.modality import Modality

VISIBLE_CAMERAS = ["cam1", "cam2", "cam4", "cam5"]
INFRARED_CAMERAS = ["cam3", "cam6"]
INDOOR_CAMERAS = ["cam1", "cam2"]
CAMERA_NUMBER = {f"cam{i}": i for i in range(1, 7)}
MODES = {"all-search": VISIBLE_CAMERAS, "indoor-search": INDOOR_CAMERAS}
TRIALS = 10


def train_records(root: Path, ids: list[int] | None = None) -> list[ImageRecord]:
    root = require_dir(Path(root))
    if ids is None:
        ids = read_id_list(root / "exp" / "train_id.txt")
        val = root / "exp" / "val_id.txt"
        if val.is_file():
            ids += read_id_list(val)
    records = identity_folder_images(root, VISIBLE_CAMERAS, ids, Modality.VISIBLE, CAMERA_NUMBER)
    records += identity_folder_images(root, INFRARED_CAMERAS, ids, Modality.INFRARED,
                                      CAMERA_NUMBER)
    if not records:
        raise DeenError(f"{root}: no training images found under cam1…cam6/<id>/")
    return records


def test_protocol(root: Path, mode: str = "all-search", trials: int = TRIALS) -> ProtocolSplit:
    root = require_dir(Path(root))
    if mode not in MODES:
        raise DeenError(f"unknown SYSU-MM01 mode {mode!r}: use {' or '.join(MODES)}")
    ids = read_id_list(root / "exp" / "test_id.txt")
    query = identity_folder_images(root, INFRARED_CAMERAS, ids, Modality.INFRARED, CAMERA_NUMBER)
    if not query:
        raise DeenError(f"{root}: no query images for the test ids under cam3/, cam6/")
    galleries = [sample_gallery(root, MODES[mode], ids, Modality.VISIBLE, CAMERA_NUMBER, t)
                 for t in range(trials)]
    return ProtocolSplit(mode, query, galleries, ignore_rule="sysu", dedup_cmc=True)


def training_set(root: Path, trial: int = 1) -> list[ImageRecord]:
    """The :class:`deen.datasets.registry.Layout` entry: SYSU-MM01 has one split."""
    return train_records(root)


def test_settings(root: Path, trials: int | None = None) -> list[tuple[str, list[ProtocolSplit]]]:
    """Both search modes, each one split with a gallery per trial."""
    return [(mode, [test_protocol(root, mode, trials or TRIALS)]) for mode in MODES]
