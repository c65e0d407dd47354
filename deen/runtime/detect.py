"""Person detectors behind one interface: ``detect(image, frame)`` → :class:`Detections`.

- :class:`HogDetector`: OpenCV's built-in HOG people detector; needs no download.
- :class:`YoloDetector`: a user's YOLO-family person detector (ONNX or OpenVINO IR;
  YOLOv5, v8/11 and end-to-end output layouts), both streams' frames in one call.
- :class:`MotionDetector`: moving regions of a fixed camera (OpenCV's MOG2 background
  model) shaped like a standing person; finds people down to about 40 px tall;
- :class:`JsonlBoxes`: boxes from a JSON-lines file, so an existing detector can feed the
  pipeline (and the generated demo streams carry their ground truth this way).
"""

from __future__ import annotations

import abc
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import cv2
import numpy as np

from deen.errors import DeenError, ParameterError
from deen.settings import Section, setting


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # N×4 float32 x1, y1, x2, y2 in frame pixels
    scores: np.ndarray  # N float32

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.scores)


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, score_threshold: float,
                        iou_threshold: float) -> Detections:
    """OpenCV's NMS on x1y1x2y2 boxes; keeps boxes scoring at least ``score_threshold``."""
    if len(boxes) == 0:
        return Detections.empty()
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float32)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.astype(float).tolist(), score_threshold,
                            iou_threshold)
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return Detections(boxes[keep].astype(np.float32), scores[keep].astype(np.float32))


class Detector(abc.ABC):
    name: str

    @abc.abstractmethod
    def detect(self, image: np.ndarray, stream: str, frame: int) -> Detections:
        """People in one BGR frame; ``stream`` and ``frame`` (its number within its file)
        identify it for detectors that read precomputed boxes."""

    def detect_many(self, frames: Sequence[tuple[np.ndarray, str, int]]) -> list[Detections]:
        """People in several frames (a round's frames of both streams), in order. Detectors
        that batch (a YOLO model) run them in one call; the others one by one."""
        return [self.detect(image, stream, frame) for image, stream, frame in frames]


class HogDetector(Detector):
    """OpenCV's default people detector (Dalal–Triggs HOG + linear SVM).

    Frames are scaled to ``width`` pixels first: HOG's 64×128 window finds people at least
    ~128 px tall at that scale (~205 px in a 768-wide frame at the default). The default is
    set for real time on 2 cores (benchmarks/README.md, "HOG working width"); a round
    detects in both streams' frames.
    Scores are the SVM margins squashed to 0..1.
    """

    name = "hog"

    def __init__(self, width: int = 480, score_threshold: float = 0.3,
                 iou_threshold: float = 0.45) -> None:
        self.width, self.score_threshold, self.iou_threshold = width, score_threshold, \
            iou_threshold
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, image: np.ndarray, stream: str, frame: int) -> Detections:
        scale = min(1.0, self.width / image.shape[1])
        small = cv2.resize(image, None, fx=scale, fy=scale) if scale < 1 else image
        rects, weights = self.hog.detectMultiScale(small, winStride=(8, 8), padding=(8, 8),
                                                   scale=1.05)
        if len(rects) == 0:
            return Detections.empty()
        rects = np.asarray(rects, np.float32) / scale
        boxes = np.column_stack([rects[:, :2], rects[:, :2] + rects[:, 2:]])
        scores = 1 / (1 + np.exp(-np.asarray(weights, np.float32).reshape(-1)))
        return non_max_suppression(boxes, scores, self.score_threshold, self.iou_threshold)


