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
from deen.fileio import publish_dir, require_new_folder
from deen.modality import Modality
from deen.settings import Section, SettingError, setting
from deen.streams import STREAMS
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
#: How the two cameras are placed: ``overlap``, on one pole watching nearly the same place;
#: ``apart``, at two places a walk apart (no moment when both see one person).
VIEWS = ("overlap", "apart")


@dataclass(frozen=True)
class SceneSettings(Section):
    """A generated visible/infrared camera pair with its truth.

    People walk across at different depths (nearer is lower in the frame and taller), cross
    and hide each other and foreground poles, some alone and some in groups, some stop for a
    while; static clutter, local shadows (visible camera), slow light changes and sensor
    noise. The two cameras run at their own frame rates and clocks (``ir_offset``: the
    infrared camera's first frame is taken that long after the visible camera's).
    """

    views: str = setting("overlap", "overlap: both cameras on one pole watching nearly the "
                                    "same place; apart: at two places a walk apart",
                         choices=VIEWS)
    people: int = setting(12, "people who walk through", at_least=1)
    seconds: float = setting(120.0, "length in seconds", above=0.0)
    fps: float = setting(10.0, "the visible camera's frames per second", above=0.0)
    ir_fps: float = setting(8.0, "the infrared camera's frames per second", above=0.0)
    ir_offset: float = setting(0.15, "seconds between the visible camera's first frame and "
                                     "the infrared camera's (its clock)", at_least=-5.0,
                               at_most=5.0)
    width: int = setting(768, "frame width", at_least=64)
    height: int = setting(576, "frame height", at_least=64)
    min_in_view: int = setting(2, "fewest people walking at once (per camera)", at_least=0)
    max_in_view: int = setting(6, "most people walking at once (per camera)", at_least=1)
    min_height: int = setting(60, "height in pixels of the farthest people", at_least=16)
    max_height: int = setting(250, "height in pixels of the nearest people", at_least=16)
    one_camera: float = setting(0.2, "share of people only one camera sees", at_least=0.0,
                                at_most=1.0)
    groups: float = setting(0.2, "share of arrivals that are two or three people walking "
                                 "together", at_least=0.0, at_most=1.0)
    still: float = setting(0.2, "share of walks that stop a while (3 to 8 s) on the way",
                           at_least=0.0, at_most=1.0)
    transit: float = setting(60.0, "apart: most seconds between leaving one camera's view and "
                                   "entering the other's (at least a twelfth of it)",
                             above=0.0)
    occluders: int = setting(1, "foreground poles that hide people", at_least=0)
    clutter: int = setting(6, "static background objects", at_least=0)
    shadows: int = setting(2, "local shadows in the visible view (a building's, a tree's)",
                           at_least=0)
    light: float = setting(0.2, "amplitude of slow light changes, 0 up to (not including) 1",
                           at_least=0.0)
    noise: float = setting(3.0, "sensor noise, standard deviation in grey levels",
                           at_least=0.0)
    seed: int = setting(0, "seed of the people and their walks", at_least=0)

    def __post_init__(self) -> None:
        super().__post_init__()

        def bad(name: str, problem: str, mentions: tuple[str, ...] = ()) -> SettingError:
            return SettingError(name, getattr(self, name), problem, mentions)

        if self.min_in_view > self.max_in_view:
            raise bad("min_in_view", "must lie between 0 and {max_in_view}", ("max_in_view",))
        if self.max_in_view > self.people:
            raise bad("max_in_view", "cannot exceed {people}", ("people",))
        if self.min_height > self.max_height:
            raise bad("min_height", "must lie between 16 and {max_height}", ("max_height",))
        if self.max_height > 0.9 * self.height:
            raise bad("max_height", "must fit in the frame (at most 90% of {height})",
                      ("height",))
        if self.light >= 1:  # the light swings between 1 - light and 1 + light
            raise bad("light", "is an amplitude under 1 (the light swings by that share)")

    @property
    def frames(self) -> int:
        """The visible camera's frames."""
        return max(1, round(self.seconds * self.fps))

    def stream_timing(self) -> dict[str, tuple[float, float, int]]:
        """Per stream: (frames per second, start on the shared clock, frames)."""
        return {"rgb": (self.fps, 0.0, self.frames),
                "ir": (self.ir_fps, self.ir_offset, max(1, round(self.seconds * self.ir_fps)))}


