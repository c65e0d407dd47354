"""A stream's light level, so that a person looks the same whatever the light when seen.

A fixed camera's picture grows brighter and darker as a whole: clouds, the time of day, the
camera's own exposure and gain control (a thermal camera's AGC above all). The embedding
sees a brighter person as another person: one who comes back under other light is not
recognised, or is taken for someone else. :class:`Exposure` measures each frame's overall
level against the stream's first frame that is not blank (the median, over a small grey
thumbnail, of frame ÷ reference: people and other moving things are a minority of the
pixels, so the median is the background's change) and :meth:`Exposure.level` divides a
crop by it, so that crops are embedded as if under that frame's light.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

#: The thumbnail the level is measured on (width, height): enough pixels for a steady
#: median, a fraction of a millisecond per frame.
THUMBNAIL = (64, 48)


@dataclass
class Exposure:
    """One stream's light level relative to its first frame that is not blank.

    Pixels near black or white in the reference are left out (their ratio is noise or is
    clipped), and the level is held within ``[least, most]``: beyond that the picture has
    changed too much for one number to describe it."""

    least: float = 0.5
    most: float = 2.0
    dark: float = 16.0  # reference pixels at or below this (of 255) are not measured
    bright: float = 240.0  # … nor those at or above this
    reference: np.ndarray | None = field(default=None, repr=False)

    def measure(self, image: np.ndarray) -> float:
        """The frame's level (1.0: as bright as the reference). The first frame with
        enough pixels neither near black nor near white becomes the reference (a camera's
        first frames can be blank while it starts)."""
        grey = _thumbnail(image)
        usable = None if self.reference is None else \
            (self.reference > self.dark) & (self.reference < self.bright)
        if usable is None or usable.sum() < 0.1 * usable.size:
            self.reference = grey
            return 1.0
        ratio = float(np.median(grey[usable] / self.reference[usable]))
        return float(np.clip(ratio, self.least, self.most))

    @staticmethod
    def level(crop: np.ndarray, gain: float) -> np.ndarray:
        """``crop`` as it would look under the reference light (divided by ``gain``)."""
        if abs(gain - 1.0) < 1e-3:
            return crop
        return np.clip(crop.astype(np.float32) / np.float32(gain), 0, 255).astype(np.uint8)


def _thumbnail(image: np.ndarray) -> np.ndarray:
    small = cv2.resize(image, THUMBNAIL, interpolation=cv2.INTER_AREA)
    if small.ndim == 3:
        small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return small.astype(np.float32)
