"""Generated scenes with MOTChallenge truth, ``deen run --tracks-out`` and ``deen score``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deen.eval.live_score import read_truth, score_run, write_score
from deen.mot import read_boxes, read_seqinfo
from deen.scenes import SceneSettings, write_scene

# The cameras at their own rates and clocks; nobody stops (a person who stands still fades
# into a moving-region detector's background: the detector test below is about people who
# walk).
SMALL = SceneSettings(people=5, seconds=8, fps=10, width=320, height=240, min_in_view=2,
                      max_in_view=3, min_height=50, max_height=150, still=0, seed=3)


def _deen(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deen", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_scene(tmp_path_factory.mktemp("scene") / "s", SMALL)


def _perfect_run(truth_dir: Path, out: Path, wrong_partner: bool = False) -> Path:
    """The truth's counted boxes as a run, each person matched to themself (or, with
    ``wrong_partner``, to another person) whenever both streams show them at one moment
    (the infrared frame nearest in time to the visible one)."""
    out.mkdir()
    truth = read_truth(truth_dir)
    rgb, ir = truth.streams["rgb"].info, truth.streams["ir"].info
    rows = {}
    for stream in ("rgb", "ir"):
        boxes = read_boxes(truth_dir / stream / "gt" / "gt.txt")
        lines = []
        rows[stream] = set()
        for frame in boxes.frames():
            for track, box, counted in zip(boxes.ids[frame], boxes.boxes[frame],
                                           boxes.scores[frame], strict=True):
                if counted:
                    lines.append(f"{frame},{track},{box[0]},{box[1]},{box[2]},{box[3]},1,"
                                 "-1,-1,-1\n")
                    rows[stream].add((frame, int(track)))
        (out / f"{stream}.txt").write_text("".join(lines))
    people = sorted({t for _, t in rows["ir"]})
    swap = {p: people[(k + 1) % len(people)] for k, p in enumerate(people)}
    matches = [f"rgb,{f},{t},{swap[t] if wrong_partner else t},{g}\n"
               for f, t in sorted(rows["rgb"])
               for g in [ir.frame_at(rgb.time_of(f))] if (g, t) in rows["ir"]]
    (out / "matches.txt").write_text("".join(matches))
    return out


def test_a_scene_has_motchallenge_truth_for_both_streams(scene, tmp_path):
    truth = read_truth(scene.root)
    assert set(truth.streams) == {"rgb", "ir"}
    for stream, t in truth.streams.items():
        fps, start, frames = SMALL.stream_timing()[stream]
        assert t.info == read_seqinfo(scene.root / stream / "seqinfo.ini")
        assert (t.info.length, t.info.fps, t.info.start) == (frames, fps, start)
        assert (t.info.width, t.info.height) == (320, 240)
        assert t.counted.rows() > 0
        heights = [h for b in t.counted.boxes.values() for h in b[:, 3]]
        assert min(heights) >= 0.5 * SMALL.min_height and max(heights) <= SMALL.max_height
        in_view = [len(ids) for ids in t.counted.ids.values()]
        assert max(in_view) <= SMALL.max_in_view
    key = (scene.root / "identities.csv").read_text().splitlines()
    assert key[0] == "stream,id,person" and truth.person["rgb", 1] == "person001"
    # The same seed writes the same truth; another seed another.
    again = write_scene(tmp_path / "again", SMALL)
    assert (again.root / "rgb/gt/gt.txt").read_text() == \
        (scene.root / "rgb/gt/gt.txt").read_text()
    other = write_scene(tmp_path / "other", SceneSettings(**{**SMALL.__dict__, "seed": 4}))
    assert (other.root / "rgb/gt/gt.txt").read_text() != \
        (scene.root / "rgb/gt/gt.txt").read_text()


def test_the_truth_scores_perfectly_and_wrong_matches_do_not(scene, tmp_path):
    perfect = score_run(scene.root, _perfect_run(scene.root, tmp_path / "perfect"))
    for stream in ("rgb", "ir"):
        assert perfect.streams[stream]["hota"] == pytest.approx(1.0)
        assert perfect.streams[stream]["idf1"] == pytest.approx(1.0)
        assert perfect.streams[stream]["mota"] == pytest.approx(1.0)
    assert perfect.match_precision == 1.0 and perfect.match_recall == 1.0
    assert perfect.first_match_s_median == 0.0 and perfect.never_matched == 0
    wrong = score_run(scene.root, _perfect_run(scene.root, tmp_path / "wrong", True))
    assert wrong.match_precision == 0.0 and wrong.match_recall == 0.0
    assert wrong.never_matched > 0
    written = write_score(perfect, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "score.json").read_text())["match_precision"] == 1.0
    assert "| match precision | 100.0%" in (tmp_path / "out" / "score.md").read_text()
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(pngs) == len(perfect.timelines) >= 1 and pngs[0].stat().st_size > 1000


def _rows_and_events(out: Path, events: Path) -> tuple[dict, list[dict]]:
    rows = {s: {(int(f), int(i)): [float(v) for v in box]
                for f, i, *box in (line.split(",")[:6] for line in
                                   (out / f"{s}.txt").read_text().splitlines())}
            for s in ("rgb", "ir")}
    return rows, [json.loads(line) for line in events.read_text().splitlines()]


def _said_as_written(rows: dict, said: list[dict]) -> list[dict]:
    """The person an event gives a track is the id its row carries at that frame (and a
    track_started's box is that row's box). Returns the track_started events."""
    started = [e for e in said if e["event"] == "track_started"]
    changed = [e for e in said if e["event"] == "person_changed"]
    for event in started + changed:
        assert (event["frame"] + 1, event["person"]) in rows[event["stream"]], event
    for event in started:
        x1, y1, x2, y2 = event["box"]
        assert rows[event["stream"]][event["frame"] + 1, event["person"]] == pytest.approx(
            [x1, y1, x2 - x1, y2 - y1], abs=0.1)
    return started


def test_deen_run_tracks_out_is_scored_against_the_scene(scene, small_model, tmp_path):
    out, events = tmp_path / "run", tmp_path / "events.jsonl"
    done = _deen("run", "--rgb", str(scene.visible), "--ir", str(scene.infrared), "--model",
                 str(small_model), "--device", "cpu", "--no-flip", "--detector",
                 str(scene.boxes), "--no-realtime", "--events", str(events), "--set",
                 "outputs.status_every_s=0", "--tracks-out", str(out), "--set",
                 "relink.enabled=false")
    assert done.returncode == 0, done.stderr
    rows, said = _rows_and_events(out, events)
    assert _said_as_written(rows, said)
    # Matches join the two streams' tracks into one person, and say so.
    assert any(e["event"] == "person_changed" for e in said)
    rgb = (out / "rgb.txt").read_text().splitlines()
    frame, _track, *_ = rgb[0].split(",")
    assert int(frame) >= 1 and len(rgb[0].split(",")) == 10
    assert json.loads((out / "matches.json").read_text()) is not None
    scored = _deen("score", "--truth", str(scene.root), "--run", str(out), "--json",
                   str(tmp_path / "s.json"))
    assert scored.returncode == 0, scored.stderr
    result = json.loads((tmp_path / "s.json").read_text())
    # Exact boxes: tracking is good whatever the (random) model does; the infrared tracks
    # change person once, when they are matched to the visible ones.
    assert result["idf1"]["rgb"] >= 0.8 and result["hota"]["ir"] >= 0.6
    assert 0 < result["idf1_cross"] <= 1
    assert {"match_precision", "match_recall", "matches_per_true_pair"} <= set(result)
    assert (out / "timelines").is_dir()


def test_a_track_is_announced_once_its_person_is_decided(scene, small_model, tmp_path):
    """With relinking (the default), a new track is held until its person is decided: its
    track_started comes then, as of that frame, and its rows start there."""
    out, events = tmp_path / "run", tmp_path / "events.jsonl"
    done = _deen("run", "--rgb", str(scene.visible), "--ir", str(scene.infrared), "--model",
                 str(small_model), "--device", "cpu", "--no-flip", "--detector",
                 str(scene.boxes), "--no-realtime", "--events", str(events), "--set",
                 "outputs.status_every_s=0", "--tracks-out", str(out))
    assert done.returncode == 0, done.stderr
    rows, said = _rows_and_events(out, events)
    started = _said_as_written(rows, said)
    assert all(e["first_frame"] <= e["frame"] for e in started if "first_frame" in e)
    assert any(e["first_frame"] < e["frame"] for e in started if "first_frame" in e)


def _one_line(result: subprocess.CompletedProcess[str], *needles: str, code: int = 1) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_truth_runs_and_settings_get_one_line(scene, tmp_path):
    run = _perfect_run(scene.root, tmp_path / "run")
    broken = tmp_path / "broken"
    shutil.copytree(scene.root, broken)
    (broken / "ir" / "gt" / "gt.txt").unlink()
    _one_line(_deen("score", "--truth", str(broken), "--run", str(run)), "gt.txt", "missing")
    shutil.rmtree(broken)
    shutil.copytree(scene.root, broken)
    with (broken / "rgb" / "gt" / "gt.txt").open("a") as f:
        f.write("3,x,1,1,5,5\n")
    _one_line(_deen("score", "--truth", str(broken), "--run", str(run)), "gt.txt:")
    shutil.rmtree(broken)
    shutil.copytree(scene.root, broken)
    (broken / "identities.csv").unlink()
    _one_line(_deen("score", "--truth", str(broken), "--run", str(run)), "identities.csv",
              "missing", "multi-camera IDF1")
    empty = tmp_path / "empty"
    empty.mkdir()
    for stream in ("rgb", "ir"):
        (empty / f"{stream}.txt").write_text("")
    _one_line(_deen("score", "--truth", str(scene.root), "--run", str(empty)), "no tracks")
    (empty / "rgb.txt").write_text(f"{SMALL.frames + 5},1,1,1,10,20,1,-1,-1,-1\n")
    _one_line(_deen("score", "--truth", str(scene.root), "--run", str(empty)),
              "outside the sequence")
    _one_line(_deen("data", "scene", "--out", str(tmp_path / "s"), "--people", "2",
                    "--max-in-view", "3"), "--max-in-view 3", "--people", code=2)
    _one_line(_deen("data", "scene", "--out", str(tmp_path / "s"), "--height", "100",
                    "--max-height", "200"), "--max-height 200", code=2)
    exists = _deen("data", "scene", "--out", str(scene.root))
    _one_line(exists, "already exists")
    assert exists.stdout == ""  # no progress line before the error
    _one_line(_deen("data", "scene", "--out", str(tmp_path / "s"), "--light", "1"),
              "--light 1", code=2)
    _one_line(_deen("data", "scene", "--out", str(tmp_path / "s"), "--seconds", "0"),
              "--seconds 0:", code=2)
    _one_line(_deen("data", "scene", "--out", str(tmp_path / "s"), "--views", "sideways"),
              "--views sideways", "overlap or apart")
    assert not (tmp_path / "s").exists()


def test_the_motion_detector_finds_the_people_of_a_fixed_camera(scene):
    """Detection quality on a generated scene, scored against its truth at IoU 0.5."""
    import cv2
    import numpy as np

    from deen.eval.live_score import _assign, box_iou
    from deen.runtime.detect import MotionDetector

    truth = read_truth(scene.root)
    for stream, video in (("rgb", scene.visible), ("ir", scene.infrared)):
        detector, capture = MotionDetector(), cv2.VideoCapture(str(video))
        found = missed = extra = 0
        for frame in range(1, truth.streams[stream].info.length + 1):
            ok, image = capture.read()
            assert ok
            d = detector.detect(image, stream, frame - 1)
            if frame <= 10:  # the background model learns the empty scene first
                continue
            boxes = np.column_stack([d.boxes[:, :2], d.boxes[:, 2:] - d.boxes[:, :2]])
            counted = truth.streams[stream].counted.boxes.get(frame, np.zeros((0, 4)))
            ignored = truth.streams[stream].ignored.boxes.get(frame, np.zeros((0, 4)))
            pairs = _assign(box_iou(boxes, np.concatenate([counted, ignored])))
            hits = sum(g < len(counted) for _, g in pairs)
            found, missed = found + hits, missed + len(counted) - hits
            extra += len(boxes) - len(pairs)
        assert found / (found + missed) >= 0.6, (stream, found, missed)
        assert found / max(found + extra, 1) >= 0.7, (stream, found, extra)


def _moving_figures(figures: list[tuple[int, int, int, int]], frames: int = 12):
    """Frames of a still grey background, then one with dark figures (x, y, w, h) on it."""
    import numpy as np

    rng = np.random.default_rng(0)
    background = np.full((288, 384, 3), 160, np.uint8)
    for _ in range(frames):
        yield np.clip(background + rng.normal(0, 2, background.shape), 0, 255).astype(np.uint8)
    image = background.copy()
    for x, y, w, h in figures:
        image[y:y + h, x:x + w] = 30
    yield image


@pytest.mark.parametrize(("figures", "people"), [
    ([(100, 80, 36, 100), (136, 84, 36, 96)], 2),   # two people side by side: one blob, split
    ([(100, 80, 30, 100), (130, 150, 14, 20)], 1),  # a person and a bag at their feet
    ([(100, 80, 34, 100)], 1),                      # one person, not split
])
def test_the_motion_detector_splits_people_walking_side_by_side(figures, people):
    from deen.runtime.detect import MotionDetector

    detector = MotionDetector(width=384)
    for frame, image in enumerate(_moving_figures(figures)):
        found = detector.detect(image, "rgb", frame)
    assert len(found) == people, found.boxes


def _ground(offset: float = 45.0, slope: float = 0.25):
    """A learnt ground: a person with their feet at row y is offset + slope * y tall."""
    from deen.runtime.detect import GroundHeight

    ground = GroundHeight()
    ground.line = (offset, slope)
    return ground


@pytest.mark.parametrize(("figures", "people"), [
    # one person (feet at row 220, 100 px tall) and one behind them further up (feet hidden
    # at row 140, 80 px tall): one region 160 px tall, split
    ([(105, 60, 30, 80), (100, 120, 34, 100)], 2),
    ([(100, 120, 34, 100)], 1),                     # one person as tall as the ground says
    ([(110, 100, 14, 22), (100, 120, 34, 100)], 1),  # a tall person: 1.2 of the ground's,
                                                      # only their head above a person there
])
def test_the_motion_detector_splits_people_one_behind_the_other(figures, people):
    from deen.runtime.detect import MotionDetector

    detector = MotionDetector(width=384)
    detector.heights["rgb"] = _ground()
    for frame, image in enumerate(_moving_figures(figures)):
        found = detector.detect(image, "rgb", frame)
    assert len(found) == people, found.boxes
    assert (found.scores >= 0.5).all()
    if people == 2:
        behind, front = sorted(found.boxes.tolist(), key=lambda b: b[3])
        assert abs(front[1] - 120) <= 2 and abs(front[3] - 220) <= 2
        assert abs(behind[1] - 60) <= 2 and abs(behind[3] - 140) <= 3


def test_a_region_much_shorter_than_a_person_there_starts_no_track():
    from deen.runtime.detect import MotionDetector

    detector = MotionDetector(width=384)
    detector.heights["rgb"] = _ground()
    for frame, image in enumerate(_moving_figures([(100, 170, 20, 50), (250, 120, 34, 100)])):
        found = detector.detect(image, "rgb", frame)
    part, whole = sorted(zip(found.boxes.tolist(), found.scores.tolist(), strict=True),
                         key=lambda pair: pair[0][0])
    assert part[1] < 0.5 <= whole[1]


def test_the_ground_is_learnt_from_boxes_and_ignores_groups():
    import numpy as np

    from deen.runtime.detect import GroundHeight

    rng = np.random.default_rng(0)
    ground = GroundHeight()
    for _ in range(200):
        foot = float(rng.uniform(150, 550))
        height = (30 + 0.4 * foot) * float(rng.uniform(0.9, 1.1))
        if rng.random() < 0.1:  # two people one behind the other: a region far too tall
            height *= 1.6
        ground.add(foot, height)
    for foot in (200.0, 500.0):
        assert ground.height_at(foot) == pytest.approx(30 + 0.4 * foot, rel=0.05)
    flat = GroundHeight()  # every box at one row: no line to fit
    for _ in range(200):
        flat.add(300.0, float(rng.uniform(90, 110)))
    assert flat.height_at(300.0) is None


def _write(folder: Path, frames: list[dict]) -> None:
    """A TracksWriter fed one snapshot per frame: {stream: [TrackView, ...]}."""
    from types import SimpleNamespace

    import numpy as np

    from deen.modality import Modality
    from deen.runtime.sources import Frame
    from deen.runtime.tracks_out import TracksWriter

    writer = TracksWriter(folder)
    image = np.zeros((4, 4, 3), np.uint8)
    for index, tracks in enumerate(frames):
        snapshot = SimpleNamespace(tracks={m: tuple(tracks.get(m, ())) for m in Modality})
        writer(snapshot, {m: Frame(image, 0.0, index, index) for m in Modality})
    writer.close()


def test_tracks_out_writes_the_person_each_row_had_when_it_was_emitted(tmp_path):
    """Visible track 5 is person 7 for two frames, then recognised as person 1: its rows say
    7, 7, 1, 1 (nothing is rewritten); its infrared partner 8 carries the person it had at
    each frame, and match rows name the partner's person and frame."""
    import numpy as np

    from deen.modality import Modality
    from deen.runtime.pipeline import TrackView

    box = np.array([10.0, 20.0, 40.0, 100.0])
    frames = [{Modality.VISIBLE: [TrackView(5, box, 8, None, p, p)],
               Modality.INFRARED: [TrackView(8, box, 5, None, p, p)]} for p in (7, 7, 1, 1)]
    _write(tmp_path, frames)
    rows = [line.split(",")[:2] for line in (tmp_path / "rgb.txt").read_text().splitlines()]
    assert rows == [["1", "7"], ["2", "7"], ["3", "1"], ["4", "1"]]
    matches = (tmp_path / "matches.txt").read_text().splitlines()
    assert matches[:2] == ["rgb,1,7,7,1", "ir,1,7,7,1"]
    assert json.loads((tmp_path / "matches.json").read_text()) == [
        {"rgb": 7, "ir": 7, "first": 1, "last": 2}, {"rgb": 1, "ir": 1, "first": 3, "last": 4}]