@dataclass(frozen=True)
class _SceneWalk:
    """One walk of one person across one view (``cameras``: the streams that see it)."""

    person: int  # 0-based
    start: float  # seconds on the shared clock
    moving: float  # seconds to cross, stops not counted
    leftwards: bool
    depth: tuple[float, float]  # 0 = far, 1 = near, at the start and the end
    cameras: frozenset[str]
    offset: float = 0.0  # place in a group, in body widths along the path
    stop_at: float = 0.0  # share of the way where the person stops
    stop: float = 0.0  # seconds stopped (0: never)

    @property
    def end(self) -> float:
        return self.start + self.moving + self.stop

    def progress(self, t: float) -> float | None:
        """Share of the way walked at time ``t``; None outside the walk."""
        if not self.start <= t < self.end:
            return None
        elapsed = t - self.start
        stop_from = self.stop_at * self.moving
        if elapsed > stop_from:
            elapsed = max(stop_from, elapsed - self.stop)
        return elapsed / self.moving

    def depth_at(self, t: float) -> float:
        share = self.progress(t) or 0.0
        return self.depth[0] + share * (self.depth[1] - self.depth[0])


@dataclass(frozen=True)
class Scene:
    """What :func:`write_scene` wrote."""

    root: Path
    settings: SceneSettings
    visible: Path
    infrared: Path
    boxes: Path  # exact boxes for ``deen run --detector``


class _Planner:
    """Walks that keep between ``min_in_view`` and ``max_in_view`` people in each view, the
    least recently seen person first, some in groups and some stopping on the way. With
    views apart, a person walks through one view at a time; one who left a view is away for
    a transit time (a twelfth of ``transit`` up to all of it), then preferred in the other
    view."""

    def __init__(self, settings: SceneSettings, rng: np.random.Generator,
                 one_camera: dict[int, str]) -> None:
        self.s, self.rng, self.one_camera = settings, rng, one_camera
        self.walks: list[_SceneWalk] = []
        self.last_end = dict.fromkeys(range(settings.people), -1e9)
        self.last_view: dict[int, str | None] = dict.fromkeys(range(settings.people))
        self.arrives: dict[int, float] = {}  # person → when they may enter the other view

    def plan(self) -> list[_SceneWalk]:
        s, dt = self.s, 1.0 / self.s.fps
        views = ["both"] if s.views == "overlap" else list(STREAMS.values())
        target = dict.fromkeys(views, s.min_in_view)
        for step in range(s.frames):
            t = step * dt
            for view in views:
                if step % max(1, round(4 * s.fps)) == 0:  # every few seconds, a crowd size
                    target[view] = int(self.rng.integers(s.min_in_view, s.max_in_view + 1))
                active = [w for w in self.walks if w.start <= t < w.end
                          and (view == "both" or view in w.cameras)]
                if len(active) >= s.max_in_view or (len(active) >= target[view]
                                                    and self.rng.random() > 0.02):
                    continue
                room = s.max_in_view - len(active)
                self._arrive(view, t, room)
        return self.walks

    def _free(self, view: str, t: float) -> list[int]:
        busy = {w.person for w in self.walks if w.start <= t < w.end}
        free = [p for p in range(self.s.people) if p not in busy
                and (view == "both" or self.one_camera.get(p, view) == view)]
        if view == "both":
            return free
        # Apart: no one is in two places at once, and whoever left a view walks on for a
        # while (towards the other view, or away and back).
        return [p for p in free if t >= self.arrives.get(p, 0.0)]

    def _arrive(self, view: str, t: float, room: int) -> None:
        free = self._free(view, t)
        if not free:
            return
        due = [p for p in free if self.last_view[p] not in (None, view)]
        pool = due or free
        first = min(pool, key=lambda p: (self.last_end[p], self.rng.random()))
        size = 1
        if self.rng.random() < self.s.groups and room >= 2:
            size = int(self.rng.integers(2, 4))
        others = sorted((p for p in free if p != first),
                        key=lambda p: (self.last_end[p], self.rng.random()))
        members = [first, *others[:min(size, room) - 1]]
        s, rng = self.s, self.rng
        near = float(rng.uniform(0, 1))
        depth = (near, float(np.clip(near + rng.uniform(-0.3, 0.3), 0, 1)))
        height = s.min_height + max(depth) * (s.max_height - s.min_height)
        # About 0.8 body heights a second, as people walk, give or take a fifth.
        speed = 0.8 * height * float(rng.uniform(0.8, 1.2))
        moving = (s.width + height) / speed
        leftwards = bool(rng.random() < 0.5)
        stops = rng.random() < s.still
        stop_at, stop = (float(rng.uniform(0.25, 0.75)), float(rng.uniform(3, 8))) if stops \
            else (0.0, 0.0)
        for rank, person in enumerate(members):
            if view == "both":
                cameras = frozenset([self.one_camera[person]] if person in self.one_camera
                                    else STREAMS.values())
            else:
                cameras = frozenset([view])
            spread = (0.05 * rank * (1 if rng.random() < 0.5 else -1))
            walk = _SceneWalk(person, t, moving, leftwards,
                         tuple(float(np.clip(d + spread, 0, 1)) for d in depth), cameras,
                         offset=-0.9 * rank, stop_at=stop_at, stop=stop)
            self.walks.append(walk)
            self.last_end[person] = walk.end
            self.last_view[person] = view if view != "both" else None
            if view != "both":
                self.arrives[person] = walk.end + float(rng.uniform(s.transit / 12, s.transit))


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


