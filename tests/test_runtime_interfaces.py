"""The live runtime's interfaces: the outputs' protocol, the pipeline's snapshot, the event
kinds and their JSON Schema (checked against the events of a real offline run), the web
page's files as package data, and errors that name parameters, not flags."""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import json
import re
import threading
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from deen.address import ListenAddress
from deen.backends import open_embedder
from deen.backends.base import Embedder
from deen.errors import DeenError, ParameterError
from deen.modality import Modality
from deen.runtime.annotate import AnnotatedVideo, LiveWindow, render
from deen.runtime.detect import Detections, JsonlBoxes, open_detector
from deen.runtime.events import SCHEMA_PATH, EventKind, EventLog
from deen.runtime.gallery import Gallery
from deen.runtime.live import enrol
from deen.runtime.outputs import Output
from deen.runtime.pipeline import Pipeline, PipelineSnapshot, run, status_line
from deen.runtime.settings import LiveSettings
from deen.runtime.sources import Frame, SourceSpec, open_source
from deen.runtime.web import STATIC, LiveView
from deen.scenes import read_truth, write_stream_pair
from deen.streams import STREAMS

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "deen" / "runtime"

#: The live settings of an offline run (every frame, embedded in the round).
OFFLINE = LiveSettings().updated({"sources.realtime": False})


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_stream_pair(tmp_path_factory.mktemp("scene") / "pair", people=3, seconds=3,
                             fps=10, seed=4)


def _errors(schema: dict, value, root: dict | None = None, where: str = "") -> list[str]:
    """What is wrong with ``value`` under ``schema`` (JSON Schema 2020-12, by jsonschema)."""
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{where}{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(value)]


def test_the_schema_lists_exactly_the_event_kinds() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    kinds = [kind.value for kind in EventKind]
    assert schema["properties"]["event"]["enum"] == kinds
    assert [ref["$ref"] for ref in schema["oneOf"]] == [f"#/$defs/{k}" for k in kinds]
    for kind in kinds:
        assert schema["$defs"][kind]["properties"]["event"] == {"const": kind}
    assert _errors(schema, {"time": 1.0, "event": "stream", "stream": "rgb", "state": "live",
                            "message": ""}, schema) == []
    assert _errors(schema, {"time": 1.0, "event": "stream", "stream": "rgb"}, schema)
    assert _errors(schema, {"time": 1.0, "event": "nonsense"}, schema)


# -- a real offline run: snapshots seen by an output, events checked against the schema --
class _FailsOnce(JsonlBoxes):
    """The generated boxes, with one infrared frame whose detection raises (an error event)."""

    def detect(self, image: np.ndarray, stream: str, frame: int) -> Detections:
        if (stream, frame) == ("ir", 5):
            raise RuntimeError("injected: one bad frame")
        return super().detect(image, stream, frame)


def _gallery(path: Path, scene, embedder) -> Gallery:
    """A gallery with crops of generated person 0 enrolled as 'alice'."""
    import cv2

    capture = cv2.VideoCapture(str(scene.visible))
    crops = []
    truth = read_truth(scene.boxes)
    for frame in range(scene.frames):
        ok, image = capture.read()
        for box, who in truth.get(("rgb", frame), []):
            if ok and who == 0:
                x1, y1, x2, y2 = (int(v) for v in box)
                crops.append(image[y1:y2, x1:x2])
    gallery = Gallery(path, "test-model", embedder.dim)
    gallery.add("alice", Modality.VISIBLE, embedder.embed(crops, Modality.VISIBLE),
                [str(i) for i in range(len(crops))])
    return gallery