class MotionDetector(Detector):
    """People on a fixed camera as the regions that move: a MOG2 background model per
    stream (OpenCV), cleaned by morphology; each region whose shape fits a standing person
    (taller than wide, at least ``min_height`` pixels) is a detection, scored by how much of
    its box moved.

    Frames are scaled to ``width`` pixels first (the model needs no detail, and a person
    50 px tall in a 768-wide frame is still 25 px at 384). A region split into parts (a
    person's head, body and legs against a background of similar colour) is joined when the
    parts stack vertically; a region as wide as two or three people side by side (a group
    walking together) is split at the columns where least of it moves (``split_groups``).
    Each stream learns how tall a person standing at each row of the picture is
    (:class:`GroundHeight`); a region much taller than that is people one behind the other
    and is split into the one in front and the one behind (``split_behind``), and a region
    much shorter is a part of someone, scored too low to start a track. People who stand
    still fade into the background after about ``history`` frames; they are found again
    when they move.
    """

    name = "motion"

    def __init__(self, width: int = 384, min_height: int = 36, history: int = 300,
                 var_threshold: float = 25.0, split_groups: bool = True,
                 split_behind: bool = True) -> None:
        self.width, self.min_height, self.split_groups = width, min_height, split_groups
        self.history, self.var_threshold = history, var_threshold
        self.split_behind = split_behind
        self.models: dict[str, cv2.BackgroundSubtractor] = {}
        self.heights: dict[str, GroundHeight] = {}
        # Speckle noise is removed with an upright 1×3 opening: a square one also removes
        # legs, which are 2–3 px wide at the working scale for people 60–100 px tall.
        self.open_kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (1, 3))
        self.close_kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 9))

    def foreground(self, image: np.ndarray, stream: str) -> tuple[np.ndarray, float]:
        """The cleaned moving-pixel mask at the working scale, and that scale."""
        scale = min(1.0, self.width / image.shape[1])
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) \
            if scale < 1 else image
        model = self.models.get(stream)
        if model is None:
            model = cv2.createBackgroundSubtractorMOG2(self.history, self.var_threshold,
                                                       detectShadows=False)
            self.models[stream] = model
        mask = model.apply(small)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.open_kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self.close_kernel)
        return mask, scale

    def detect(self, image: np.ndarray, stream: str, frame: int) -> Detections:
        mask, scale = self.foreground(image, stream)
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        boxes = [[x, y, x + w, y + h] for x, y, w, h, area in stats[1:]
                 if area >= 6 and h >= 2]
        min_h = self.min_height * scale
        boxes = _stack_parts(np.array(boxes, np.float32).reshape(-1, 4), min_h)
        if self.split_groups:
            boxes = _split_side_by_side(boxes, mask, min_h)
        ground = self.heights.setdefault(stream, GroundHeight())
        if self.split_behind:
            boxes = _split_one_behind(boxes, mask, ground, min_h)
        keep = []
        for x1, y1, x2, y2 in boxes:
            w, h = x2 - x1, y2 - y1
            if h >= min_h and 1.2 <= h / max(w, 1) <= 6:
                fill = float((mask[int(y1):int(y2), int(x1):int(x2)] > 0).mean())
                keep.append((x1, y1, x2, y2, fill))
                if _person_shaped([x1, y1, x2, y2], min_h) and h <= 4.5 * w:
                    ground.add(float(y2), float(h))
        if not keep:
            return Detections.empty()
        found = np.array(keep, np.float32)
        scores = np.clip(0.4 + found[:, 4], 0, 1)  # a third filled or more: above ByteTrack's 0.5
        # Much shorter than a person standing there: a part of one (legs the floor's colour,
        # a piece left by a split) or clutter. Such a box keeps a track alive but starts none.
        expected = np.array([ground.height_at(float(y2)) or 0.0 for y2 in found[:, 3]])
        short = found[:, 3] - found[:, 1] < SHORT * expected
        scores[short] = np.minimum(scores[short], PART_SCORE)
        return Detections(found[:, :4] / scale, scores)


PERSON_WIDTH = 0.4  # a standing person's width over their height, about
SHORT = 0.7  # a box shorter than this share of a person standing there is a part
PART_SCORE = 0.3  # its score: under ByteTrack's 0.5, so it starts no track


def _person_shaped(box: list[float] | np.ndarray, min_h: float) -> bool:
    """Tall and narrow enough to be a whole standing person on its own."""
    w, h = box[2] - box[0], box[3] - box[1]
    return h >= min_h and h >= 2.2 * w


def _another_person(a: list[float], b: list[float], min_h: float) -> bool:
    """``a`` is a whole person and ``b`` too tall to be a missing part of them (a head or a
    hat is; a second person or a pair of people further up the frame is not)."""
    return min_h > 0 and _person_shaped(a, min_h) and b[3] - b[1] >= 0.5 * (a[3] - a[1])


