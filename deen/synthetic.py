"""Generated person images of both modalities: real-looking inputs without a dataset.

An identity is a fixed set of traits (height, build, clothing colours, a bag); its visible
rendering shows the colours, its infrared rendering shows the same silhouette as warm (bright)
skin and clothing on a cool background, as a thermal camera would. Used to verify exports on
inputs that are not zeros or noise, and by ``deen demo``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from deen.modality import Modality

IMAGE_HEIGHT, IMAGE_WIDTH = 256, 128  # a typical detector crop, resized by preprocess


@dataclass(frozen=True)
class Identity:
    height: float  # fraction of the image the person spans
    width: float  # shoulder width, fraction of the image width
    shirt: tuple[int, int, int]  # BGR
    trousers: tuple[int, int, int]
    warmth: float  # infrared brightness of the body, 0..1
    bag: bool
    stripes: int  # horizontal stripes on the shirt, 0..3: seen in both modalities
    shorts: bool  # bare lower legs: coloured skin in visible, hot in infrared
    hat: bool

    @classmethod
    def random(cls, rng: np.random.Generator) -> Identity:
        return cls(
            height=float(rng.uniform(0.78, 0.95)),
            width=float(rng.uniform(0.38, 0.55)),
            shirt=tuple(int(c) for c in rng.integers(30, 256, 3)),
            trousers=tuple(int(c) for c in rng.integers(20, 200, 3)),
            warmth=float(rng.uniform(0.65, 1.0)),
            bag=bool(rng.random() < 0.5),
            stripes=int(rng.integers(0, 4)),
            shorts=bool(rng.random() < 0.5),
            hat=bool(rng.random() < 0.5),
        )


def render_person(identity: Identity, modality: Modality, rng: np.random.Generator) -> np.ndarray:
    """One H×W×3 uint8 BGR image of ``identity`` (pose, background, noise vary per call)."""
    h, w = IMAGE_HEIGHT, IMAGE_WIDTH
    infrared = modality == Modality.INFRARED
    background = rng.integers(10, 60) if infrared else rng.integers(60, 200)
    image = np.full((h, w, 3), background, dtype=np.uint8)
    image = cv2.GaussianBlur(
        np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8), (9, 9), 0
    )
    _draw_figure(image, None, identity, infrared, rng)
    noise = rng.normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def person_sprite(identity: Identity, modality: Modality, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``identity`` drawn alone, for pasting into a scene: an H×W×3 BGR image and its H×W
    uint8 mask (255 on the person, 0 elsewhere); pose and noise vary per call."""
    infrared = modality == Modality.INFRARED
    image = np.zeros((IMAGE_HEIGHT, IMAGE_WIDTH, 3), np.uint8)
    mask = np.zeros((IMAGE_HEIGHT, IMAGE_WIDTH), np.uint8)
    _draw_figure(image, mask, identity, infrared, rng)
    noise = rng.normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), mask


def _draw_figure(image: np.ndarray, mask: np.ndarray | None, identity: Identity,
                 infrared: bool, rng: np.random.Generator) -> None:
    """The person's shapes onto ``image`` (and, filled with 255, onto ``mask``)."""
    h, w = image.shape[:2]
    cx = w // 2 + int(rng.integers(-8, 9))
    top = int(h * (1 - identity.height) / 2) + int(rng.integers(-6, 7))
    body = int(h * identity.height)
    half = int(w * identity.width / 2)

    def tone(bgr: tuple[int, int, int], heat: float) -> tuple[int, int, int]:
        if not infrared:
            return bgr
        level = int(255 * identity.warmth * heat)
        return (level, level, level)

    def paint(shape, *args, colour, thickness) -> None:  # type: ignore[no-untyped-def]
        shape(image, *args, colour, thickness)
        if mask is not None:
            shape(mask, *args, 255, thickness)

    skin = tone((90, 140, 200), 1.0)
    head_r = max(body // 14, 6)
    paint(cv2.circle, (cx, top + head_r), head_r, colour=skin, thickness=-1)
    torso_top, torso_bottom = top + 2 * head_r, top + int(body * 0.55)
    paint(cv2.rectangle, (cx - half, torso_top), (cx + half, torso_bottom),
          colour=tone(identity.shirt, 0.8), thickness=-1)
    stripe_colour = tone(tuple(255 - c for c in identity.shirt), 0.35)
    for k in range(identity.stripes):
        y = torso_top + (k + 1) * (torso_bottom - torso_top) // (identity.stripes + 1)
        paint(cv2.rectangle, (cx - half, y - 3), (cx + half, y + 3), colour=stripe_colour,
              thickness=-1)
    if identity.hat:
        paint(cv2.rectangle, (cx - head_r - 3, top - 2), (cx + head_r + 3, top + head_r // 2),
              colour=tone((30, 30, 120), 0.2), thickness=-1)
    stride = int(rng.integers(-10, 11))
    knee = torso_bottom + (top + body - torso_bottom) // 2
    for side in (-1, 1):
        x = cx + side * half // 2
        end = (x + side * stride, top + body)
        paint(cv2.line, (x, torso_bottom), end, colour=tone(identity.trousers, 0.6),
              thickness=max(half // 2, 4))
        if identity.shorts:
            paint(cv2.line, (x + side * stride // 2, knee), end, colour=skin,
                  thickness=max(half // 2, 4))
        paint(cv2.line, (cx + side * half, torso_top + 4), (cx + side * (half + 6), torso_bottom),
              colour=skin, thickness=max(half // 4, 3))
    if identity.bag:
        paint(cv2.rectangle, (cx + half, torso_top + 10), (cx + half + 12, torso_bottom - 10),
              colour=tone((40, 40, 40), 0.3), thickness=-1)


def make_people(count: int, seed: int = 0) -> list[Identity]:
    rng = np.random.default_rng(seed)
    return [Identity.random(rng) for _ in range(count)]


def render_pairs(
    people: list[Identity], seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One visible and one infrared image per identity (BGR uint8), in identity order."""
    rng = np.random.default_rng(seed + 1)
    visible = [render_person(p, Modality.VISIBLE, rng) for p in people]
    infrared = [render_person(p, Modality.INFRARED, rng) for p in people]
    return visible, infrared
