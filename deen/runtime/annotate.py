"""The annotated side-by-side view: boxes, track ids, cross-camera matches, gallery names.

Matched tracks share a colour and a label in both views. The video is written to a temporary
file and renamed into place when the run ends, so an interrupted run leaves no half file.
"""

from __future__ import annotations

import abc
import colorsys
import os
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from deen.errors import DeenError
from deen.modality import Modality
from deen.runtime.outputs import Output
from deen.runtime.pipeline import PipelineSnapshot
from deen.runtime.sources import Frame

#: The box of a track whose person is not decided yet (BGR).
HELD_COLOUR = (160, 160, 160)


def _colour(key: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((key * 0.618) % 1.0, 0.85, 1.0)
    return int(255 * b), int(255 * g), int(255 * r)


def render(snapshot: PipelineSnapshot, frames: Mapping[Modality, np.ndarray | None],
           height: int = 360,
           panels: Mapping[Modality, tuple[int, int]] | None = None) -> np.ndarray:
    """Visible view on the left, infrared on the right, with the snapshot's tracks drawn on
    them. Each view is scaled to ``height`` keeping its aspect, or to exactly the (width,
    height) that ``panels`` gives for it (a video keeps one layout for its whole length)."""
    out = []
    for modality in (Modality.VISIBLE, Modality.INFRARED):
        image = frames.get(modality)
        if panels is not None:
            width, panel_height = panels[modality]
        else:
            shape = image.shape if image is not None else (height, height * 16 // 9)
            width, panel_height = round(shape[1] * height / shape[0]), height
        if image is None:
            image = np.zeros((panel_height, width, 3), np.uint8)
        sx, sy = width / image.shape[1], panel_height / image.shape[0]
        panel = cv2.resize(image, (width, panel_height))
        for track in snapshot.tracks[modality]:
            x1, y1, x2, y2 = (track.box * [sx, sy, sx, sy]).astype(int)
            if track.held:  # its person is not decided yet: a thin grey box, no id
                cv2.rectangle(panel, (x1, y1), (x2, y2), HELD_COLOUR, 1)
                continue
            # A person's colour and label are the same in both streams and every visit.
            partner = track.partner
            colour = _colour(track.person_id)
            label = f"P{track.person_id} {'V' if modality == Modality.VISIBLE else 'I'}" \
                    f"{track.track_id}"
            if partner is not None:
                label += f"={'I' if modality == Modality.VISIBLE else 'V'}{partner}"
            if track.name is not None:
                label += f" {track.name}"
            cv2.rectangle(panel, (x1, y1), (x2, y2), colour, 2)
            cv2.putText(panel, label, (x1, max(y1 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        colour, 1, cv2.LINE_AA)
        out.append(panel)
    return np.concatenate(out, axis=1)


class RenderedOutput(Output):
    """A sink of the annotated side-by-side view: keeps each stream's newest frame (a round
    may hold one stream's only), renders the pair with the round's snapshot and hands the
    picture to :meth:`show`."""

    def __init__(self) -> None:
        self.latest: dict[Modality, np.ndarray | None] = {}

    def __call__(self, snapshot: PipelineSnapshot,
                 frames: Mapping[Modality, Frame | None]) -> None:
        for modality, frame in frames.items():
            if frame is not None:
                self.latest[modality] = frame.image
        self.show(render(snapshot, self.latest))

    @abc.abstractmethod
    def show(self, image: np.ndarray) -> None:
        """Output one rendered picture."""


class AnnotatedVideo(RenderedOutput):
    """The run as an MPEG-4 video at the visible stream's rate, in ``path``, renamed into
    place by :meth:`close`; :meth:`discard` deletes the partial file.

    One picture per frame of the visible stream, whatever the number of rounds: a round
    without a new visible frame (only the infrared one) adds none, and a visible frame the
    pipeline had no time for (dropped) repeats the picture before it, so that the video
    lasts as long as the run and plays at the source's speed. The infrared side shows its
    newest frame."""

    name = "video"

    def __init__(self, path: Path, fps: float, height: int = 360,
                 frame_sizes: Mapping[Modality, tuple[int, int] | None] | None = None) -> None:
        """``frame_sizes``: each stream's (width, height) as its source declares it; when
        both are known the layout is fixed now and every round is written, a stream with
        no frame yet drawn as a black panel of its size."""
        super().__init__()
        self.path, self.fps, self.height = Path(path), fps, height
        self.panels: dict[Modality, tuple[int, int]] | None = None
        self.size: tuple[int, int] | None = None
        self.partial = self.path.with_name(f".{self.path.name}.partial{self.path.suffix}")
        self.writer: cv2.VideoWriter | None = None
        self.written = -1  # the visible stream's last frame index written
        if frame_sizes and all(frame_sizes.get(m) for m in (Modality.VISIBLE,
                                                             Modality.INFRARED)):
            self.panels = {m: self._panel(*frame_sizes[m]) for m in frame_sizes}

    def _panel(self, width: int, height: int) -> tuple[int, int]:
        scaled = round(width * self.height / height)
        return scaled + scaled % 2, self.height  # codecs want even sizes

    def __call__(self, snapshot: PipelineSnapshot,
                 frames: Mapping[Modality, Frame | None]) -> None:
        """The video's layout is fixed by the sources' declared sizes, or else by the first
        frame of each stream (rounds before both have delivered one are then not written);
        every picture is drawn at that layout (a stream that changes resolution is scaled
        into its panel)."""
        for modality, frame in frames.items():
            if frame is not None:
                self.latest[modality] = frame.image
        visible = frames.get(Modality.VISIBLE)
        if visible is None:
            return
        if self.panels is None:
            if any(self.latest.get(m) is None for m in (Modality.VISIBLE, Modality.INFRARED)):
                return
            self.panels = {m: self._panel(image.shape[1], image.shape[0])
                           for m, image in self.latest.items()}
        picture = render(snapshot, self.latest, panels=self.panels)
        repeats = 1 if self.written < 0 else max(1, visible.index - self.written)
        for _ in range(repeats):
            self.show(picture)
        self.written = visible.index

    def show(self, image: np.ndarray) -> None:
        size = (image.shape[1], image.shape[0])
        if self.writer is None:
            self.writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*"mp4v"),
                                          self.fps, size)
            if not self.writer.isOpened():
                raise DeenError(f"{self.path}: cannot write video here")
            self.size = size
        if size != self.size:  # OpenCV would drop it without a word
            raise DeenError(f"{self.path}: picture of {size[0]}x{size[1]} in a "
                            f"{self.size[0]}x{self.size[1]} video")
        self.writer.write(image)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            os.replace(self.partial, self.path)
            self.writer = None

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        self.partial.unlink(missing_ok=True)


def display_available() -> bool:
    """A live window needs a display and an OpenCV built with a GUI backend."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return False
    return "GUI" in cv2.getBuildInformation() and "NONE" not in \
        cv2.getBuildInformation().split("GUI:")[1].split("\n")[0].upper()


class LiveWindow(RenderedOutput):
    """The annotated view in an OpenCV window (needs :func:`display_available`)."""

    name = "window"

    def __init__(self, title: str = "deen run") -> None:
        super().__init__()
        self.title = title

    def show(self, image: np.ndarray) -> None:
        cv2.imshow(self.title, image)
        cv2.waitKey(1)

    def close(self) -> None:
        cv2.destroyWindow(self.title)

    def discard(self) -> None:
        """Nothing is kept: the window just closes."""
        self.close()