def _stack_parts(boxes: np.ndarray, min_h: float = 0.0) -> np.ndarray:
    """Join boxes that overlap mostly horizontally and touch or nearly touch vertically
    (parts of one person: head, body and legs against a background of similar colour),
    until none do. A whole person and a box above or below them too tall to be a part of
    them (someone walking behind, further up the frame) stay apart."""
    boxes = [list(b) for b in boxes]
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                overlap_x = min(a[2], b[2]) - max(a[0], b[0])
                narrower = min(a[2] - a[0], b[2] - b[0])
                gap_y = max(a[1], b[1]) - min(a[3], b[3])
                height = max(a[3], b[3]) - min(a[1], b[1])
                if overlap_x >= 0.5 * narrower and gap_y <= 0.15 * height and \
                        not _another_person(a, b, min_h) and not _another_person(b, a, min_h):
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]),
                                max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return np.array(boxes, np.float32).reshape(-1, 4)


def _split_side_by_side(boxes: np.ndarray, mask: np.ndarray, min_h: float) -> np.ndarray:
    """Split a region too wide for one person (people walking side by side merge into one
    blob) into as many parts as person widths fit in it (a standing person is about 0.4 of
    their height wide), each cut at the column near its even position where least of the
    region moves, and fit each part's box to its own moving pixels."""
    out = []
    for x1, y1, x2, y2 in boxes.astype(int):
        w, h = x2 - x1, y2 - y1
        parts = int(w / (PERSON_WIDTH * h) + 0.25) if h >= min_h else 1
        parts = 1 if parts > 3 else parts  # wider: a change of light, not a group
        if parts < 2:
            out.append([x1, y1, x2, y2])
            continue
        region = mask[y1:y2, x1:x2] > 0
        profile = region.sum(0)
        cuts, reach = [0], max(1, int(0.15 * w / parts))
        for k in range(1, parts):
            centre = round(k * w / parts)
            near = profile[centre - reach:centre + reach + 1]
            cuts.append(centre - reach + int(np.argmin(near)))
        cuts.append(w)
        pieces = []
        for a, b in itertools.pairwise(cuts):
            rows = np.flatnonzero(region[:, a:b].any(1))
            cols = np.flatnonzero(region[:, a:b].any(0))
            if len(rows) and len(cols):
                pieces.append([x1 + a + cols[0], y1 + rows[0], x1 + a + cols[-1] + 1,
                               y1 + rows[-1] + 1])
        # People side by side are each nearly as tall as the group and person-shaped; a
        # person with a shadow or a swinging bag splits into a person and a scrap instead.
        if all(p[3] - p[1] >= 0.7 * h and p[3] - p[1] >= 1.5 * (p[2] - p[0]) for p in pieces):
            out += pieces
        else:
            out.append([x1, y1, x2, y2])
    return np.array(out, np.float32).reshape(-1, 4)


class GroundHeight:
    """How tall a person standing with their feet at a given row is, on one fixed camera:
    people stand on the ground, so their height in pixels is about a straight line in the
    row of their feet (nearer people are lower in the picture and taller). Learnt from the
    detector's own boxes that are shaped like one person (a robust straight-line fit that
    drops the boxes far off the line: groups, parts), refitted every ``refit`` boxes over
    the newest ``keep``; known once ``least`` boxes, whose feet span at least a tenth of the
    way down to the lowest of them, agree with the line within ``spread`` of their height."""

    def __init__(self, keep: int = 600, least: int = 60, refit: int = 30,
                 spread: float = 0.12) -> None:
        self.keep, self.least, self.refit, self.spread = keep, least, refit, spread
        self.feet: list[float] = []
        self.heights: list[float] = []
        self.line: tuple[float, float] | None = None  # height = line[0] + line[1] * foot
        self.added = 0

    def add(self, foot: float, height: float) -> None:
        self.feet.append(foot)
        self.heights.append(height)
        if len(self.feet) > self.keep:
            del self.feet[0], self.heights[0]
        self.added += 1
        if len(self.feet) >= self.least and self.added % self.refit == 0:
            self.line = self._fit()

    def height_at(self, foot: float) -> float | None:
        """The height of a person whose feet are at row ``foot``; None while not known."""
        if self.line is None:
            return None
        return self.line[0] + self.line[1] * foot

    def _fit(self) -> tuple[float, float] | None:
        """(offset, slope) of the line, or None when the boxes do not give one."""
        feet, heights = np.array(self.feet), np.array(self.heights)
        if np.ptp(feet) < 0.1 * max(float(feet.max()), 1.0):
            return None
        keep = np.ones(len(feet), bool)
        for _ in range(3):
            slope, offset = np.polyfit(feet[keep], heights[keep], 1)
            off = np.abs(heights - (offset + slope * feet)) / heights
            keep = off <= max(2 * float(np.median(off)), 0.05)
        if keep.sum() < self.least // 2 or float(np.median(off[keep])) > self.spread:
            return None
        return float(offset), float(slope)


