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

from deen.errors import BadValueError, DeenError
from deen.fileio import publish_dir, require_new_folder
from deen.modality import Modality
from deen.runtime.streams import STREAMS
from deen.synthetic import make_people, render_person

__all__ = ["STREAMS", "Scene", "SceneSettings", "StreamPair", "read_truth", "write_scene",
           "write_stream_pair"]


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
    out = require_new_folder(out)
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
        publish_dir(scratch, out)
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


# ---------------------------------------------------------------------------------------
# Fixed-camera scenes with MOTChallenge ground truth (``deen data scene``).

#: The files of a scene besides each stream's rgb/ or ir/ truth folder: the videos by stream
#: name, the cross-camera key, the settings and the exact boxes.
TRUTH_FILES = {"video": {"rgb": "visible.mp4", "ir": "infrared.mp4"},
               "identities": "identities.csv", "settings": "scene.json",
               "boxes": "boxes.jsonl"}


@dataclass(frozen=True)
class SceneSettings:
    """A generated camera pair on a pole: people walk across at different depths (nearer
    is lower in the frame and taller), cross and hide each other, some are seen by one camera
    only; static clutter, slow light changes and sensor noise.

    ``min_height``/``max_height``: person heights in pixels from the farthest to the
    nearest path. ``min_in_view``/``max_in_view``: how many people walk at once.
    ``one_camera``: the share of people only one camera sees. ``occluders``: foreground
    poles that hide whoever walks behind them.
    """

    people: int = 10
    seconds: float = 120.0
    fps: float = 10.0
    width: int = 768
    height: int = 576
    min_in_view: int = 2
    max_in_view: int = 4
    min_height: int = 60
    max_height: int = 250
    one_camera: float = 0.2
    occluders: int = 1
    clutter: int = 6
    light: float = 0.2
    noise: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(name: str, problem: str, mentions: tuple[str, ...] = ()) -> BadValueError:
            return BadValueError(name, getattr(self, name), problem, mentions)

        for name in ("people", "max_in_view", "width", "height"):
            if getattr(self, name) < 1:
                raise bad(name, "must be at least 1")
        if not 0 <= self.min_in_view <= self.max_in_view:
            raise bad("min_in_view", "must lie between 0 and {max_in_view}", ("max_in_view",))
        if self.max_in_view > self.people:
            raise bad("max_in_view", "cannot exceed {people}", ("people",))
        if not (self.seconds > 0 and self.fps > 0):  # NaN is not positive either
            raise bad("fps" if self.seconds > 0 else "seconds", "must be positive")
        if not 16 <= self.min_height <= self.max_height:
            raise bad("min_height", "must lie between 16 and {max_height}", ("max_height",))
        if self.max_height > 0.9 * self.height:
            raise bad("max_height", "must fit in the frame (at most 90% of {height})",
                      ("height",))
        if not 0 <= self.one_camera <= 1:
            raise bad("one_camera", "is a share: 0..1")
        for name in ("occluders", "clutter", "noise", "light", "seed"):
            if not getattr(self, name) >= 0:
                raise bad(name, "must not be negative")
        if not self.light < 1:  # the light swings between 1 - light and 1 + light
            raise bad("light", "is an amplitude under 1 (the light swings by that share)")

    @property
    def frames(self) -> int:
        return max(1, round(self.seconds * self.fps))


@dataclass(frozen=True)
class _Path:
    """One walk of one person across the scene."""

    person: int  # 0-based
    start: int  # first frame
    end: int  # frame after the last
    leftwards: bool
    depth: tuple[float, float]  # 0 = far, 1 = near, at the start and the end
    cameras: frozenset[str]  # streams that see it


@dataclass(frozen=True)
class Scene:
    """What :func:`write_scene` wrote."""

    root: Path
    settings: SceneSettings
    visible: Path
    infrared: Path
    boxes: Path  # exact boxes for ``deen run --detector``


