"""What every layout shares: the record type, id-list and label-file parsing, clear errors."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from deen.errors import DeenError
from deen.modality import Modality

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    identity: int  # the dataset's identity number (not relabelled)
    camera: int
    modality: Modality


@dataclass(frozen=True)
class ProtocolSplit:
    """One evaluation setting: queries and, per trial, a gallery."""

    name: str  # e.g. "all-search", "visible-to-infrared"
    query: list[ImageRecord]
    galleries: list[list[ImageRecord]]  # one per trial
    ignore_rule: str  # metrics.IgnoreRule value
    dedup_cmc: bool


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise DeenError(f"{path}: missing file (expected by the dataset layout)")
    return path


def require_dir(path: Path) -> Path:
    if not path.is_dir():
        raise DeenError(f"{path}: missing folder (expected by the dataset layout)")
    return path


def read_id_list(path: Path) -> list[int]:
    """SYSU/LLCM ``exp/*.txt``/``idx/test_id.txt``: one line of comma-separated ids."""
    text = require_file(path).read_text().strip()
    try:
        ids = [int(token) for token in text.splitlines()[0].split(",") if token.strip()]
    except (ValueError, IndexError):
        raise DeenError(f"{path}:1: expected comma-separated identity numbers") from None
    if not ids:
        raise DeenError(f"{path}: lists no identities")
    return ids


def read_label_file(path: Path) -> list[tuple[str, int]]:
    """RegDB/LLCM ``idx/*.txt``: one ``relative/path label`` per line."""
    entries = []
    for number, line in enumerate(require_file(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DeenError(f"{path}:{number}: expected 'relative/path label', got {line!r}")
        entries.append((parts[0], int(parts[1])))
    if not entries:
        raise DeenError(f"{path}: lists no images")
    return entries


def images_in(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name (the reference sorts os.listdir)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def identity_folder_images(root: Path, cameras: list[str], ids: list[int], modality: Modality,
                           camera_number: dict[str, int]) -> list[ImageRecord]:
    """Every image of ``root/<camera>/<id:04d>/`` in id-then-camera order."""
    records = []
    for identity in sorted(ids):
        for camera in cameras:
            folder = root / camera / f"{identity:04d}"
            if folder.is_dir():
                records += [ImageRecord(p, identity, camera_number[camera], modality)
                            for p in images_in(folder)]
    return records


def sample_gallery(root: Path, cameras: list[str], ids: list[int], modality: Modality,
                   camera_number: dict[str, int], trial: int) -> list[ImageRecord]:
    """One image per identity per camera, drawn as the reference does: ``random.seed(trial)``
    then one ``random.choice`` over the sorted file list, in id-then-camera order."""
    state = random.getstate()
    random.seed(trial)
    try:
        records = []
        for identity in sorted(ids):
            for camera in cameras:
                folder = root / camera / f"{identity:04d}"
                if folder.is_dir():
                    files = images_in(folder)
                    if files:
                        records.append(ImageRecord(random.choice(files), identity,
                                                   camera_number[camera], modality))
        return records
    finally:
        random.setstate(state)