def _split_one_behind(boxes: np.ndarray, mask: np.ndarray, ground: GroundHeight,
                      min_h: float, tall: float = 1.2, wide: float = 0.6) -> np.ndarray:
    """Split a region taller than a person standing at its foot row (by ``tall``) into the
    person in front, as tall as the ground says from the region's foot, and one behind them
    further up the picture, whose feet the front one hides: from the region's top down to
    where a person that tall would stand, as wide as the moving pixels above the front
    person's head. People walking one behind the other make such regions."""
    out = []
    for x1, y1, x2, y2 in boxes:
        if ground.line is None:
            out.append([x1, y1, x2, y2])
            continue
        offset, slope = ground.line
        expected = offset + slope * y2
        if expected < min_h or (y2 - y1) < tall * expected:
            out.append([x1, y1, x2, y2])
            continue
        front_top = y2 - expected
        # Feet of the one behind: the row where a person whose head is at the region's top
        # stands (y - (offset + slope * y) = y1).
        foot = (y1 + offset) / max(1 - slope, 1e-6)
        region = mask[int(y1):int(front_top), int(x1):int(x2)] > 0
        cols = np.flatnonzero(region.any(0))
        # Above the front one's head must be more than a head: a person behind shows
        # their head and shoulders, as wide as ``wide`` of a person there.
        if not len(cols) or foot <= y1 or foot > y2 or \
                cols[-1] + 1 - cols[0] < wide * PERSON_WIDTH * (foot - y1):
            out.append([x1, y1, x2, y2])
            continue
        front = mask[int(front_top):int(y2), int(x1):int(x2)] > 0
        front_cols = np.flatnonzero(front.any(0))
        fx1, fx2 = (x1 + front_cols[0], x1 + front_cols[-1] + 1) if len(front_cols) else \
            (x1, x2)
        out.append([fx1, front_top, fx2, y2])
        out.append([x1 + cols[0], y1, x1 + cols[-1] + 1, foot])
    return np.array(out, np.float32).reshape(-1, 4)


class YoloLayout(str, Enum):
    """The output layouts of the YOLO families' exports (first output, one image's rows).

    - ``CHANNELS_FIRST``: ``(4+C)×N``, box centre/size then per-class scores, no objectness
      (YOLOv8 and YOLO11 as ultralytics exports them).
    - ``OBJECTNESS``: ``N×(5+C)``, box centre/size, objectness, class scores (YOLOv5, v7).
    - ``END_TO_END``: ``N×6``, corners x1 y1 x2 y2, score, class, already suppressed
      (YOLOv10, and ultralytics exports with ``nms=True``).
    """

    CHANNELS_FIRST = "v8"
    OBJECTNESS = "v5"
    END_TO_END = "e2e"


def guess_layout(shape: tuple[int, ...]) -> YoloLayout:
    """The layout of one image's output rows from their shape.

    Channels are fewer than candidates in every real export (84×8400, 25200×85), so the
    shorter axis is the channel axis. Six columns and at most 1000 rows is an end-to-end
    export's top-k (300 by default): a single-class YOLOv5 has thousands of candidate rows.
    """
    rows, columns = shape
    if rows < columns:
        return YoloLayout.CHANNELS_FIRST
    if columns == 6 and rows <= 1000:
        return YoloLayout.END_TO_END
    return YoloLayout.OBJECTNESS