def _shadow_gain(settings: SceneSettings, rng: np.random.Generator) -> np.ndarray:
    """Per-pixel light of the visible view's local shadows (1: none): soft-edged patches on
    the ground and wall, 25-50% darker, that people walk through."""
    gain = np.ones((settings.height, settings.width), np.float32)
    for _ in range(settings.shadows):
        cx = int(rng.integers(0, settings.width))
        cy = int(rng.integers(int(0.35 * settings.height), settings.height))
        axes = (int(rng.integers(settings.width // 10, settings.width // 4)),
                int(rng.integers(settings.height // 10, settings.height // 3)))
        cv2.ellipse(gain, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360,
                    float(rng.uniform(0.5, 0.75)), -1)
    blur = max(3, settings.width // 40) | 1
    return cv2.GaussianBlur(gain, (blur, blur), 0)[..., None]


def write_scene(out: Path, settings: SceneSettings = SceneSettings()) -> Scene:
    """Write a generated camera pair with its truth into the new folder ``out``.

    Layout: ``visible.mp4`` and ``infrared.mp4`` (each at its camera's frame rate); per
    stream ``rgb/`` and ``ir/`` with ``gt/gt.txt`` and ``seqinfo.ini`` (MOTChallenge, with
    ``startTime``: when the stream's first frame was taken on the pair's clock; person id =
    person number, the same in both streams); ``identities.csv`` (stream, id, person: the
    cross-camera key); ``boxes.jsonl`` (the exact boxes, for ``deen run --detector``);
    ``scene.json`` (the settings). A person counts in the truth where at least a quarter of
    them is in view and not hidden; less visible boxes are ignored regions (``gt.txt``
    column 7 = 0).
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
    walks = _Planner(settings, rng, one_camera).plan()
    width, height = settings.width, settings.height
    apart = settings.views == "apart"
    # On one pole the infrared camera looks a little further on; apart, each view is its own.
    shifts = {"rgb": 0.0, "ir": 0.0 if apart else 0.06 * width}
    modalities = {STREAMS[m]: m for m in STREAMS}
    backdrops = {s: _backdrop(m, settings, rng) for s, m in modalities.items()}
    pole_x = [int(rng.integers(width // 8, 7 * width // 8)) for _ in range(settings.occluders)]
    poles = {s: ([int(rng.integers(width // 8, 7 * width // 8))
                  for _ in range(settings.occluders)] if apart else
                 [int(x - shifts[s]) for x in pole_x]) for s in STREAMS.values()}
    shadows = {"rgb": _shadow_gain(settings, rng) if settings.shadows else None, "ir": None}
    # Sensor noise drawn from a bank of frames: drawing a new field each frame would cost
    # more than rendering the scene.
    noise_bank = rng.normal(0, settings.noise, (8, height, width, 3)).astype(np.float32)
    timing = settings.stream_timing()
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        truth: dict[str, list] = {s: [] for s in STREAMS.values()}
        lines = []
        for stream, name in TRUTH_FILES["video"].items():
            fps, start, frames = timing[stream]
            writer = cv2.VideoWriter(str(scratch / name), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                     (width, height))
            if not writer.isOpened():
                raise DeenError(f"{scratch / name}: OpenCV cannot write MPEG-4 video here")
            for frame in range(frames):
                t = start + frame / fps
                light = 1 + settings.light * np.sin(2 * np.pi * t / 40)
                canvas = backdrops[stream].copy()
                owner = np.zeros((height, width), np.int32)
                placed = []
                in_view = [w for w in walks if stream in w.cameras and w.progress(t) is not None]
                # Far people first, so that nearer ones hide them.
                for walk in sorted(in_view, key=lambda w: w.depth_at(t)):
                    depth = walk.depth_at(t)
                    box_h = int(settings.min_height + depth * (settings.max_height
                                                               - settings.min_height))
                    sprite, mask = person_sprite(identities[walk.person], modalities[stream], rng)
                    box_w = box_h // 2
                    sprite = cv2.resize(sprite, (box_w, box_h), interpolation=cv2.INTER_AREA)
                    mask = cv2.resize(mask, (box_w, box_h), interpolation=cv2.INTER_NEAREST)
                    progress = walk.progress(t)
                    travel = 1 - progress if walk.leftwards else progress
                    lead = walk.offset * box_w * (-1 if walk.leftwards else 1)
                    x = int(-box_w + travel * (width + box_w) - shifts[stream] + lead)
                    foot = int(0.45 * height + depth * (0.99 * height - 0.45 * height))
                    y = foot - box_h
                    _paste(canvas, owner, sprite, mask, x, y, walk.person + 1)
                    # The truth box is the person's full extent (hidden parts included).
                    ys, xs = np.nonzero(mask)
                    placed.append((walk.person, x + int(xs.min()), y + int(ys.min()),
                                   int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1,
                                   len(xs)))
                for px in poles[stream]:  # foreground: hides whoever is behind it
                    pole_w = max(6, width // 60)
                    colour = (70, 70, 80) if stream == "rgb" else (30, 30, 30)
                    cv2.rectangle(canvas, (px, 0), (px + pole_w, height), colour, -1)
                    owner[:, max(px, 0):max(px + pole_w, 0)] = 0
                image = canvas.astype(np.float32) * np.float32(light)
                if shadows[stream] is not None:
                    image *= shadows[stream]
                image = np.clip(image + noise_bank[int(rng.integers(len(noise_bank)))], 0, 255)
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
            writer.release()
        for stream, (fps, start, frames) in timing.items():
            (scratch / stream / "gt").mkdir(parents=True)
            write_gt(scratch / stream / "gt" / "gt.txt", truth[stream])
            info = SequenceInfo(stream, frames, fps, width, height, start)
            (scratch / stream / "seqinfo.ini").write_text(info.to_ini())
        key = ["stream,id,person"] + [f"{s},{p + 1},person{p + 1:03d}" for s in truth
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
