"""MOTChallenge files: ground truth (``gt/gt.txt`` + ``seqinfo.ini``, as CVAT exports them)
and tracker results (``frame,id,x,y,w,h,conf,-1,-1,-1``).

Frames are numbered from 1 as in MOTChallenge. A ground-truth row whose 7th column is 0 is
an ignored region (a person too occluded or cut by the frame to count); the class and
visibility columns are kept but not interpreted. Every reading error is one line naming the
file, the line and what is wrong.
"""

from __future__ import annotations

import configparser
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deen.errors import DeenError
from deen.fileio import atomic_path

#: In a ``deen run --tracks-out`` folder whose ids were settled after the run (``deen tracks
#: settle``): what was done, and that its numbers are offline.
SETTLED_MARK = "settled.json"


@dataclass(frozen=True)
class SequenceInfo:
    """``seqinfo.ini``'s [Sequence] section."""

    name: str
    length: int  # frames
    fps: float
    width: int
    height: int
    # When the first frame was taken, in seconds on a clock shared with the other camera of
    # a pair (``startTime``, deen's own key: MOTChallenge tools ignore it); 0 by default.
    start: float = 0.0

    def to_ini(self) -> str:
        start = f"startTime={self.start:g}\n" if self.start else ""
        return (f"[Sequence]\nname={self.name}\nimDir=img1\nframeRate={self.fps:g}\n"
                f"seqLength={self.length}\nimWidth={self.width}\nimHeight={self.height}\n"
                f"imExt=.jpg\n{start}")

    def time_of(self, frame: int) -> float:
        """When (1-based) ``frame`` was taken, on the pair's shared clock."""
        return self.start + (frame - 1) / self.fps

    def frame_at(self, seconds: float) -> int:
        """The (1-based) frame nearest to ``seconds`` on the shared clock, within 1..length."""
        return int(min(max(round((seconds - self.start) * self.fps) + 1, 1), self.length))


@dataclass
class Boxes:
    """Per frame (1-based): the ids, boxes (x, y, w, h) and flags of one file's rows."""

    ids: dict[int, np.ndarray] = field(default_factory=dict)  # frame → N int64
    boxes: dict[int, np.ndarray] = field(default_factory=dict)  # frame → N×4 float64 xywh
    scores: dict[int, np.ndarray] = field(default_factory=dict)  # frame → N (conf column)

    def frames(self) -> list[int]:
        return sorted(self.ids)

    def all_ids(self) -> set[int]:
        return {int(i) for ids in self.ids.values() for i in ids}

    def rows(self) -> int:
        return sum(len(v) for v in self.ids.values())


def read_seqinfo(path: Path) -> SequenceInfo:
    path = Path(path)
    parser = configparser.ConfigParser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise DeenError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        parser.read_string(text)
        section = parser["Sequence"]
        return SequenceInfo(section.get("name", path.parent.name), int(section["seqLength"]),
                            float(section.get("frameRate", "10")),
                            int(section.get("imWidth", "0")), int(section.get("imHeight", "0")),
                            float(section.get("startTime", "0")))
    except (configparser.Error, KeyError, ValueError) as exc:
        raise DeenError(f"{path}: not a MOTChallenge seqinfo.ini with [Sequence] seqLength "
                        f"({type(exc).__name__}: {exc})") from None


def read_boxes(path: Path, length: int | None = None) -> Boxes:
    """Rows ``frame,id,x,y,w,h[,conf,…]`` of a gt or result file; ``length`` (frames in the
    sequence) bounds the frame numbers."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DeenError(f"{path}: cannot read ({exc.strerror})") from None
    grouped: dict[int, list[tuple[int, list[float], float]]] = defaultdict(list)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        try:
            if len(fields) < 6:
                raise ValueError(f"{len(fields)} columns, expected at least 6")
            frame, identity = int(float(fields[0])), int(float(fields[1]))
            box = [float(v) for v in fields[2:6]]
            score = float(fields[6]) if len(fields) > 6 else 1.0
        except ValueError as exc:
            raise DeenError(f"{path}:{number}: expected frame,id,x,y,w,h[,conf,…] ({exc})"
                            ) from None
        if frame < 1 or (length is not None and frame > length):
            bound = f"1..{length}" if length is not None else ">= 1"
            raise DeenError(f"{path}:{number}: frame {frame} is outside the sequence ({bound})")
        if box[2] <= 0 or box[3] <= 0 or not np.isfinite(box).all():
            raise DeenError(f"{path}:{number}: box {box} has no area")
        grouped[frame].append((identity, box, score))
    out = Boxes()
    for frame, rows in grouped.items():
        ids = [r[0] for r in rows]
        if len(set(ids)) != len(ids):
            raise DeenError(f"{path}: frame {frame} has id {max(ids, key=ids.count)} twice")
        out.ids[frame] = np.array(ids, np.int64)
        out.boxes[frame] = np.array([r[1] for r in rows], np.float64).reshape(-1, 4)
        out.scores[frame] = np.array([r[2] for r in rows], np.float64)
    return out


def write_gt(path: Path, rows: list[tuple[int, int, float, float, float, float, int, float]]
             ) -> None:
    """Ground-truth rows (frame, id, x, y, w, h, counted 1|0, visibility), class 1."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{f},{i},{x:.1f},{y:.1f},{w:.1f},{h:.1f},{c},1,{v:.2f}\n"
                               for f, i, x, y, w, h, c, v in rows))


def result_line(frame: int, identity: int, box: np.ndarray, score: float = 1.0) -> str:
    """One tracker-result row from an x1, y1, x2, y2 box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (f"{frame},{identity},{x1:.1f},{y1:.1f},{x2 - x1:.1f},{y2 - y1:.1f},{score:.3f},"
            "-1,-1,-1\n")
