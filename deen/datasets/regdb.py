"""RegDB: ``idx/{train,test}_{visible,thermal}_{t}.txt`` (``relative/path label``), t = 1…10.

Each trial has its own train/test split. Test protocol (spec §9): both directions, the whole
test list of one modality as queries and of the other as gallery, no camera filtering, plain
CMC. Visible images count as camera 1, thermal as camera 2.
"""

from __future__ import annotations

from pathlib import Path

from deen.datasets.common import ImageRecord, ProtocolSplit, read_label_file, require_dir
from deen.errors import DeenError
from deen.modality import Modality

TRIALS = tuple(range(1, 11))
DIRECTIONS = {"visible-to-infrared": (Modality.VISIBLE, Modality.INFRARED),
              "infrared-to-visible": (Modality.INFRARED, Modality.VISIBLE)}
_FILE_TAG = {Modality.VISIBLE: "visible", Modality.INFRARED: "thermal"}
_CAMERA = {Modality.VISIBLE: 1, Modality.INFRARED: 2}


def _records(root: Path, split: str, modality: Modality, trial: int) -> list[ImageRecord]:
    listing = root / "idx" / f"{split}_{_FILE_TAG[modality]}_{trial}.txt"
    records = []
    for relative, label in read_label_file(listing):
        path = root / relative
        if not path.is_file():
            raise DeenError(f"{listing}: lists {relative}, which does not exist")
        records.append(ImageRecord(path, label, _CAMERA[modality], modality))
    return records


def available_trials(root: Path) -> list[int]:
    root = require_dir(Path(root))
    trials = [t for t in TRIALS if (root / "idx" / f"test_visible_{t}.txt").is_file()]
    if not trials:
        raise DeenError(f"{root / 'idx'}: no test_visible_<t>.txt files")
    return trials


def train_records(root: Path, trial: int = 1) -> list[ImageRecord]:
    root = require_dir(Path(root))
    return (_records(root, "train", Modality.VISIBLE, trial)
            + _records(root, "train", Modality.INFRARED, trial))


def test_protocol(root: Path, direction: str = "visible-to-infrared",
                  trials: list[int] | None = None) -> list[ProtocolSplit]:
    """One split per trial (each trial has its own query and gallery lists)."""
    root = require_dir(Path(root))
    if direction not in DIRECTIONS:
        raise DeenError(f"unknown RegDB direction {direction!r}: use {' or '.join(DIRECTIONS)}")
    query_modality, gallery_modality = DIRECTIONS[direction]
    return [ProtocolSplit(f"{direction} trial {t}", _records(root, "test", query_modality, t),
                          [_records(root, "test", gallery_modality, t)], "none", False)
            for t in (trials or available_trials(root))]


def training_set(root: Path, trial: int = 1) -> list[ImageRecord]:
    """The :class:`deen.datasets.registry.Layout` entry: trial ``trial``'s training list."""
    return train_records(root, trial)


def test_settings(root: Path, trials: int | None = None) -> list[tuple[str, list[ProtocolSplit]]]:
    """Both directions, each one split per trial (each trial has its own queries)."""
    chosen = available_trials(root)[: trials or None]
    return [(d, test_protocol(root, d, chosen)) for d in DIRECTIONS]