def _plan_walks(settings: SceneSettings, rng: np.random.Generator,
                one_camera: dict[int, str]) -> list[_Path]:
    """Walks that keep between ``min_in_view`` and ``max_in_view`` people in view, each
    person at most once at a time, the least recently seen person first."""
    frames, width = settings.frames, settings.width
    walks: list[_Path] = []
    last_end = dict.fromkeys(range(settings.people), -1)
    target = settings.min_in_view
    for t in range(frames):
        active = [w for w in walks if w.start <= t < w.end]
        if t % max(1, round(4 * settings.fps)) == 0:  # every few seconds, a new crowd size
            target = int(rng.integers(settings.min_in_view, settings.max_in_view + 1))
        if len(active) >= settings.max_in_view or (len(active) >= target and
                                                   rng.random() > 0.02):
            continue
        busy = {w.person for w in active}
        free = [p for p in range(settings.people) if p not in busy]
        if not free:
            continue
        person = min(free, key=lambda p: (last_end[p], rng.random()))
        near = float(rng.uniform(0, 1))
        depth = (near, float(np.clip(near + rng.uniform(-0.3, 0.3), 0, 1)))
        height = settings.min_height + max(depth) * (settings.max_height - settings.min_height)
        # About 0.8 body heights a second, as people walk, give or take a fifth.
        speed = 0.8 * height / settings.fps * float(rng.uniform(0.8, 1.2))
        duration = max(4, round((width + height) / speed))
        cameras = frozenset([one_camera[person]] if person in one_camera else STREAMS.values())
        walks.append(_Path(person, t, t + duration, bool(rng.random() < 0.5), depth, cameras))
        last_end[person] = t + duration
    return walks


def _paste(canvas: np.ndarray, owner: np.ndarray, sprite: np.ndarray, mask: np.ndarray,
           x: int, y: int, label: int) -> None:
    """Paste ``sprite`` where ``mask`` is set at (x, y), clipped to the canvas, and mark
    those pixels as ``label``'s in ``owner``."""
    h, w = mask.shape
    x1, y1 = max(x, 0), max(y, 0)
    x2, y2 = min(x + w, canvas.shape[1]), min(y + h, canvas.shape[0])
    if x2 <= x1 or y2 <= y1:
        return
    region = mask[y1 - y:y2 - y, x1 - x:x2 - x] > 0
    canvas[y1:y2, x1:x2][region] = sprite[y1 - y:y2 - y, x1 - x:x2 - x][region]
    owner[y1:y2, x1:x2][region] = label


