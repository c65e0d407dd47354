"""A generated visible/infrared camera pair with known ground truth.

Both cameras watch the same corridor from slightly different positions: generated people
(:mod:`deen.synthetic`) walk across, one after another with some overlap, each seen in both
views. The videos are written with OpenCV, with a ``boxes.jsonl`` giving every person's box
per frame and stream and who it is, so the pipeline can run on exact detections
(``--detector boxes.jsonl``) and a test can check its matches against the truth.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deen.errors import DeenError
from deen.modality import Modality
from deen.runtime.streams import STREAMS
from deen.synthetic import make_people, render_person

__all__ = ["STREAMS", "StreamPair", "read_truth", "write_stream_pair"]


@dataclass(frozen=True)
class StreamPair:
    visible: Path
    infrared: Path
    boxes: Path  # JSON lines: stream, frame, boxes [[x1, y1, x2, y2, score]], identities
    fps: float
    frames: int


@dataclass(frozen=True)
class _Walk:
    identity: int
    start: int  # first frame
    duration: int  # frames to cross
    leftwards: bool
    y: float  # top of the box, fraction of the frame height
    scale: float  # box height, fraction of the frame height


def _background(modality: Modality, size: tuple[int, int], rng: np.random.Generator
                ) -> np.ndarray:
    height, width = size
    if modality == Modality.VISIBLE:
        base = np.empty((height, width, 3), np.uint8)
        base[:] = (150, 160, 150)
        base[int(0.6 * height):] = (110, 120, 125)  # floor
    else:
        base = np.full((height, width, 3), 35, np.uint8)
        base[int(0.6 * height):] = 25
    noise = rng.normal(0, 4, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_stream_pair(out: Path, people: int = 4, seconds: float = 8.0, fps: float = 10.0,
                      size: tuple[int, int] = (240, 426), seed: int = 0) -> StreamPair:
    """Write ``visible.mp4``, ``infrared.mp4`` and ``boxes.jsonl`` into a new folder ``out``."""
    out = Path(out)
    if out.exists():
        raise DeenError(f"{out}: already exists; choose a new folder")
    rng = np.random.default_rng(seed)
    identities = make_people(people, seed)
    frames = max(1, round(seconds * fps))
    crossing = max(4, frames // 2)
    gap = max(1, (frames - crossing) // max(people - 1, 1))
    walks = [_Walk(i, i * gap, crossing, bool(i % 2), 0.12 + 0.08 * (i % 3),
                   0.62 + 0.05 * (i % 2)) for i in range(people)]
    height, width = size
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        writers = {}
        for modality, name in ((Modality.VISIBLE, "visible"), (Modality.INFRARED, "infrared")):
            writer = cv2.VideoWriter(str(scratch / f"{name}.mp4"),
                                     cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not writer.isOpened():
                raise DeenError(f"{scratch / name}.mp4: OpenCV cannot write MPEG-4 video here")
            writers[modality] = writer
        backgrounds = {m: _background(m, size, rng) for m in writers}
        lines = []
        for frame in range(frames):
            for modality, writer in writers.items():
                image = backgrounds[modality].copy()
                boxes, who = [], []
                # The infrared camera sits a little further along the corridor.
                shift = 0.08 * width if modality == Modality.INFRARED else 0.0
                for walk in walks:
                    progress = (frame - walk.start) / walk.duration
                    if not 0 <= progress <= 1:
                        continue
                    box_h = int(walk.scale * height)
                    box_w = box_h // 2
                    travel = (1 - progress) if walk.leftwards else progress
                    x = int(-box_w + travel * (width + box_w) - shift)
                    y = int(walk.y * height)
                    sprite = cv2.resize(render_person(identities[walk.identity], modality, rng),
                                        (box_w, box_h), interpolation=cv2.INTER_AREA)
                    x1, x2 = max(x, 0), min(x + box_w, width)
                    y2 = min(y + box_h, height)
                    if x2 - x1 < box_w // 2:  # mostly out of view: not a detection
                        continue
                    image[y:y2, x1:x2] = sprite[: y2 - y, x1 - x: x2 - x]
                    boxes.append([x1, y, x2, y2, 0.9])
                    who.append(walk.identity)
                writer.write(image)
                if boxes:
                    lines.append(json.dumps({"stream": STREAMS[modality], "frame": frame,
                                             "boxes": boxes, "identities": who}))
        for writer in writers.values():
            writer.release()
        (scratch / "boxes.jsonl").write_text("\n".join(lines) + "\n")
        scratch.rename(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return StreamPair(out / "visible.mp4", out / "infrared.mp4", out / "boxes.jsonl", fps,
                      frames)


def read_truth(boxes: Path) -> dict[tuple[str, int], list[tuple[list[float], int]]]:
    """(stream, frame) → [(box, identity)] from a generated ``boxes.jsonl``."""
    truth = {}
    for line in Path(boxes).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            truth[record["stream"], record["frame"]] = [
                (box[:4], who) for box, who in zip(record["boxes"], record["identities"],
                                                   strict=True)]
    return truth
