"""Test doubles for the runtime: stand-ins that make a real component behave in a way a test
needs (slower, failing), wrapping the real thing rather than faking it."""

from __future__ import annotations

import time

import numpy as np

from deen.backends.base import Embedder


class DelayedEmbedder(Embedder):
    """Another embedder, made slower by ``delay_s`` per call: a stand-in for a slow
    accelerator, to show what the live pipeline does when embedding cannot keep up."""

    def __init__(self, inner: Embedder, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.backend, self.variant, self.config = f"{inner.backend}+delay", inner.variant, \
            inner.config
        self.dim, self.input_size = inner.dim, inner.input_size

    def run(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        time.sleep(self.delay_s)
        return self.inner.run(images, modality)