def test_tracks_settle_decides_ids_offline_and_says_so(tmp_path):
    """Visible tracks 1 (Alice) and 2 (Bob) are seen together; Alice leaves and comes back as
    track 3, which the live run did not recognise (a new person, 9). deen tracks settle
    joins track 3 to Alice with the whole run seen, into a new folder marked offline; deen
    score says its numbers are offline."""
    import numpy as np

    from deen.modality import Modality
    from deen.runtime.pipeline import TrackView

    alice, bob = np.array([3.0, 0.2, 0.0]), np.array([0.1, 3.0, 0.3])
    box = np.array([10.0, 20.0, 40.0, 100.0])
    frames = []
    for frame in range(1, 8):
        visible = [TrackView(1, box, None, None, 1, appearance=alice),
                   TrackView(2, box + 50, None, None, 2, appearance=bob)] if frame <= 3 else [
            TrackView(3, box, None, None, 9, appearance=alice + 0.1)] if frame >= 5 else []
        frames.append({Modality.VISIBLE: visible})
    run = tmp_path / "run"
    _write(run, frames)
    live = {int(line.split(",")[1]) for line in (run / "rgb.txt").read_text().splitlines()}
    assert live == {1, 2, 9}
    done = _deen("tracks", "settle", str(run), "--out", str(tmp_path / "settled"))
    assert done.returncode == 0, done.stderr
    assert "offline" in done.stdout
    rows = [tuple(map(int, line.split(",")[:2])) for line in
            (tmp_path / "settled" / "rgb.txt").read_text().splitlines()]
    assert {i for f, i in rows if f >= 5} == {i for f, i in rows if f <= 3 and i != 2}
    assert json.loads((tmp_path / "settled" / "settled.json").read_text())["offline"] is True
    again = _deen("tracks", "settle", str(run), "--out", str(tmp_path / "settled"))
    _one_line(again, "already exists")
    _one_line(_deen("tracks", "settle", str(tmp_path), "--out", str(tmp_path / "x")),
              "run.npz", "missing")