@pytest.fixture(scope="module")
def offline_run(scene, small_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    embedder = open_embedder(small_model, device="cpu")
    gallery = _gallery(folder / "gallery.db", scene, embedder)
    ready = threading.Event()
    sources = {m: open_source(STREAMS[m], str(path), realtime=False, ready=ready)
               for m, path in ((Modality.VISIBLE, scene.visible),
                               (Modality.INFRARED, scene.infrared))}
    events = EventLog(folder / "events.jsonl")
    pipeline = Pipeline(embedder, _FailsOnce(scene.boxes), events,
                        OFFLINE.updated({"matching.threshold": 0.0, "gallery.threshold": 0.0,
                                         "matching.without_map": True}),
                        gallery)
    seen: list[tuple[PipelineSnapshot, str, dict]] = []

    def on_round(p: Pipeline, frames: dict[Modality, Frame | None]) -> None:
        snapshot = p.snapshot()
        # What the snapshot said when it was taken, to compare with it after the run.
        seen.append((snapshot, repr(snapshot), {m: f.image for m, f in frames.items() if f}))

    try:
        summary = run(pipeline, sources, ready, status_every_s=0, on_round=on_round)
        final = pipeline.snapshot()
        pipeline.reset_counters()
        reset = pipeline.snapshot()
    finally:
        pipeline.close()
        for source in sources.values():
            source.stop()
        events.close()
        gallery.close()
    records = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    return {"summary": summary, "seen": seen, "final": final, "reset": reset,
            "records": records, "sources": sources}


def test_an_offline_run_keeps_the_two_files_in_step(scene, small_model, tmp_path) -> None:
    """The infrared file decodes slower than the visible one; an offline run still processes
    frame n of one beside frame n of the other in every round (what pairs and the cameras'
    view map need), instead of letting the faster file run ahead."""
    import time

    embedder = open_embedder(small_model, device="cpu")
    ready = threading.Event()
    sources = {m: open_source(STREAMS[m], str(path), realtime=False, ready=ready)
               for m, path in ((Modality.VISIBLE, scene.visible),
                               (Modality.INFRARED, scene.infrared))}
    reader = sources[Modality.INFRARED]._reader
    read = reader.read

    def slower() -> np.ndarray | None:
        time.sleep(0.03)
        return read()

    reader.read = slower
    events = EventLog(tmp_path / "events.jsonl")
    pipeline = Pipeline(embedder, JsonlBoxes(scene.boxes), events, OFFLINE)
    rounds: list[dict[Modality, int]] = []
    try:
        run(pipeline, sources, ready, status_every_s=0,
            on_round=lambda p, frames: rounds.append(
                {m: f.position for m, f in frames.items() if f is not None}))
    finally:
        pipeline.close()
        for source in sources.values():
            source.stop()
        events.close()
    assert [r.get(Modality.VISIBLE) for r in rounds] == list(range(scene.frames))
    assert all(r.get(Modality.INFRARED) == r[Modality.VISIBLE] for r in rounds)


def test_every_event_of_a_run_follows_the_schema(offline_run) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    records = offline_run["records"]
    for record in records:
        assert _errors(schema, record, schema) == [], record
    kinds = {r["event"] for r in records}
    assert {"track_started", "track_ended", "match", "recognised", "stream", "error"} <= kinds
    assert set(offline_run["summary"].events) == kinds


def test_snapshots_are_read_only_and_stay_as_taken(offline_run) -> None:
    seen = offline_run["seen"]
    assert len(seen) == offline_run["summary"].rounds > 10
    for snapshot, taken, _ in seen:
        assert repr(snapshot) == taken  # later rounds did not change it
    snapshot = next(s for s, _, _ in seen if s.matches and s.names)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.pending = 3
    with pytest.raises(TypeError):
        snapshot.names[Modality.VISIBLE, 99] = "mallory"
    with pytest.raises(TypeError):
        snapshot.faults["embed"] = 1
    track = next(t for tracks in snapshot.tracks.values() for t in tracks)
    with pytest.raises(ValueError):
        track.box[0] = 0.0
    assert list(snapshot.matches) == sorted(snapshot.matches)
    assert set(snapshot.tracks) == set(STREAMS) and set(snapshot.stage_ms) == {
        "detect", "track", "crops", "level", "place", "embed", "match", "relink", "name"}


def test_snapshot_feeds_the_renderer_and_the_status_line(offline_run) -> None:
    snapshot, _, images = next(item for item in offline_run["seen"] if item[0].matches)
    image = render(snapshot, images)
    assert image.shape[0] == 360 and image.shape[1] > 360 and image.dtype == np.uint8
    line = status_line(snapshot, offline_run["sources"], 1.0)
    assert line.startswith("rgb ") and f"matches {len(snapshot.matches)}" in line
    final, reset = offline_run["final"], offline_run["reset"]
    assert sum(final.processed.values()) > 0 and final.rounds > 0
    assert dict(reset.processed) == dict.fromkeys(STREAMS, 0) and reset.rounds == 0
    assert "faults: detect:ir 1" in status_line(final, offline_run["sources"], 1.0)


# -- outputs ---------------------------------------------------------------------------
def test_every_sink_is_an_output_and_discard_leaves_nothing(offline_run, tmp_path) -> None:
    # Which streams delivered in a given round depends on thread timing: take one where
    # both did.
    snapshot, _, images = next(item for item in offline_run["seen"] if len(item[2]) == 2)
    frames = {m: Frame(image, 0.0, 0, 0) for m, image in images.items()}
    declared = {m: (image.shape[1], image.shape[0]) for m, image in images.items()}
    for video in (AnnotatedVideo(tmp_path / "out.mp4", 10.0),
                  AnnotatedVideo(tmp_path / "out.mp4", 10.0, frame_sizes=declared)):
        for sink in (video, LiveWindow(), LiveView({})):
            assert isinstance(sink, Output) and sink.name
        video(snapshot, frames)
        assert video.partial.exists()
        video.discard()
        assert list(tmp_path.iterdir()) == []


def test_an_output_must_implement_discard() -> None:
    class Forgetful(Output):
        name = "forgetful"

        def __call__(self, snapshot, frames) -> None:
            pass

        def close(self) -> None:
            pass

    with pytest.raises(TypeError, match="discard"):
        Forgetful()


# -- package data ------------------------------------------------------------------------
def test_the_web_page_and_the_schema_ship_as_package_data() -> None:
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["deen.runtime"]
    files = [SCHEMA_PATH, *STATIC.iterdir()]
    assert {p.name for p in STATIC.iterdir()} >= {"index.html", "app.js", "style.css"}
    for path in files:
        relative = path.relative_to(RUNTIME).as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative


# -- errors name parameters, not flags ---------------------------------------------------
def test_runtime_errors_name_no_command_line_flag() -> None:
    """No exception raised under deen/runtime/ carries text like ``--serve``: the library
    names its parameters, the command line re-words them with its flags."""
    flag = re.compile(r"--[a-z]")
    for path in RUNTIME.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                texts = [n.value for n in ast.walk(node.exc)
                         if isinstance(n, ast.Constant) and isinstance(n.value, str)]
                assert not any(flag.search(t) for t in texts), (path.name, node.lineno, texts)


def test_bad_values_name_their_parameter(tmp_path, small_model) -> None:
    cases = [(lambda: ListenAddress.parse("nowhere"), "serve", "expected HOST:PORT"),
             (lambda: open_detector(str(tmp_path / "no.onnx")), "detector", "no such file"),
             (lambda: open_detector(__file__), "detector", "expected motion, hog or a file"),
             (lambda: SourceSpec.parse(str(tmp_path / "x.mp4"), "ir"), "ir", "no such file"),
             (lambda: enrol(tmp_path / "g.db", "a", tmp_path / "none", Modality.VISIBLE,
                            None, small_model), "images", "not a folder")]
    for call, parameter, problem in cases:
        with pytest.raises(ParameterError) as caught:
            call()
        assert caught.value.parameter == parameter and problem in caught.value.problem
        assert str(caught.value).startswith(f"{parameter}=")
        assert isinstance(caught.value, DeenError)


class _Recording(Embedder):
    """Keeps every crop it is given; every embedding is the same vector."""

    backend, variant, dim, input_size = "recording", "sysu", 4, (64, 24)

    def __init__(self) -> None:
        self.crops: list[np.ndarray] = []

    def embed(self, images, modality, color_order=None, batch_size=16) -> np.ndarray:
        self.crops.extend(np.asarray(image, np.float32) for image in images)
        return np.ones((len(images), self.dim), np.float32)

    def run(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        raise AssertionError("embed is what the pipeline calls")


class _Still(JsonlBoxes):
    """One person standing at one place in both streams, missed on the ``missed`` (stream,
    frame) pairs."""

    def __init__(self, missed: frozenset[tuple[str, int]] = frozenset(),
                 boxes: dict[str, list[float]] | None = None) -> None:
        self.missed, self.boxes = missed, boxes or {}

    def detect(self, image: np.ndarray, stream: str, frame: int) -> Detections:
        if (stream, frame) in self.missed:
            return Detections.empty()
        box = self.boxes.get(stream, [100, 40, 140, 120])
        return Detections(np.array([box], np.float32), np.ones(1, np.float32))


@pytest.mark.parametrize("level_light", [True, False])
def test_a_person_is_embedded_alike_when_the_picture_grows_brighter(level_light) -> None:
    """One person standing still, the whole picture 25% brighter from the fourth round: with
    light levelling the two crops the embedder gets are the same; without it they differ
    by the change of light."""
    rng = np.random.default_rng(0)
    first = rng.integers(40, 180, (240, 320, 3)).astype(np.uint8)
    brighter = np.clip(first.astype(np.float32) * 1.25, 0, 255).astype(np.uint8)
    embedder = _Recording()
    pipeline = Pipeline(embedder, _Still(), EventLog(None),
                        OFFLINE.updated({"embedding.level_light": level_light,
                                         "view_map.enabled": False}))
    for index, image in enumerate([first] * 3 + [brighter] * 3):
        pipeline.process({Modality.VISIBLE: Frame(image, float(index), index, index),
                          Modality.INFRARED: None})
    pipeline.close()
    assert len(embedder.crops) >= 2
    difference = np.abs(embedder.crops[-1] - embedder.crops[0]).mean()
    assert (difference < 2.0) if level_light else (difference > 15.0)


def _partners(detector: _Still, settings: dict[str, object], rounds: int
              ) -> list[tuple[int | None, int | None]]:
    """Per round of ``detector``'s still person, matched by appearance alone: the visible
    track's partner as shown (its snapshot) and as matched, (None, None) with no track."""
    pipeline = Pipeline(_Recording(), detector, EventLog(None),
                        OFFLINE.updated({"view_map.enabled": False,
                                         "matching.without_map": True, **settings}))
    image = np.full((240, 320, 3), 90, np.uint8)
    partners = []
    for index in range(rounds):
        pipeline.process({m: Frame(image, float(index), index, index) for m in
                          (Modality.VISIBLE, Modality.INFRARED)})
        shown = pipeline.snapshot().tracks[Modality.VISIBLE]
        partners.append((shown[0].partner, pipeline.match.partner(
            (Modality.VISIBLE, shown[0].track_id))) if shown else (None, None))
    pipeline.close()
    return partners


def test_a_matched_track_shows_its_partner_only_while_the_partner_is_seen() -> None:
    """One person in each camera, matched by appearance; the infrared detector then misses
    them for two frames. The match holds (a missed frame is not a departure), but those
    frames show no partner: there is no infrared box to pair the visible one with, and a
    row naming one would claim a box that is not there."""
    partners = _partners(_Still(frozenset({("ir", 8), ("ir", 9)})), {}, 11)
    assert partners[7][0] is not None and partners[7] == partners[10]
    assert [p[0] for p in partners[8:10]] == [None, None]
    assert [p[1] for p in partners[8:10]] == [partners[7][1]] * 2


@pytest.mark.parametrize("group_width", [0.5, 1.0])
def test_a_match_is_not_shown_on_a_box_that_holds_several_people(group_width) -> None:
    """The infrared detector sees the person in a box as wide as it is tall (two or three
    people in one box, as a group walking together gives). The match holds, but the visible
    track shows the infrared one as its partner only where such a box may hold one person
    (``matching.group_width`` at or above its width over height, 0.875)."""
    shown = _partners(_Still(boxes={"ir": [100, 40, 170, 120]}),
                      {"matching.group_width": group_width}, 8)
    assert shown[-1][1] is not None  # matched
    assert shown[-1][0] == (None if group_width == 0.5 else shown[-1][1])
