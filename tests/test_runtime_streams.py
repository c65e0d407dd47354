"""Live runtime on real files, real processes and a real RTSP stream: sources (end, loop,
drops, bad input), detectors, the whole `deen run` on a generated camera pair, Ctrl-C, and
an RTSP publisher killed and restarted mid-run."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from conftest import read_events
from doubles import DelayedEmbedder
from onnx import TensorProto, helper, numpy_helper

from deen.errors import DeenError
from deen.models.checkpoint import random_model, save_checkpoint
from deen.runtime.detect import JsonlBoxes, YoloDetector, open_detector
from deen.runtime.sources import FrameSource, SourceSpec, open_source
from deen.scenes import read_truth, write_stream_pair

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_stream_pair(tmp_path_factory.mktemp("scene") / "pair", people=3, seconds=4,
                             fps=10, seed=2)


def _deen(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deen", *args], capture_output=True,
                          text=True, cwd=REPO, **kwargs)


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- sources -------------------------------------------------------------------------------
def test_file_source_delivers_every_frame_offline_then_ends(scene):
    source = open_source("rgb", str(scene.visible), realtime=False)
    frames = []
    while not source.finished:
        frame = source.take(wait_s=1.0)
        if frame is not None:
            frames.append(frame)
    source.stop()
    assert [f.index for f in frames] == list(range(scene.frames))
    assert source.stats.state == "ended" and source.stats.dropped == 0
    assert frames[0].image.shape == (240, 426, 3)


def test_slow_consumer_gets_the_newest_frame_and_drops_are_counted(scene):
    source = open_source("rgb", str(scene.visible), fps=100.0, loop=True)
    taken = []
    for _ in range(8):
        time.sleep(0.1)  # a consumer ten times slower than the stream
        frame = source.take()
        if frame is not None:
            taken.append(frame)
    source.stop()
    stats = source.stats
    assert stats.dropped > 30, stats
    assert stats.captured == stats.taken + stats.dropped + (source._newest is not None)
    # Every frame taken was the newest at the time: indices jump by about the drop rate.
    assert np.diff([f.index for f in taken]).min() > 3


def test_loop_restarts_a_file(scene):
    source = open_source("ir", str(scene.infrared), loop=True, realtime=False)
    indices = [source.take(wait_s=1.0).index for _ in range(scene.frames + 5)]
    source.stop()
    assert source.stats.loops >= 1 and indices[-1] == scene.frames + 4


def test_image_folder_source(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((20, 10, 3), 50 * i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source("rgb", str(tmp_path), realtime=False)
    values = [int(source.take(wait_s=1.0).image[0, 0, 0]) for _ in range(3)]
    source.stop()
    assert values == [0, 50, 100]


@pytest.mark.parametrize("case", ["missing", "corrupt", "truncated", "empty_folder"])
def test_bad_sources_give_clear_errors(case, scene, tmp_path):
    if case == "missing":
        text, message = str(tmp_path / "nope.mp4"), "no such file or folder"
    elif case == "corrupt":
        (tmp_path / "bad.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
        text, message = str(tmp_path / "bad.mp4"), "not a readable video"
    elif case == "truncated":
        data = scene.visible.read_bytes()
        (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])
        text, message = str(tmp_path / "cut.mp4"), "not a readable video"
    else:
        (tmp_path / "empty").mkdir()
        text, message = str(tmp_path / "empty"), "no images"
    with pytest.raises(DeenError, match=message):
        open_source("rgb", text)


def test_unreachable_url_fails_fast_and_clearly():
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(DeenError, match="cannot connect"):
        open_source("rgb", f"rtsp://127.0.0.1:{port}/cam", timeout_s=2.0)
    assert time.monotonic() - start < 10


def test_source_spec_kinds(scene, tmp_path):
    assert SourceSpec.parse("0").kind == "camera"
    assert SourceSpec.parse("rtsp://10.0.0.2/live").kind == "url"
    assert SourceSpec.parse(str(scene.visible)).kind == "file"
    assert SourceSpec.parse(str(tmp_path)).kind == "folder"
    assert FrameSource("x", SourceSpec("url", "http://h/x")).spec.live


# -- detectors -----------------------------------------------------------------------------
def _yolo_graph(path: Path, rows: np.ndarray, size: int = 96, shift: int = 0) -> Path:
    """An ONNX 'detector' with a dynamic batch: for each B×3×size×size image it returns
    ``rows`` (one image's output, any real layout), with the first row's first value
    (a box's x) moved by ``shift`` × the image's mean, so that each image of a batch gets
    its own answer."""
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, size, size])
    result = helper.make_tensor_value_info("output0", TensorProto.FLOAT,
                                           ["batch", *rows.shape])
    where = np.zeros(rows.shape, np.float32)
    where[0, 0] = shift
    nodes = [helper.make_node("ReduceMean", ["images"], ["per_image"], axes=[1, 2, 3],
                              keepdims=0),
             helper.make_node("Unsqueeze", ["per_image", "axes"], ["mean"]),
             helper.make_node("Mul", ["mean", "where"], ["moved"]),
             helper.make_node("Add", ["constant", "moved"], ["output0"])]
    graph = helper.make_graph(nodes, "det", [image], [result], initializer=[
        numpy_helper.from_array(rows.astype(np.float32)[None], "constant"),
        numpy_helper.from_array(where[None], "where"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "axes")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


# One image's output rows of real exports at a 96×96 input (N = 12² + 6² + 3² = 189 cells):
# YOLOv8 and YOLO11 give 84×189 (box then 80 class scores), YOLOv5 567×85 (3 anchors a cell;
# box, objectness, 80 classes), an end-to-end export (YOLOv10, nms=True) 300×6.
# A person at centre (48, 48), 24×80 in model pixels, maps back through the letterbox of a
# 192×96 (H×W) frame (scale 0.5, 24 px of padding left and right) to (24, 16, 72, 176).
PERSON_FRAME_BOX = [24, 16, 72, 176]


def _layout_rows(layout: str) -> np.ndarray:
    person, other = [48, 48, 24, 80], [20, 20, 10, 10]
    if layout in ("yolov8", "yolo11"):
        rows = np.zeros((189, 84))
        rows[0, :4], rows[0, 4] = person, 0.9
        rows[1, :4], rows[1, 4 + 2] = other, 0.9  # a car (class 2): not kept
        return rows.T.copy()
    if layout == "yolov5":
        rows = np.zeros((567, 85))
        rows[0, :4], rows[0, 4], rows[0, 5] = person, 0.95, 0.95
        rows[1, :4], rows[1, 4], rows[1, 5 + 2] = other, 0.95, 0.95
        return rows
    rows = np.zeros((300, 6))  # end-to-end: corners, score, class
    rows[0] = [36, 8, 60, 88, 0.9, 0]
    rows[1] = [15, 15, 25, 25, 0.9, 2]
    return rows


@pytest.mark.parametrize("layout", ["yolov8", "yolo11", "yolov5", "end-to-end"])
def test_yolo_detector_reads_each_real_layout_through_the_letterbox(layout, tmp_path):
    detector = YoloDetector(_yolo_graph(tmp_path / "det.onnx", _layout_rows(layout)))
    found = detector.detect(np.zeros((192, 96, 3), np.uint8), "rgb", 0)
    assert len(found) == 1 and found.scores[0] > 0.8
    np.testing.assert_allclose(found.boxes[0], PERSON_FRAME_BOX, atol=1e-3)


def test_yolo_detector_runs_both_streams_in_one_call(tmp_path):
    detector = YoloDetector(_yolo_graph(tmp_path / "det.onnx", _layout_rows("yolov8"),
                                        shift=8))
    calls = []
    infer = detector._infer
    detector._infer = lambda blob: calls.append(blob.shape) or infer(blob)
    dark, bright = np.zeros((192, 96, 3), np.uint8), np.full((192, 96, 3), 255, np.uint8)
    found = detector.detect_many([(dark, "rgb", 0), (bright, "ir", 0)])
    assert calls == [(2, 3, 96, 96)]
    # Each image's own answer: the bright one's box moved by 8 × (difference of means 0.5)
    # model pixels, 8 frame pixels.
    x_dark, x_bright = found[0].boxes[0, 0], found[1].boxes[0, 0]
    assert x_bright - x_dark == pytest.approx(8, abs=1e-2)


def test_yolo_detector_reads_an_openvino_export(tmp_path):
    import openvino as ov

    source = _yolo_graph(tmp_path / "det.onnx", _layout_rows("yolov5"))
    ov.save_model(ov.convert_model(str(source)), str(tmp_path / "det.xml"))
    detector = open_detector(str(tmp_path / "det.xml"))
    found = detector.detect_many([(np.zeros((192, 96, 3), np.uint8), "rgb", 0)] * 2)
    assert [len(f) for f in found] == [1, 1]
    np.testing.assert_allclose(found[1].boxes[0], PERSON_FRAME_BOX, atol=1e-3)


def test_yolo_detector_refuses_a_graph_that_takes_no_image(tmp_path):
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 96])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 96])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "g",
                              [image], [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              tmp_path / "any.onnx")
    with pytest.raises(DeenError, match=r"any.onnx: expected one image input of shape "
                                        r"B×3×H×W, got \[1, 96\]"):
        YoloDetector(tmp_path / "any.onnx")


def test_boxes_file_errors_name_the_line(tmp_path):
    path = tmp_path / "boxes.jsonl"
    path.write_text('{"stream": "rgb", "frame": 0, "boxes": [[0, 0, 5, 5, 0.9]]}\n'
                    '{"stream": "rgb", "frame": 1, "boxes": [[0, 0, 5]]}\n')
    with pytest.raises(DeenError, match=r"boxes.jsonl:2: "):
        JsonlBoxes(path)
    with pytest.raises(DeenError, match="no such file"):
        open_detector(str(tmp_path / "missing.onnx"))


def test_hog_detector_runs_on_a_frame(scene):
    capture = cv2.VideoCapture(str(scene.visible))
    ok, image = capture.read()
    found = open_detector("hog").detect(image, "rgb", 0)
    assert ok and found.boxes.shape[1] == 4 and len(found.boxes) == len(found.scores)


# -- the whole pipeline --------------------------------------------------------------------
def test_deen_run_on_a_generated_pair_produces_events_and_video(scene, small_model, tmp_path):
    events_path, video = tmp_path / "events.jsonl", tmp_path / "annotated.mp4"
    result = _deen("run", "--rgb", str(scene.visible), "--ir", str(scene.infrared),
                   "--model", str(small_model), "--device", "cpu", "--detector",
                   str(scene.boxes), "--events", str(events_path), "--video-out", str(video),
                   "--no-realtime", "--set", "outputs.status_every_s=1", "--set",
                   "matching.threshold=0.0", "--set", "matching.without_map=true",
                   timeout=300)
    assert result.returncode == 0, result.stderr
    events = _events(events_path)
    kinds = {e["event"] for e in events}
    assert {"track_started", "track_ended", "match"} <= kinds
    truth = read_truth(scene.boxes)
    for stream in ("rgb", "ir"):
        people = {who for (s, _), boxes in truth.items() if s == stream for _, who in boxes}
        started = [e for e in events if e["event"] == "track_started" and e["stream"] == stream]
        ended = [e for e in events if e["event"] == "track_ended" and e["stream"] == stream]
        assert len(people) <= len(started) <= 2 * len(people) and len(ended) == len(started)
    assert all(e["latency_ms"] >= 0 for e in events if "latency_ms" in e)
    assert "[deen run]" in result.stderr and "dropped" in result.stderr
    # One annotated picture per frame of the visible stream, whatever the rounds.
    capture = cv2.VideoCapture(str(video))
    assert capture.isOpened() and capture.get(cv2.CAP_PROP_FRAME_COUNT) == scene.frames
    assert not list(tmp_path.glob(".*partial*"))


def test_a_real_time_video_lasts_as_long_as_its_source(small_model, tmp_path):
    """A 10 s, 10 fps pair run in real time: about two rounds per source frame (each stream's
    frames arrive on their own), and a video of one picture per visible frame: 100."""
    pair = write_stream_pair(tmp_path / "pair", people=2, seconds=10, fps=10, seed=6)
    video = tmp_path / "out.mp4"
    result = _deen("run", "--rgb", str(pair.visible), "--ir", str(pair.infrared), "--model",
                   str(small_model), "--device", "cpu", "--detector", str(pair.boxes),
                   "--events", "none", "--video-out", str(video), "--set",
                   "outputs.status_every_s=0", timeout=120)
    assert result.returncode == 0, result.stderr
    capture = cv2.VideoCapture(str(video))
    assert abs(capture.get(cv2.CAP_PROP_FRAME_COUNT) - 100) <= 3
    assert capture.get(cv2.CAP_PROP_FPS) == 10


@pytest.mark.parametrize("sizes", [((480, 640), (480, 640)), ((576, 768), (288, 384)),
                                   ((720, 1280), (480, 640))])
def test_annotated_video_has_one_picture_per_visible_frame_whatever_the_aspect(sizes, tmp_path):
    """Rounds holding only the infrared stream's frame add no picture; a visible frame the
    pipeline had no time for (dropped: its index skipped) repeats the picture before it."""
    from types import SimpleNamespace

    from deen.modality import Modality
    from deen.runtime.annotate import AnnotatedVideo

    snapshot = SimpleNamespace(tracks={Modality.VISIBLE: (), Modality.INFRARED: ()})
    images = {m: np.full((*size, 3), 90, np.uint8)
              for m, size in zip((Modality.VISIBLE, Modality.INFRARED), sizes, strict=True)}
    declared = {m: (image.shape[1], image.shape[0]) for m, image in images.items()}

    def frame(modality: Modality, index: int) -> SimpleNamespace:
        return SimpleNamespace(image=images[modality], index=index)

    for known in (declared, None):  # sizes the sources declare, or none (live streams)
        path = tmp_path / f"run-{known is None}.mp4"
        video = AnnotatedVideo(path, fps=10, frame_sizes=known)
        for index in range(3):  # the infrared stream starts late
            video(snapshot, {Modality.VISIBLE: frame(Modality.VISIBLE, index),
                             Modality.INFRARED: None})
        visible = 3
        for round_ in range(12):  # then rounds holding the infrared frame alone, or both
            if round_ % 3 == 0:
                video(snapshot, {Modality.VISIBLE: None,
                                 Modality.INFRARED: frame(Modality.INFRARED, round_)})
                continue
            visible += 2 if round_ == 4 else 1  # frame 4 of the visible stream was dropped
            video(snapshot, {Modality.VISIBLE: frame(Modality.VISIBLE, visible - 1),
                             Modality.INFRARED: frame(Modality.INFRARED, round_)})
        video.close()
        capture = cv2.VideoCapture(str(path))
        # Declared sizes: every visible frame (12, the dropped one repeated); otherwise from
        # the first round after the infrared stream's first frame: the three before it
        # have no picture.
        assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == (visible if known else visible - 3)
        assert capture.get(cv2.CAP_PROP_FRAME_HEIGHT) == 360
        width = sum(round(w * 360 / h) + round(w * 360 / h) % 2 for w, h in declared.values())
        assert capture.get(cv2.CAP_PROP_FRAME_WIDTH) == width


def test_ctrl_c_stops_cleanly_and_flushes_outputs(scene, small_model, tmp_path):
    events_path, video = tmp_path / "events.jsonl", tmp_path / "out.mp4"
    process = subprocess.Popen(
        [sys.executable, "-m", "deen", "run", "--rgb", str(scene.visible), "--ir",
         str(scene.infrared), "--loop", "--model", str(small_model), "--device", "cpu",
         "--detector", str(scene.boxes), "--events", str(events_path), "--video-out",
         str(video), "--set", "outputs.status_every_s=0"], cwd=REPO, stderr=subprocess.PIPE,
        text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
            events_path.exists() and "track_started" in events_path.read_text()):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "rounds in" in stderr
    assert _events(events_path)[-1]["event"] in ("track_ended", "unmatch")
    assert cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT) > 0


@pytest.mark.parametrize("case", ["corrupt", "unreachable"])
def test_deen_run_bad_input_is_one_line(case, tmp_path, small_model, scene):
    if case == "corrupt":
        (tmp_path / "bad.mp4").write_bytes(b"\x00" * 4096)
        rgb, message = str(tmp_path / "bad.mp4"), "not a readable video"
    else:
        rgb, message = "rtsp://127.0.0.1:9/none", "cannot connect"
    result = _deen("run", "--rgb", rgb, "--ir", str(scene.infrared), "--model",
                   str(small_model), "--set", "sources.timeout_s=2", timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def _ffmpeg() -> str:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="needs imageio-ffmpeg's ffmpeg")
    return imageio_ffmpeg.get_ffmpeg_exe()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.serial  # asserts timing: runs alone (scripts/test.sh)
def test_rtsp_stream_killed_and_restarted_is_picked_up_again(scene, small_model, tmp_path):
    ffmpeg = _ffmpeg()
    port = _free_port()
    url = f"rtsp://127.0.0.1:{port}/visible"
    relay = subprocess.Popen([sys.executable, str(REPO / "tests" / "rtsp_relay.py"), str(port)],
                             stdout=subprocess.PIPE, text=True)
    assert relay.stdout.readline().strip() == "ready"

    def publish() -> subprocess.Popen:
        return subprocess.Popen(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i",
             str(scene.visible), "-c:v", "libx264", "-preset", "ultrafast", "-tune",
             "zerolatency", "-g", "10", "-f", "rtsp", "-rtsp_transport", "tcp", url],
            stdin=subprocess.DEVNULL)

    publisher = publish()
    events_path = tmp_path / "events.jsonl"
    run = None
    try:
        time.sleep(2)
        run = subprocess.Popen(
            [sys.executable, "-m", "deen", "run", "--rgb", url, "--ir", str(scene.infrared),
             "--loop", "--model", str(small_model), "--device", "cpu", "--events",
             str(events_path), "--duration", "120", "--set", "outputs.status_every_s=0",
             "--set", "sources.timeout_s=3"],
            cwd=REPO, stderr=subprocess.PIPE, text=True)

        def rgb(event: str) -> list[dict]:
            return [e for e in read_events(events_path)
                    if e["event"] == event and e.get("stream") == "rgb"]

        def wait_for(condition, seconds: float = 60) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and run.poll() is None and not condition():
                time.sleep(0.2)

        wait_for(lambda: rgb("track_started"))  # frames come from the camera
        publisher.kill()  # the camera goes away ...
        publisher.wait()
        wait_for(lambda: any(e["state"] == "reconnecting" for e in rgb("stream")))
        publisher = publish()  # ... and comes back
        wait_for(lambda: rgb("stream")[-1]["state"] == "live")
        run.send_signal(signal.SIGINT)  # an operator's Ctrl-C: the run ends cleanly
        _, stderr = run.communicate(timeout=60)
    finally:
        for process in (publisher, relay, run):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    assert run.returncode == 0, stderr
    states = [e["state"] for e in _events(events_path)
              if e["event"] == "stream" and e["stream"] == "rgb"]
    assert "reconnecting" in states and states[-1] == "live", states
    assert "1 reconnects" in stderr or "2 reconnects" in stderr, stderr


def test_an_embedder_slower_than_the_cameras_does_not_hold_rounds_up(scene, small_model):
    """Embedding takes 0.3 s a call against 10 fps cameras: it runs beside the rounds, which
    keep taking the cameras' frames; tracks wait their turn for the embedder instead."""
    from deen.backends import open_embedder
    from deen.runtime.live import run_live
    from deen.runtime.settings import LiveSettings

    embedder = DelayedEmbedder(open_embedder(small_model, device="cpu"), 0.3)
    settings = LiveSettings().updated({
        "sources.rgb": str(scene.visible), "sources.ir": str(scene.infrared),
        "detection.detector": str(scene.boxes), "outputs.events": (), "sources.loop": True,
        "run.duration_s": 5.0, "outputs.status_every_s": 0.0})
    calls = []
    original = embedder.run
    embedder.run = lambda *a: calls.append(1) or original(*a)
    summary = run_live(embedder, small_model, settings)
    assert len(calls) <= 5 / 0.3 + 2  # one call in flight at a time
    for stream in ("rgb", "ir"):
        assert summary.processed[stream] > 2 * len(calls), (summary, len(calls))
        assert summary.processed[stream] + summary.dropped[stream] <= summary.captured[stream]
    assert summary.events.get("track_started", 0) > 0 and summary.events.get("match", 0) >= 0


def test_a_round_slower_than_the_cameras_makes_frames_drop_not_queue(scene, small_model):
    """Detection takes 0.3 s a frame: each round takes the newest frames, the rest are
    dropped and counted, and no source ever holds more than one."""
    from deen.backends import open_embedder
    from deen.runtime.live import run_live
    from deen.runtime.settings import LiveSettings

    class SlowBoxes(JsonlBoxes):
        def detect(self, image, stream, frame):
            time.sleep(0.3)
            return super().detect(image, stream, frame)

    settings = LiveSettings().updated({
        "sources.rgb": str(scene.visible), "sources.ir": str(scene.infrared),
        "detection.detector": str(scene.boxes), "outputs.events": (), "sources.loop": True,
        "run.duration_s": 5.0, "outputs.status_every_s": 0.0})
    summary = run_live(open_embedder(small_model, device="cpu"), small_model, settings,
                       detector=SlowBoxes(scene.boxes))
    for stream in ("rgb", "ir"):
        assert summary.dropped[stream] > 10, summary
        assert summary.processed[stream] + summary.dropped[stream] <= summary.captured[stream]
    assert summary.rounds >= 5 and "dropped" in summary.lines()[0]


def test_gallery_cli_enrols_lists_and_names_tracks_in_a_run(scene, small_model, tmp_path):
    """Enrol crops of generated person 0 as 'alice', then run with the gallery: tracks are
    named (a random model finds everyone similar, so this checks the plumbing, not accuracy)."""
    crops = tmp_path / "alice"
    crops.mkdir()
    capture = cv2.VideoCapture(str(scene.visible))
    truth = read_truth(scene.boxes)
    for frame in range(scene.frames):
        ok, image = capture.read()
        for box, who in truth.get(("rgb", frame), []):
            if who == 0 and ok:
                x1, y1, x2, y2 = (int(v) for v in box)
                cv2.imwrite(str(crops / f"{frame:03d}.png"), image[y1:y2, x1:x2])
    gallery = tmp_path / "gallery.db"
    added = _deen("gallery", "add", "alice", "--images", str(crops), "--modality", "visible",
                  "--model", str(small_model), "--device", "cpu", "--gallery", str(gallery))
    assert added.returncode == 0, added.stderr
    listed = _deen("gallery", "list", "--gallery", str(gallery))
    assert listed.returncode == 0 and "alice" in listed.stdout
    events_path = tmp_path / "events.jsonl"
    result = _deen("run", "--rgb", str(scene.visible), "--ir", str(scene.infrared), "--model",
                   str(small_model), "--device", "cpu", "--detector", str(scene.boxes),
                   "--gallery", str(gallery), "--set", "gallery.threshold=0.0", "--events",
                   str(events_path), "--no-realtime", "--set", "embedding.budget=2",
                   "--set", "outputs.status_every_s=0", timeout=300)
    assert result.returncode == 0, result.stderr
    named = [e for e in _events(events_path) if e["event"] == "recognised"]
    assert named and {e["name"] for e in named} == {"alice"}
    other = tmp_path / "other.pt"
    model, _ = random_model("regdb", 1)
    save_checkpoint(model, other, {"input_size": [64, 24]})
    refused = _deen("gallery", "add", "bob", "--images", str(crops), "--modality", "visible",
                    "--model", str(other), "--device", "cpu", "--gallery", str(gallery))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert (f"gallery was built with {small_model.name} (checkpoint, SHA-256 " in refused.stderr
            and "not with other.pt (checkpoint, SHA-256 " in refused.stderr
            and "(another checkpoint)" in refused.stderr), refused.stderr
    removed = _deen("gallery", "remove", "alice", "--gallery", str(gallery))
    assert removed.returncode == 0 and "removed" in removed.stdout
    mistyped = _deen("run", "--rgb", str(scene.visible), "--ir", str(scene.infrared),
                     "--model", str(small_model), "--detector", str(scene.boxes),
                     "--gallery", str(tmp_path / "galery.db"))
    assert mistyped.returncode == 1 and not (tmp_path / "galery.db").exists()
    assert mistyped.stderr.strip().endswith("galery.db: no such gallery file (deen gallery add "
                                            "creates one)")
