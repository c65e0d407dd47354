"""Shared fixtures: reference-format checkpoints (built once per session) and test images."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from reference_spec import make_reference_state, save_reference_checkpoint

from deen.fileio import atomic_path
from deen.modality import Modality
from deen.models.checkpoint import random_model, save_checkpoint
from deen.preprocess import preprocess
from deen.synthetic import make_people, render_person

# No test may depend on the model this machine happens to have cached (deen demo and the
# live benchmarks use it when present): tests see an empty cache of their own.
os.environ["DEEN_LIVE_MODEL_CACHE"] = tempfile.mkdtemp(prefix="deen-test-model-cache-")
# Work that many tests need and that costs seconds of CPU each time is done once per run and
# shared by the suite's processes (pytest-xdist's workers and the deen commands they start
# inherit these variables): the reference-format states below, and traced ONNX graphs (10-20 s
# each; many tests export the same few seeded networks, and every export is still verified
# against PyTorch).
_OWN_SHARED = "DEEN_TEST_SHARED" not in os.environ
if _OWN_SHARED:
    os.environ["DEEN_TEST_SHARED"] = tempfile.mkdtemp(prefix="deen-test-shared-")
SHARED = Path(os.environ["DEEN_TEST_SHARED"])
os.environ.setdefault("DEEN_TRACE_CACHE", str(SHARED / "traces"))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWN_SHARED:
        shutil.rmtree(SHARED, ignore_errors=True)


def read_events(path: Path) -> list[dict]:
    """The events a run has written to ``path`` so far: whole lines only, as the run may be
    writing the next one (none while the file does not exist yet)."""
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]


@pytest.fixture(scope="session")
def reference_state():
    """variant → reference-named state dict with calibrated, non-identity BN statistics."""
    cache: dict[str, dict] = {}

    def get(variant: str) -> dict:
        if variant not in cache:
            kept = SHARED / f"reference-{variant}.pt"
            if kept.is_file():
                cache[variant] = torch.load(kept, weights_only=True)
            else:
                seed = {"sysu": 1, "regdb": 2}[variant]
                calibration = {
                    name: torch.from_numpy(preprocess(person_images([modality] * 8,
                                                                    seed=100 + seed)))
                    for name, modality in (("visible", Modality.VISIBLE),
                                           ("infrared", Modality.INFRARED))
                }
                cache[variant] = make_reference_state(variant, calibration, seed=seed)
                with atomic_path(kept) as tmp:
                    torch.save(cache[variant], tmp)
        return cache[variant]

    return get


@pytest.fixture(scope="session")
def reference_checkpoint(reference_state, tmp_path_factory):
    """variant → path of a checkpoint saved the way the reference training script saves."""
    paths: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in paths:
            path = tmp_path_factory.mktemp("ckpt") / f"{variant}_deen_best.t"
            save_reference_checkpoint(path, reference_state(variant))
            paths[variant] = path
        return paths[variant]

    return get


@pytest.fixture(scope="session")
def small_model(tmp_path_factory):
    """A random DEEN checkpoint at a small input size, for the runtime's tests (they are about
    plumbing, not accuracy): the regdb network, a third of sysu's weights and compute."""
    model, _ = random_model("regdb", 0)
    path = tmp_path_factory.mktemp("model") / "deen_small.pt"
    save_checkpoint(model, path, {"input_size": [64, 24]})
    return path


def write_person_images(folder: Path, count: int, seed: int) -> Path:
    """``count`` visible pictures of one generated person as ``folder/<i>.png`` (made if
    missing): what ``deen gallery add --images`` reads."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    person = make_people(1, seed=seed)[0]
    for index in range(count):
        image = render_person(person, Modality.VISIBLE, np.random.default_rng(index))
        cv2.imwrite(str(folder / f"{index}.png"), image)
    return folder


def person_images(modalities: list[Modality], seed: int) -> list[np.ndarray]:
    """Generated BGR uint8 people, one per requested modality (distinct identities)."""
    rng = np.random.default_rng(seed)
    people = make_people(len(modalities), seed=seed)
    return [render_person(p, m, rng) for p, m in zip(people, modalities, strict=True)]