def decode_yolo(rows: np.ndarray, layout: YoloLayout, person_class: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes (x1 y1 x2 y2, model pixels) and scores from one image's output rows."""
    if layout == YoloLayout.END_TO_END:
        keep = rows[:, 5].round() == person_class
        return rows[keep, :4], rows[keep, 4]
    if layout == YoloLayout.CHANNELS_FIRST:
        rows = rows.T
        scores = rows[:, 4 + person_class]
    else:
        scores = rows[:, 4] * rows[:, 5 + person_class]
    centre, size = rows[:, :2], rows[:, 2:4]
    return np.column_stack([centre - size / 2, centre + size / 2]), scores


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the model's input: scaled by ``scale``, then padded by
    ``left`` and ``top`` pixels (grey 114, as the YOLO families train)."""

    scale: float
    left: int
    top: int

    @classmethod
    def apply(cls, image: np.ndarray, height: int, width: int) -> tuple[np.ndarray, Letterbox]:
        scale = min(height / image.shape[0], width / image.shape[1])
        resized = cv2.resize(image, (round(image.shape[1] * scale),
                                     round(image.shape[0] * scale)))
        canvas = np.full((height, width, 3), 114, np.uint8)
        top, left = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
        canvas[top:top + resized.shape[0], left:left + resized.shape[1]] = resized
        return canvas, cls(scale, left, top)

    def undo(self, boxes: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
        boxes = (boxes - [self.left, self.top, self.left, self.top]) / self.scale
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, image_shape[1])
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, image_shape[0])
        return boxes


class YoloDetector(Detector):
    """A YOLO-family person detector exported to ONNX (run by ONNX Runtime) or OpenVINO IR.

    One image input ``B×3×H×W`` (RGB, 0..1, letterboxed; an export with dynamic H and W
    gets ``default_size``, the families' training size). Both streams' frames go through in
    one call when the batch axis is dynamic or at least 2; a model exported for batch 1 is
    called once per frame. The output layout (see
    :class:`YoloLayout`) is read from the output's shape unless ``layout`` is given. Class
    ``person_class`` (COCO: 0) is kept.
    """

    name = "yolo"

    def __init__(self, path: Path, score_threshold: float = 0.4, iou_threshold: float = 0.45,
                 person_class: int = 0, layout: YoloLayout | None = None,
                 default_size: int = 640) -> None:
        self.path, self.person_class, self.layout = Path(path), person_class, layout
        self.score_threshold, self.iou_threshold = score_threshold, iou_threshold
        shape = self._open_openvino() if self.path.suffix == ".xml" else self._open_onnx()
        if len(shape) != 4 or shape[1] not in (3, None):
            raise DeenError(f"{self.path}: expected one image input of shape B×3×H×W, got "
                            f"{list(shape)}")
        fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
        self.batch = fixed[0]  # None: any batch
        self.size = (fixed[2] or default_size, fixed[3] or default_size)

    def _open_onnx(self) -> list:
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises several types for an unreadable model
            raise DeenError(f"{self.path}: not a loadable ONNX detector ({exc})") from None
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise DeenError(f"{self.path}: expected one image input, got "
                            f"{[i.name for i in inputs]}")
        name = inputs[0].name
        self._infer = lambda blob: session.run(None, {name: blob})[0]
        return list(inputs[0].shape)

    def _open_openvino(self) -> list:
        import openvino as ov

        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses
            raise DeenError(f"{self.path}: not a loadable OpenVINO detector ({exc})") from None
        if len(model.inputs) != 1:
            raise DeenError(f"{self.path}: expected one image input, got "
                            f"{len(model.inputs)}")
        shape = [d.get_length() if d.is_static else None
                 for d in model.inputs[0].get_partial_shape()]
        compiled = core.compile_model(model, "CPU")
        output = compiled.outputs[0]
        self._infer = lambda blob: compiled(blob)[output]
        return shape

    def detect(self, image: np.ndarray, stream: str, frame: int) -> Detections:
        return self.detect_many([(image, stream, frame)])[0]

    def detect_many(self, frames: Sequence[tuple[np.ndarray, str, int]]) -> list[Detections]:
        height, width = self.size
        boxed = [Letterbox.apply(image, height, width) for image, _, _ in frames]
        blob = np.stack([canvas[:, :, ::-1].transpose(2, 0, 1) for canvas, _ in boxed])
        blob = blob.astype(np.float32) / 255
        step = self.batch or len(frames)
        raw = np.concatenate([np.asarray(self._infer(blob[i:i + step]))
                              for i in range(0, len(frames), step)]) if step else blob[:0]
        if raw.ndim != 3 or raw.shape[0] != len(frames):
            raise DeenError(f"{self.path}: output of shape {raw.shape} is not B×(4+C)×N, "
                            "B×N×(5+C) or B×N×6")
        found = []
        for rows, (image, _, _), (_, box) in zip(raw, frames, boxed, strict=True):
            layout = self.layout or guess_layout(rows.shape)
            boxes, scores = decode_yolo(rows, layout, self.person_class)
            found.append(non_max_suppression(box.undo(boxes, image.shape), scores,
                                             self.score_threshold, self.iou_threshold))
        return found


class JsonlBoxes(Detector):
    """Boxes from a file of lines ``{"stream": "rgb"|"ir", "frame": N, "boxes": [[x1, y1,
    x2, y2, score], …]}``; frames without a line have no people."""

    name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.boxes: dict[tuple[str, int], Detections] = {}
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise DeenError(f"{path}: cannot read boxes file ({exc.strerror})") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = (str(record["stream"]), int(record["frame"]))
                values = np.asarray(record["boxes"], dtype=np.float32).reshape(-1, 5)
            except (ValueError, KeyError, TypeError) as exc:
                raise DeenError(f"{path}:{number}: expected {{\"stream\", \"frame\", "
                                f"\"boxes\": [[x1, y1, x2, y2, score], …]}} ({exc})") from None
            self.boxes[key] = Detections(values[:, :4].copy(), values[:, 4].copy())

    def detect(self, image: np.ndarray, stream: str, frame: int) -> Detections:
        return self.boxes.get((stream, frame), Detections.empty())


@dataclass(frozen=True)
class DetectorKind:
    """One row of :data:`DETECTORS`: a kind of person detector ``deen run --detector`` opens.

    ``name`` selects it by name; a kind with ``suffixes`` is also selected by a file of one
    of those suffixes (a model or a boxes file), which ``open`` then receives as a path."""

    name: str
    description: str  # one phrase for help texts
    open: Callable[[str], Detector]  # the --detector text (a path for file kinds) → detector
    suffixes: tuple[str, ...] = ()


#: The detectors ``deen run`` knows, by name: one row per kind (:func:`register`). The
#: command line's help and :func:`open_detector` read this table.
DETECTORS: dict[str, DetectorKind] = {}


def register(kind: DetectorKind) -> DetectorKind:
    """Add (or replace) a row of :data:`DETECTORS`."""
    DETECTORS[kind.name] = kind
    return kind


register(DetectorKind("motion", "moving regions of a fixed camera shaped like a standing "
                      "person (the default; finds people down to about 40 px tall)",
                      lambda _: MotionDetector()))
register(DetectorKind("hog", "OpenCV's HOG people detector (people over about 200 px tall)",
                      lambda _: HogDetector()))
register(DetectorKind("yolo", "a YOLO-family person detector exported to ONNX or OpenVINO "
                      "(YOLOv5, v8, 11 or end-to-end outputs; COCO class 0): give the file",
                      lambda path: YoloDetector(Path(path)), (".onnx", ".xml")))
register(DetectorKind("boxes", "boxes precomputed elsewhere, a JSON-lines file of "
                      '{"stream", "frame", "boxes"} lines: give the file',
                      lambda path: JsonlBoxes(Path(path)), (".jsonl", ".json")))


def detector_help() -> str:
    """What ``--detector`` takes, from :data:`DETECTORS`."""
    return "; ".join(f"{kind.name}: {kind.description}" for kind in DETECTORS.values())


def open_detector(spec: str) -> Detector:
    """The detector ``spec`` names: a row of :data:`DETECTORS` by name, or a file whose
    suffix a row takes."""
    kind = DETECTORS.get(spec)
    if kind is not None and not kind.suffixes:
        return kind.open(spec)
    path = Path(spec)
    takers = [k for k in DETECTORS.values() if path.suffix.lower() in k.suffixes]
    named = [k.name for k in DETECTORS.values() if not k.suffixes]
    files = [s for k in DETECTORS.values() for s in k.suffixes]
    if not takers:
        raise ParameterError("detector", spec, f"expected {', '.join(named)} or a file "
                             f"({', '.join(files)})")
    if not path.is_file():
        raise ParameterError("detector", spec, f"no such file (and not {', '.join(named)})")
    return takers[0].open(spec)


@dataclass(frozen=True)
class DetectionSettings(Section):
    """Which person detector each stream's frames go through (:data:`DETECTORS`)."""

    detector: str = setting("motion", "a detector's name or a detector file (deen run --help "
                                      "lists them)")
