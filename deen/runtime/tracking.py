"""Per-stream multi-object tracking (ByteTrack's association, SORT's Kalman filter).

Why hand-written: the maintained Python trackers do not install beside this project's
dependencies. ``trackers`` (Roboflow's ByteTrack) requires the GUI build ``opencv-python``,
which overwrites the ``cv2`` of ``opencv-python-headless``; ``norfair`` requires NumPy < 2;
``boxmot`` requires torchvision, whose build must match the pinned CPU build of PyTorch
(``scripts/setup.sh``) exactly. ByteTrack's association is
short (two IoU matchings with SciPy's assignment solver), so it is written out here, following
Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box" (2022).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from deen.runtime.detect import Detections
from deen.settings import Section, setting

#: Horizontal bands of a person's box whose mean colours make a track's look.
LOOK_BANDS = 6
#: Colour distance (mean of the bands' Lab differences, in Lab units) that counts as wholly
#: unlike.
LOOK_SCALE = 40.0
#: Weight of lightness beside the two colour axes: shade and light change it most.
LIGHTNESS = 0.3


def looks(image: np.ndarray, boxes: np.ndarray, hidden: float = 0.2) -> np.ndarray:
    """Each box's look (N×LOOK_BANDS×3): the mean Lab colour of its central half in
    ``LOOK_BANDS`` horizontal bands, head to feet. A few microseconds a box: cheap enough
    for every detection of every frame, and it tells a red shirt from a blue one (or, in
    infrared, a warm body from a cool coat) where two people's boxes cross. Unknown (NaN)
    for a box too small, or one that a box as near or nearer (its foot as low or lower in
    the picture) covers by ``hidden`` of its area or more: its pixels there may be the other
    person's."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.full((len(boxes), LOOK_BANDS, 3), np.nan, np.float32)
    height, width = image.shape[:2]
    for n, (x1, y1, x2, y2) in enumerate(boxes):
        # Feet about level: which one is in front is not known, so either may be hidden.
        nearer = boxes[(boxes[:, 3] >= y2 - 0.05 * (y2 - y1)) & (np.arange(len(boxes)) != n)]
        if len(nearer):
            w = np.clip(np.minimum(nearer[:, 2], x2) - np.maximum(nearer[:, 0], x1), 0, None)
            h = np.clip(np.minimum(nearer[:, 3], y2) - np.maximum(nearer[:, 1], y1), 0, None)
            if (w * h).sum() >= hidden * max((x2 - x1) * (y2 - y1), 1e-9):
                continue
        quarter = (x2 - x1) / 4
        left, right = int(max(x1 + quarter, 0)), int(min(np.ceil(x2 - quarter), width))
        top, bottom = int(max(y1, 0)), int(min(np.ceil(y2), height))
        if right - left < 2 or bottom - top < LOOK_BANDS:
            continue
        small = cv2.resize(image[top:bottom, left:right], (1, LOOK_BANDS),
                           interpolation=cv2.INTER_AREA)
        out[n] = cv2.cvtColor(small, cv2.COLOR_BGR2Lab).reshape(LOOK_BANDS, 3)
    return out


def look_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance 0..1 of every look in ``a`` (N×B×3) to every look in ``b`` (M×B×3); 0 where
    either is unknown (NaN), so that a missing look never decides."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    weight = np.array([LIGHTNESS, 1.0, 1.0], np.float32)
    d = np.linalg.norm((a[:, None] - b[None]) * weight, axis=3).mean(axis=2) / LOOK_SCALE
    return np.nan_to_num(np.clip(d, 0.0, 1.0), nan=0.0).astype(np.float32)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N×4 x1y1x2y2) with every box in ``b`` (M×4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    overlap = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return overlap / np.maximum(area_a[:, None] + area_b[None, :] - overlap, 1e-9)


class BoxKalman:
    """Constant-velocity Kalman filter on (cx, cy, w, h); noise scales with the box height."""

    def __init__(self, box: np.ndarray) -> None:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        w, h = box[2] - box[0], box[3] - box[1]
        self.x = np.array([cx, cy, w, h, 0, 0, 0, 0], np.float64)
        s = max(h, 1.0)
        self.P = np.diag(np.square([0.1 * s, 0.1 * s, 0.1 * s, 0.1 * s,
                                    0.5 * s, 0.5 * s, 0.5 * s, 0.5 * s]))
        self.H = np.eye(4, 8)

    def predict(self, steps: int = 1) -> None:
        """Move the box ``steps`` frames on (frames a live camera dropped count too)."""
        s = max(self.x[3], 1.0)
        q = steps * np.square([0.05 * s] * 4 + [0.01 * s] * 4)
        move = np.eye(8)
        move[:4, 4:] = steps * np.eye(4)
        self.x = move @ self.x
        self.P = move @ self.P @ move.T + np.diag(q)

    def update(self, box: np.ndarray) -> None:
        z = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2,
                      box[2] - box[0], box[3] - box[1]])
        s = max(self.x[3], 1.0)
        r = np.diag(np.square([0.05 * s] * 4))
        innovation = self.H @ self.P @ self.H.T + r
        gain = self.P @ self.H.T @ np.linalg.inv(innovation)
        self.x = self.x + gain @ (z - self.H @ self.x)
        self.P = (np.eye(8) - gain @ self.H) @ self.P

    @property
    def box(self) -> np.ndarray:
        cx, cy, w, h = self.x[:4]
        w, h = max(w, 1.0), max(h, 1.0)
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)


