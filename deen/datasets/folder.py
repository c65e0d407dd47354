"""A layout for users' own camera data: ``ROOT/{train,test}/{visible,infrared}/<identity>/``.

Identity folder names are integers (``0001``, ``17``). Visible images count as camera 1 and
infrared as camera 2. Test protocol: both directions, all test images of one modality as
queries and all of the other as gallery, plain CMC, nothing ignored (as RegDB).
"""

from __future__ import annotations

from pathlib import Path

from deen.datasets.common import ImageRecord, ProtocolSplit, images_in, require_dir
from deen.errors import DeenError
from deen.modality import Modality

MODALITY_FOLDERS = {"visible": Modality.VISIBLE, "infrared": Modality.INFRARED}
DIRECTIONS = {"visible-to-infrared": (Modality.VISIBLE, Modality.INFRARED),
              "infrared-to-visible": (Modality.INFRARED, Modality.VISIBLE)}


def _split_records(root: Path, split: str) -> list[ImageRecord]:
    records = []
    for name, modality in MODALITY_FOLDERS.items():
        folder = require_dir(root / split / name)
        for identity_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            if not identity_dir.name.isdigit():
                raise DeenError(f"{identity_dir}: identity folders must be named by number")
            images = images_in(identity_dir)
            if not images:
                raise DeenError(f"{identity_dir}: empty identity (no images)")
            records += [ImageRecord(p, int(identity_dir.name), int(modality) + 1, modality)
                        for p in images]
    if not records:
        raise DeenError(f"{root / split}: no identities")
    return records


def train_records(root: Path) -> list[ImageRecord]:
    return _split_records(require_dir(Path(root)), "train")


def test_protocol(root: Path, direction: str = "visible-to-infrared") -> ProtocolSplit:
    if direction not in DIRECTIONS:
        raise DeenError(f"unknown direction {direction!r}: use {' or '.join(DIRECTIONS)}")
    records = _split_records(require_dir(Path(root)), "test")
    query_modality, gallery_modality = DIRECTIONS[direction]
    query = [r for r in records if r.modality == query_modality]
    gallery = [r for r in records if r.modality == gallery_modality]
    return ProtocolSplit(direction, query, [gallery], ignore_rule="none", dedup_cmc=False)


def training_set(root: Path, trial: int = 1) -> list[ImageRecord]:
    """The :class:`deen.datasets.registry.Layout` entry: the folder has one split."""
    return train_records(root)


def test_settings(root: Path, trials: int | None = None) -> list[tuple[str, list[ProtocolSplit]]]:
    """Both directions, all of one modality against all of the other."""
    return [(d, [test_protocol(root, d)]) for d in DIRECTIONS]
