"""Fault containment in the live loop: real files, real processes, a real full disk
(/dev/full) and a real closed pipe. One bad frame, crop or call never ends a run; a failure
that persists ends it with one line and exit 1, with its outputs flushed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deen.backends import open_embedder
from deen.backends.base import Embedder
from deen.models.checkpoint import random_model, save_checkpoint
from deen.runtime.detect import Detections, JsonlBoxes
from deen.runtime.events import EventLog
from deen.runtime.faults import Faults, PersistentFailure
from deen.runtime.live import run_live
from deen.runtime.settings import LiveSettings
from deen.scenes import write_stream_pair

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_stream_pair(tmp_path_factory.mktemp("scene") / "pair", people=3, seconds=3,
                             fps=10, seed=4)


class _Wrapped(Embedder):
    """The real embedder, with a fault injected into some of its calls."""

    def __init__(self, inner: Embedder, fault: str) -> None:
        self.inner, self.fault, self.calls = inner, fault, 0
        self.backend, self.config, self.variant = inner.backend, inner.config, inner.variant
        self.input_size, self.dim = inner.input_size, inner.dim

    def run(self, images: np.ndarray, modalities: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == 1:  # the start-up check sees a healthy model
            return self.inner.run(images, modalities)
        if self.fault == "raise" and self.calls % 3 == 0:
            raise RuntimeError("injected: the accelerator went away")
        if self.fault == "always-raise":
            raise RuntimeError("injected: the accelerator is gone")
        out = self.inner.run(images, modalities)
        if self.fault == "nan":
            out[::2] = np.nan  # every other crop, as a zero-norm pooled feature gives
        return out


class _FlakyDetector(JsonlBoxes):
    def detect(self, image: np.ndarray, stream: str, frame: int) -> Detections:
        if frame % 4 == 1:
            raise cv2.error("injected: detector failed on this frame")
        return super().detect(image, stream, frame)


def _run(scene, embedder: Embedder, model: Path, detector=None):
    settings = LiveSettings().updated({
        "sources.rgb": str(scene.visible), "sources.ir": str(scene.infrared),
        "detection.detector": str(scene.boxes), "outputs.events": (),
        "sources.realtime": False, "outputs.status_every_s": 0.0, "matching.threshold": 0.0,
        "matching.without_map": True,
        # Two crops per call: a call can hold finite and non-finite rows at once.
        "embedding.budget": 2})
    events = EventLog(None)
    summary = run_live(embedder, model, settings, detector=detector, events=events)
    return summary, list(events.recent), events


def test_non_finite_rows_are_dropped_and_the_run_goes_on(scene, small_model):
    embedder = _Wrapped(open_embedder(small_model, device="cpu"), "nan")
    summary, recent, events = _run(scene, embedder, small_model)
    assert summary.failure is None
    assert summary.faults["non-finite embedding"] > 0
    # Reported once per kind (a call whose every row is NaN counts as a failed call).
    kinds = [e["kind"] for e in recent if e["event"] == "error"]
    assert "non-finite embedding" in kinds and len(kinds) == len(set(kinds))
    assert set(kinds) <= {"non-finite embedding", "embed"}
    assert events.counts["match"] > 0  # the finite rows still match people
    assert all(e["similarity"] is not None for e in recent if e["event"] == "match")


def test_an_embedder_that_raises_costs_its_round_only(scene, small_model):
    embedder = _Wrapped(open_embedder(small_model, device="cpu"), "raise")
    summary, recent, events = _run(scene, embedder, small_model)
    assert summary.failure is None and summary.faults["embed"] > 2
    assert events.counts["error"] == 1 and events.counts["match"] > 0
    error = next(e for e in recent if e["event"] == "error")
    assert error["kind"] == "embed" and "accelerator went away" in error["message"]
    assert "faults: embed" in summary.lines()[1]


def test_a_detector_that_raises_costs_its_frame_only(scene, small_model):
    embedder = open_embedder(small_model, device="cpu")
    summary, _, events = _run(scene, embedder, small_model,
                              detector=_FlakyDetector(scene.boxes))
    assert summary.failure is None
    assert summary.faults["detect:rgb"] > 3 and summary.faults["detect:ir"] > 3
    assert events.counts["track_started"] >= 6 and events.counts["match"] > 0


def test_a_failure_that_persists_ends_the_run(scene, small_model):
    embedder = _Wrapped(open_embedder(small_model, device="cpu"), "always-raise")
    settings = LiveSettings().updated({
        "sources.rgb": str(scene.visible), "sources.ir": str(scene.infrared),
        "detection.detector": str(scene.boxes), "outputs.events": (), "sources.loop": True,
        "outputs.status_every_s": 0.0, "run.duration_s": 60.0, "run.fail_after_s": 1.0})
    started = time.monotonic()
    summary = run_live(embedder, small_model, settings)
    assert time.monotonic() - started < 30
    assert summary.failure is not None and summary.failure.startswith(
        "embed failed on every call for 1 s")
    assert "accelerator is gone" in summary.failure


def test_persistence_counts_only_unbroken_failure() -> None:
    now = [0.0]
    reported: list[str] = []
    faults = Faults(lambda kind, message, count: reported.append(kind), 10.0, lambda: now[0])
    for step in range(30):
        now[0] = float(step)
        faults.failed("embed", "boom")
        if step % 5 == 4:
            faults.succeeded("embed")  # one success in five: not a persistent failure
        faults.check()
    assert faults.counts["embed"] == 30 and reported == ["embed"]
    for step in range(30, 41):
        now[0] = float(step)
        faults.failed("embed", "boom")
    with pytest.raises(PersistentFailure, match="embed failed on every call for 10 s"):
        faults.check()


def _deen(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deen", *args], capture_output=True,
                          text=True, cwd=REPO, **kwargs)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_events_on_a_full_disk_end_the_run_in_one_line_with_the_video_kept(
        scene, small_model, tmp_path):
    video = tmp_path / "out.mp4"
    done = _deen("run", "--rgb", str(scene.visible), "--ir", str(scene.infrared), "--loop",
                 "--model", str(small_model), "--device", "cpu", "--detector",
                 str(scene.boxes), "--events", "/dev/full", "--video-out", str(video),
                 "--set", "run.fail_after_s=2", "--set", "outputs.status_every_s=0",
                 "--duration", "60", timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "sink:events failed on every call" in lines[0]
    assert "No space left on device" in lines[0]
    assert cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT) > 0
    assert not list(tmp_path.glob(".*partial*"))


def test_a_closed_events_pipe_does_not_end_the_run(scene, small_model):
    process = subprocess.Popen(
        [sys.executable, "-m", "deen", "run", "--rgb", str(scene.visible), "--ir",
         str(scene.infrared), "--loop", "--model", str(small_model), "--device", "cpu",
         "--detector", str(scene.boxes), "--events", "-", "--duration", "4",
         "--set", "outputs.status_every_s=0"], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    first = json.loads(process.stdout.readline())  # a reader takes one event, then leaves
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert first["event"] in ("stream", "track_started")
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert "faults: sink:events 1" in stderr, stderr


def test_a_model_that_gives_only_non_finite_embeddings_is_refused_at_start(scene, tmp_path):
    model, _ = random_model("regdb", 0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()  # zero pooled features: the reference divides 0 by 0
    path = tmp_path / "zero.pt"
    save_checkpoint(model, path, {"input_size": [64, 24]})
    done = _deen("run", "--rgb", str(scene.visible), "--ir", str(scene.infrared), "--model",
                 str(path), "--device", "cpu", "--detector", str(scene.boxes), timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "zero.pt: gives non-finite embeddings" in lines[0], done.stderr