class BodySize:
    """A track's running body height and width-to-height ratio, learnt from its whole
    detections, to fit the boxes that are not whole.

    A moving-region detector sees a person only where they differ from the background:
    legs the colour of the floor leave a box on the upper body, and two people crossing
    make one region as wide as both. The person's height and shape change slowly, so a
    detection much shorter or much wider than the track's learnt size is a part or a merge;
    the track's box is then the learnt size, placed on the detection's edge that agrees with
    the track's predicted box (the top for missing legs; the prediction's centre for a merge).
    """

    SETTLED = 3  # whole detections before the size is trusted
    RATE = 0.3  # weight of each new whole detection
    SHORT = 0.75  # shorter than this share of the learnt height: a part
    WIDE = 1.5  # wider than this many learnt widths: a merge

    def __init__(self) -> None:
        self.height, self.aspect, self.seen = 0.0, 0.0, 0

    def fit(self, box: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, bool]:
        """``box`` fitted to the learnt size, and whether it was refitted; a whole box
        updates the learnt size."""
        w, h = float(box[2] - box[0]), float(box[3] - box[1])
        if self.seen >= self.SETTLED:
            width = self.aspect * self.height
            short = h < self.SHORT * self.height
            wide = w > self.WIDE * width and w > 0.6 * h
            if short or wide:
                x1, y1, x2, y2 = (float(v) for v in box)
                if short:
                    if abs(y1 - predicted[1]) <= abs(y2 - predicted[3]):
                        y2 = y1 + self.height
                    else:
                        y1 = y2 - self.height
                if wide:
                    centre = float(np.clip((predicted[0] + predicted[2]) / 2, x1 + width / 2,
                                           x2 - width / 2))
                    x1, x2 = centre - width / 2, centre + width / 2
                return np.array([x1, y1, x2, y2], np.float32), True
        rate = 1.0 / (self.seen + 1) if self.seen < self.SETTLED else self.RATE
        self.height += rate * (h - self.height)
        self.aspect += rate * (w / max(h, 1.0) - self.aspect)
        self.seen += 1
        return box, False


@dataclass
class Track:
    track_id: int
    box: np.ndarray  # last box (the detection when matched, else the prediction)
    score: float
    first_frame: int
    last_seen: int  # frame index of the last matched detection
    hits: int = 1
    confirmed: bool = False
    kalman: BoxKalman | None = field(default=None, repr=False)
    size: BodySize = field(default_factory=BodySize, repr=False)
    fitted: bool = False  # the box is the learnt size fitted to a part or a merge
    seen_box: np.ndarray | None = field(default=None, repr=False)  # the last matched box
    look: np.ndarray | None = field(default=None, repr=False)  # running look (see looks())


@dataclass(frozen=True)
class TrackUpdate:
    active: list[Track]  # confirmed tracks matched in this frame (their box is current)
    started: list[Track]  # confirmed in this frame
    ended: list[Track]  # removed in this frame (lost for too long)


#: A box this close to the picture's left or right edge (a share of its width) belongs to
#: someone who may be walking out of view.
SIDE = 0.02


def at_side(box: np.ndarray, width: int) -> bool:
    """Whether ``box`` (x1, y1, x2, y2) reaches the picture's left or right edge."""
    return bool(box[0] <= SIDE * width or box[2] >= (1 - SIDE) * width)


