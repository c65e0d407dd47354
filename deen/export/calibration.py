"""Calibration images for post-training quantisation (ONNX Runtime's and NNCF's alike):
balanced visible and infrared person crops, from the user's folder or videos, or generated.

Both modalities are calibrated together so that neither one's activation ranges dominate:
the crops alternate visible, infrared, visible, ...
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from deen.backends.artifact import INPUT_IMAGES, INPUT_MODALITY
from deen.errors import DeenError, ParameterError
from deen.fileio import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from deen.modality import Modality
from deen.preprocess import preprocess
from deen.synthetic import make_people, render_person


def _video_crops(path: Path, count: int) -> list[np.ndarray]:
    """Up to ``count`` person crops from frames spread over a video, found by the HOG
    detector ``deen run`` uses by default."""
    from deen.runtime.detect import HogDetector

    capture = cv2.VideoCapture(str(path))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if not capture.isOpened() or frames <= 0:
        capture.release()
        raise DeenError(f"{path}: not a readable video")
    detector, crops = HogDetector(), []
    for index in np.linspace(0, frames - 1, num=min(frames, 4 * count), dtype=int):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = capture.read()
        if not ok:
            continue
        for x1, y1, x2, y2 in detector.detect(frame, path.name, int(index)).boxes.astype(int):
            crop = frame[max(y1, 0):y2, max(x1, 0):x2]
            if crop.size:
                crops.append(crop)
        if len(crops) >= count:
            break
    capture.release()
    return crops[:count]


def _modality_crops(source: Path, modality: Modality, count: int) -> list[np.ndarray]:
    """Crops of one modality: image files and videos in ``source/<modality>/``, or one video
    ``source/<modality>.mp4`` (the layout ``deen demo`` and ``deen run`` use)."""
    name = modality.name.lower()
    folder = source / name
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES)) \
        if folder.is_dir() else sorted(p for p in source.glob(f"{name}.*")
                                      if p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise ParameterError("calib", source, f"expected {name} person crops or videos in "
                             f"{folder}/, or a video {source}/{name}.mp4")
    crops: list[np.ndarray] = []
    for path in files:
        if len(crops) >= count:
            break
        if path.suffix.lower() in VIDEO_SUFFIXES:
            crops += _video_crops(path, count - len(crops))
            continue
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DeenError(f"{path}: not a readable image")
        crops.append(image)
    if not crops:
        raise ParameterError("calib", source, f"the detector found no people in the {name} "
                             "video")
    return crops[:count]


def calibration_crops(source: Path | None, count: int = 64, seed: int = 0
                      ) -> list[tuple[np.ndarray, Modality]]:
    """Balanced visible/infrared crops, ``count`` in all, alternating modalities: from
    ``source`` (see :func:`_modality_crops`), or generated people when ``source`` is None."""
    if source is None:
        rng = np.random.default_rng(seed)
        people = make_people(count // 2, seed)
        return [(render_person(p, m, rng), m) for p in people
                for m in (Modality.VISIBLE, Modality.INFRARED)]
    source = Path(source)
    if not source.is_dir():
        raise ParameterError("calib", source, "not a folder (expected visible/ and infrared/ "
                             "crops or videos, or visible.mp4 and infrared.mp4)")
    crops = {m: _modality_crops(source, m, count // 2)
             for m in (Modality.VISIBLE, Modality.INFRARED)}
    n = min(len(v) for v in crops.values())  # balanced: as many of each
    return [(crops[m][i], m) for i in range(n) for m in (Modality.VISIBLE, Modality.INFRARED)]


def calibration_batches(crops: Sequence[tuple[np.ndarray, Modality]],
                        input_size: tuple[int, int], batch: int
                        ) -> list[dict[str, np.ndarray]]:
    """The crops preprocessed into model inputs (``images``, ``modality``), ``batch`` each."""
    batches = []
    for start in range(0, len(crops), batch):
        chunk = crops[start:start + batch]
        batches.append({
            INPUT_IMAGES: preprocess([c for c, _ in chunk], size=input_size),
            INPUT_MODALITY: np.array([int(m) for _, m in chunk], dtype=np.int64)})
    return batches