def _backdrop(modality: Modality, settings: SceneSettings, rng: np.random.Generator
              ) -> np.ndarray:
    """A static scene: wall, floor and ``clutter`` objects (benches, bins, signs; in the
    infrared view some are warm)."""
    image = _background(modality, (settings.height, settings.width), rng)
    for _ in range(settings.clutter):
        w = int(rng.integers(settings.width // 40, settings.width // 8))
        h = int(rng.integers(settings.height // 30, settings.height // 5))
        x = int(rng.integers(0, settings.width - w))
        y = int(rng.integers(int(0.25 * settings.height), settings.height - h))
        if modality == Modality.VISIBLE:
            colour = tuple(int(c) for c in rng.integers(40, 220, 3))
        else:
            level = int(rng.choice([15, 20, 60, 120]))
            colour = (level, level, level)
        cv2.rectangle(image, (x, y), (x + w, y + h), colour, -1)
    return image


def write_scene(out: Path, settings: SceneSettings = SceneSettings()) -> Scene:
    """Write a generated camera pair with its truth into the new folder ``out``.

    Layout: ``visible.mp4`` and ``infrared.mp4``; per stream ``rgb/`` and ``ir/`` with
    ``gt/gt.txt`` and ``seqinfo.ini`` (MOTChallenge; person id = person number, the same
    in both streams); ``identities.csv`` (stream, id, person: the cross-camera key);
    ``boxes.jsonl`` (the exact boxes, for ``deen run --detector``); ``scene.json`` (the
    settings). A person counts in the truth where at least a quarter of them is in view
    and not hidden; less visible boxes are ignored regions (``gt.txt`` column 7 = 0).
    """
    import dataclasses

    from deen.mot import SequenceInfo, write_gt
    from deen.synthetic import person_sprite

    out = require_new_folder(out)
    rng = np.random.default_rng(settings.seed)
    identities = make_people(settings.people, settings.seed)
    one_camera = {int(p): str(rng.choice(list(STREAMS.values())))
                  for p in rng.permutation(settings.people)[
                      :round(settings.one_camera * settings.people)]}
    walks = _plan_walks(settings, rng, one_camera)
    width, height = settings.width, settings.height
    shifts = {"rgb": 0.0, "ir": 0.06 * width}  # the infrared camera looks a little further on
    modalities = {STREAMS[m]: m for m in STREAMS}
    backdrops = {s: _backdrop(m, settings, rng) for s, m in modalities.items()}
    poles = [int(rng.integers(width // 8, 7 * width // 8)) for _ in range(settings.occluders)]
    # Sensor noise drawn from a bank of frames: drawing a new field each frame would cost
    # more than rendering the scene.
    noise_bank = rng.normal(0, settings.noise, (8, height, width, 3)).astype(np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        writers = {}
        for stream, name in TRUTH_FILES["video"].items():
            writer = cv2.VideoWriter(str(scratch / name), cv2.VideoWriter_fourcc(*"mp4v"),
                                     settings.fps, (width, height))
            if not writer.isOpened():
                raise DeenError(f"{scratch / name}: OpenCV cannot write MPEG-4 video here")
            writers[stream] = writer
        truth: dict[str, list] = {s: [] for s in writers}
        lines = []
        for frame in range(settings.frames):
            light = 1 + settings.light * np.sin(2 * np.pi * frame / (40 * settings.fps))
            for stream, writer in writers.items():
                canvas = backdrops[stream].copy()
                owner = np.zeros((height, width), np.int32)
                placed = []
                visible_walks = [w for w in walks if w.start <= frame < w.end
                                 and stream in w.cameras]
                # Far people first, so that nearer ones hide them.
                for walk in sorted(visible_walks, key=lambda w: _depth_at(w, frame)):
                    depth = _depth_at(walk, frame)
                    box_h = int(settings.min_height + depth * (settings.max_height
                                                               - settings.min_height))
                    sprite, mask = person_sprite(identities[walk.person], modalities[stream], rng)
                    box_w = box_h // 2
                    sprite = cv2.resize(sprite, (box_w, box_h), interpolation=cv2.INTER_AREA)
                    mask = cv2.resize(mask, (box_w, box_h), interpolation=cv2.INTER_NEAREST)
                    progress = (frame - walk.start) / (walk.end - walk.start)
                    travel = 1 - progress if walk.leftwards else progress
                    x = int(-box_w + travel * (width + box_w) - shifts[stream])
                    foot = int(0.45 * height + depth * (0.99 * height - 0.45 * height))
                    y = foot - box_h
                    _paste(canvas, owner, sprite, mask, x, y, walk.person + 1)
                    # The truth box is the person's full extent (hidden parts included).
                    ys, xs = np.nonzero(mask)
                    placed.append((walk.person, x + int(xs.min()), y + int(ys.min()),
                                   int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1,
                                   len(xs)))
                for pole in poles:  # foreground: hides whoever is behind it
                    px = int(pole - shifts[stream])
                    pole_w = max(6, width // 60)
                    colour = (70, 70, 80) if stream == "rgb" else (30, 30, 30)
                    cv2.rectangle(canvas, (px, 0), (px + pole_w, height), colour, -1)
                    owner[:, max(px, 0):max(px + pole_w, 0)] = 0
                image = np.clip(canvas.astype(np.float32) * np.float32(light)
                                + noise_bank[int(rng.integers(len(noise_bank)))], 0, 255)
                writer.write(image.astype(np.uint8))
                boxes, who = [], []
                for person, x, y, w, h, area in placed:
                    seen = int((owner == person + 1).sum())
                    visibility = seen / max(area, 1)
                    x1, y1 = max(x, 0), max(y, 0)
                    x2, y2 = min(x + w, width), min(y + h, height)
                    if x2 - x1 < 2 or y2 - y1 < 2:
                        continue
                    counted = int(visibility >= 0.25 and (x2 - x1) >= 0.5 * w)
                    truth[stream].append((frame + 1, person + 1, x1, y1, x2 - x1, y2 - y1,
                                          counted, visibility))
                    if counted:
                        boxes.append([x1, y1, x2, y2, 0.9])
                        who.append(person + 1)
                if boxes:
                    lines.append(json.dumps({"stream": stream, "frame": frame, "boxes": boxes,
                                             "identities": who}))
        for writer in writers.values():
            writer.release()
        for stream in writers:
            (scratch / stream / "gt").mkdir(parents=True)
            write_gt(scratch / stream / "gt" / "gt.txt", truth[stream])
            info = SequenceInfo(stream, settings.frames, settings.fps, width, height)
            (scratch / stream / "seqinfo.ini").write_text(info.to_ini())
        key = ["stream,id,person"] + [f"{s},{p + 1},person{p + 1:03d}" for s in writers
                                     for p in range(settings.people)
                                     if p not in one_camera or one_camera[p] == s]
        (scratch / TRUTH_FILES["identities"]).write_text("\n".join(key) + "\n")
        (scratch / TRUTH_FILES["boxes"]).write_text("\n".join(lines) + "\n")
        (scratch / TRUTH_FILES["settings"]).write_text(
            json.dumps({"generator": "deen data scene", **dataclasses.asdict(settings)},
                       indent=2) + "\n")
        publish_dir(scratch, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Scene(out, settings, out / TRUTH_FILES["video"]["rgb"],
                 out / TRUTH_FILES["video"]["ir"], out / TRUTH_FILES["boxes"])


def _depth_at(walk: _Path, frame: int) -> float:
    progress = (frame - walk.start) / max(walk.end - walk.start, 1)
    return walk.depth[0] + progress * (walk.depth[1] - walk.depth[0])