@dataclass(frozen=True)
class TrackingSettings(Section):
    """Per-stream tracking (:class:`ByteTracker`)."""

    high_threshold: float = setting(0.5, "detections scoring this much start and lead tracks",
                                    at_least=0.0, at_most=1.0)
    low_threshold: float = setting(0.1, "weaker detections only keep existing tracks alive",
                                   at_least=0.0, at_most=1.0)
    match_iou: float = setting(0.3, "least overlap of a detection with a track's predicted box",
                               at_least=0.0, at_most=1.0)
    # 3, not ByteTrack's 2: the moving-region detector's stray boxes (a shadow, a part)
    # start fewer tracks; benchmarks/README.md, "People one behind the other".
    min_hits: int = setting(3, "detections before a track is confirmed (and reported)",
                            at_least=1)
    recover: float = setting(0.5, "a strong detection that overlaps no track continues the "
                                  "lost track whose predicted centre is nearest, within this "
                                  "many of its heights, if their heights agree (0: off)",
                             at_least=0.0)
    max_lost: int = setting(30, "frames without a detection before a track ends", at_least=1)
    fit_boxes: bool = setting(True, "fit a part or a merge of people to the track's learnt "
                                    "body size")
    appearance: float = setting(1.0, "weight of the boxes' colours (a cheap look, not the "
                                     "model's) against their overlap when detections are "
                                     "given to tracks (0: overlap alone)", at_least=0.0)
    look_rate: float = setting(0.2, "weight of each whole detection's colours in a track's "
                                    "running look", above=0.0, at_most=1.0)