def test_an_earlier_score_needs_force_and_is_then_replaced(scene, tmp_path):
    run = _perfect_run(scene.root, tmp_path / "run")
    assert _deen("score", "--truth", str(scene.root), "--run", str(run)).returncode == 0
    stale = run / "timelines" / "someone-else.png"
    stale.write_bytes(b"")
    again = _deen("score", "--truth", str(scene.root), "--run", str(run))
    assert (again.returncode, again.stdout) == (1, ""), again.stderr
    assert again.stderr == (f"deen score: error: --out-dir {run}: holds an earlier result "
                            "(score.json, score.md, timelines); choose another folder, or add "
                            "--force to replace it\n")
    json_dir = _deen("score", "--truth", str(scene.root), "--run", str(run), "--json",
                     str(tmp_path))
    assert json_dir.stderr == (f"deen score: error: --json {tmp_path}: is a folder; give a "
                               "file name\n")
    forced = _deen("score", "--truth", str(scene.root), "--run", str(run), "--force")
    assert forced.returncode == 0, forced.stderr
    assert not stale.exists() and (run / "score.json").is_file() and (run / "rgb.txt").is_file()


def test_the_timeline_shows_its_last_frame_label_whole(tmp_path):
    """The last x label (the sequence's last frame) ends inside the image, not cut at its
    right edge (``300`` read ``30``)."""
    import cv2
    import numpy as np

    from deen.eval.live_score import PersonTimeline, draw_timeline

    line = PersonTimeline("p1", 300, {"rgb": list(range(1, 301))}, list(range(1, 301)))
    draw_timeline(line, tmp_path / "p1.png", width=900)
    image = cv2.imread(str(tmp_path / "p1.png"), cv2.IMREAD_GRAYSCALE)
    labels = image[-14:] < 200  # the bottom strip: the frame numbers
    columns = np.flatnonzero(labels.any(axis=0))
    (text_w, _), _ = cv2.getTextSize("300", cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
    assert columns.max() <= image.shape[1] - 3  # a margin after the last digit
    # the last label is whole: ink spans its width at the right end
    assert columns.max() - columns[columns > image.shape[1] - text_w - 10].min() >= text_w - 3