class ByteTracker:
    """ByteTrack: high-score boxes match tracks first, low-score boxes then keep the
    remaining tracks alive (occlusions lower scores); a track is confirmed after
    ``min_hits`` matches and removed after ``max_lost`` frames without one. With
    ``fit_boxes``, a matched detection that is a part or a merge is fitted to the track's
    learnt body size (:class:`BodySize`) before it updates the track. Given the frame and
    a non-zero ``appearance``, each assignment also weighs how unlike a detection's colours
    are to the track's running look (:func:`looks`), so that where two people's predicted
    boxes overlap both detections, each track keeps its own person; the overlap alone still
    decides whether a pair may match at all."""

    def __init__(self, settings: TrackingSettings = TrackingSettings()) -> None:
        self.high, self.low = settings.high_threshold, settings.low_threshold
        self.match_iou, self.fit_boxes = settings.match_iou, settings.fit_boxes
        self.min_hits, self.max_lost = settings.min_hits, settings.max_lost
        self.recover = settings.recover
        self.appearance, self.look_rate = settings.appearance, settings.look_rate
        self.tracks: list[Track] = []
        self._next_id = 1
        self._frame: int | None = None  # the last frame's index

    def _associate(self, tracks: list[Track], boxes: np.ndarray, seen: np.ndarray
                   ) -> tuple[list[tuple[int, int]], list[int], list[int]]:
        """Detections to tracks by the overlap with their predicted boxes, less
        ``appearance`` times how unlike their looks are (``seen``: the boxes' looks); a pair
        needs ``match_iou`` of overlap either way."""
        iou = iou_matrix(np.array([t.box for t in tracks]).reshape(-1, 4), boxes)
        if iou.size == 0:
            return [], list(range(len(tracks))), list(range(len(boxes)))
        score = iou - self.appearance * self._unlike(tracks, seen) if self.appearance else iou
        rows, cols = linear_sum_assignment(-score)
        pairs = [(r, c) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= self.match_iou]
        matched_t, matched_d = {r for r, _ in pairs}, {c for _, c in pairs}
        return (pairs, [i for i in range(len(tracks)) if i not in matched_t],
                [j for j in range(len(boxes)) if j not in matched_d])

    @staticmethod
    def _unlike(tracks: list[Track], seen: np.ndarray) -> np.ndarray:
        """How unlike each track's running look is each box's (0..1; 0 when unknown)."""
        mine = np.stack([t.look if t.look is not None
                         else np.full((LOOK_BANDS, 3), np.nan, np.float32) for t in tracks])
        return look_distance(mine, seen)

    def _nearest(self, tracks: list[Track], boxes: np.ndarray
                 ) -> list[tuple[int, int]]:
        """Pairs of ``tracks`` and ``boxes`` by the distance of their centres in track
        heights, within ``recover`` and with heights within a factor of 1.5. IoU finds no
        overlap when a small person moves more than their own width between the frames a
        live camera dropped, or when a moving-region detector's box jumps from a part of
        the person to the whole."""
        if not tracks or not len(boxes) or not self.recover:
            return []
        mine = np.array([t.box for t in tracks]).reshape(-1, 4)
        height = np.maximum(mine[:, 3] - mine[:, 1], 1.0)
        centre = (mine[:, :2] + mine[:, 2:]) / 2
        theirs = (boxes[:, :2] + boxes[:, 2:]) / 2
        distance = np.linalg.norm(centre[:, None] - theirs[None], axis=2) / height[:, None]
        ratio = (boxes[None, :, 3] - boxes[None, :, 1]) / height[:, None]
        cost = np.where((ratio >= 1 / 1.5) & (ratio <= 1.5), distance, 1e6)
        rows, cols = linear_sum_assignment(cost)
        return [(r, c) for r, c in zip(rows, cols, strict=True) if cost[r, c] <= self.recover]

    def update(self, detections: Detections, frame: int, width: int | None = None,
               image: np.ndarray | None = None) -> TrackUpdate:
        """One frame's detections (``frame``: its index in the stream, so dropped frames
        count; ``width``: the picture's, so that tracks last seen at its side are not
        recovered; ``image``: the frame, for the boxes' looks when ``appearance`` is on)."""
        steps = 1 if self._frame is None else max(1, frame - self._frame)
        self._frame = frame
        for track in self.tracks:
            track.kalman.predict(steps)
            track.box = track.kalman.box
        high = detections.scores >= self.high
        low = ~high & (detections.scores >= self.low)
        started: list[Track] = []

        # Unknown (NaN) looks when there is no frame or the looks are off: they never decide.
        seen = looks(image, detections.boxes) if image is not None and self.appearance \
            else np.full((len(detections), LOOK_BANDS, 3), np.nan, np.float32)

        def matched(track: Track, box: np.ndarray, score: float, look: np.ndarray) -> None:
            if self.fit_boxes:
                box, track.fitted = track.size.fit(box, track.box)
            if not track.fitted and not np.isnan(look).any():
                # Only a whole box shows the track's own person alone.
                track.look = look.copy() if track.look is None else \
                    track.look + self.look_rate * (look - track.look)
            track.kalman.update(box)
            track.box, track.score, track.last_seen = box.astype(np.float32), score, frame
            track.seen_box = track.box
            track.hits += 1
            if not track.confirmed and track.hits >= self.min_hits:
                track.confirmed = True
                started.append(track)

        high_boxes, high_scores = detections.boxes[high], detections.scores[high]
        high_looks = seen[high]
        pairs, loose, new = self._associate(self.tracks, high_boxes, high_looks)
        for t, d in pairs:
            matched(self.tracks[t], high_boxes[d], float(high_scores[d]), high_looks[d])
        remaining = [self.tracks[t] for t in loose]
        low_boxes, low_scores = detections.boxes[low], detections.scores[low]
        low_looks = seen[low]
        pairs, still, _ = self._associate(remaining, low_boxes, low_looks)
        for t, d in pairs:
            matched(remaining[t], low_boxes[d], float(low_scores[d]), low_looks[d])
        # A track last seen at the picture's side has most likely walked out; someone
        # walking in there is someone else.
        lost = [remaining[t] for t in still if remaining[t].confirmed
                and not (width and remaining[t].seen_box is not None
                         and at_side(remaining[t].seen_box, width))]
        recovered = self._nearest(lost, high_boxes[new])
        for t, d in recovered:
            matched(lost[t], high_boxes[new[d]], float(high_scores[new[d]]),
                    high_looks[new[d]])
        taken = {new[d] for _, d in recovered}
        for d in [d for d in new if d not in taken]:
            track = Track(self._next_id, high_boxes[d].astype(np.float32), float(high_scores[d]),
                          frame, frame, kalman=BoxKalman(high_boxes[d]),
                          seen_box=high_boxes[d].astype(np.float32))
            if not np.isnan(high_looks[d]).any():
                track.look = high_looks[d].copy()
            if self.fit_boxes:
                track.size.fit(track.box, track.box)  # the first whole detection
            self._next_id += 1
            if self.min_hits <= 1:
                track.confirmed = True
                started.append(track)
            self.tracks.append(track)
        ended = [t for t in self.tracks if frame - t.last_seen > self.max_lost
                 or (not t.confirmed and t.last_seen < frame)]
        self.tracks = [t for t in self.tracks if t not in ended]
        active = [t for t in self.tracks if t.confirmed and t.last_seen == frame]
        return TrackUpdate(active, started, [t for t in ended if t.confirmed])

    def close(self) -> list[Track]:
        """End every confirmed track (the stream ended)."""
        ended = [t for t in self.tracks if t.confirmed]
        self.tracks = []
        return ended
