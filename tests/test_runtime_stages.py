"""Each stage of a live round alone (deen.runtime.stages), on hand-made frames and vectors."""

from __future__ import annotations

import numpy as np
import pytest

from deen.modality import Modality
from deen.runtime import stages
from deen.runtime.detect import Detections, Detector
from deen.runtime.events import EventKind, EventLog
from deen.runtime.faults import Faults
from deen.runtime.gallery import Gallery
from deen.runtime.identity import RelinkSettings
from deen.runtime.matching import EmbeddingSettings, MatchingSettings
from deen.runtime.sources import Frame
from deen.runtime.tracking import TrackingSettings

V, R = Modality.VISIBLE, Modality.INFRARED
BOX = np.array([[100, 40, 140, 120]], np.float32)


def _frame(index: int, value: int = 90, time: float | None = None) -> Frame:
    image = np.full((240, 320, 3), value, np.uint8)
    return Frame(image, float(index) if time is None else time, index, index)


def _faults() -> tuple[Faults, list[tuple[str, str, int]]]:
    reported: list[tuple[str, str, int]] = []
    return Faults(lambda *a: reported.append(a)), reported


class _Boxes(Detector):
    """One person at BOX in every frame; raises on the streams in ``fail``."""

    name = "test"

    def __init__(self, fail: tuple[str, ...] = ()) -> None:
        self.fail = fail

    def detect(self, image, stream, frame):
        if stream in self.fail:
            raise RuntimeError(f"{stream} detector broke")
        return Detections(BOX.copy(), np.ones(1, np.float32))


class _Embedder:
    """Returns the vector of ``table[track crop's mean]`` or a fixed one, as Embedder.embed."""

    dim = 4

    def __init__(self, rows: list[list[float]] | None = None) -> None:
        self.rows, self.calls = rows, []

    def embed(self, crops, modalities, batch_size=16):
        self.calls.append(len(crops))
        if self.rows is not None:
            return np.asarray(self.rows[:len(crops)], np.float32)
        return np.tile(np.array([1, 0, 0, 0], np.float32), (len(crops), 1))


def _tracked_round(state: stages.LiveState, index: int, streams=(V, R)) -> stages.Round:
    """A round whose frames have been detected and tracked (one person per stream)."""
    round_ = stages.Round({m: _frame(index) for m in streams})
    stages.Detect(_Boxes(), _faults()[0])(round_, state)
    return round_


def test_detect_counts_a_failing_stream_and_keeps_the_other():
    faults, reported = _faults()
    round_ = stages.Round({V: _frame(0), R: _frame(0)})
    stages.Detect(_Boxes(fail=("ir",)), faults)(round_, stages.LiveState())
    assert round_.found[R] is None and len(round_.found[V]) == 1
    assert faults.counts == {"detect:ir": 1} and reported[0][0] == "detect:ir"
    assert round_.tracked() == [(V, round_.frames[V])]


def test_track_starts_and_ends_tracks_and_tells_the_stages_that_forget():
    forgotten = []

    class Forgetful:
        name = "forgetful"

        def __call__(self, round_, state):
            pass

        def forget(self, key, state, when):
            forgotten.append((key, when))

    state = stages.LiveState()
    state.stages = [Forgetful()]
    track = stages.Track(TrackingSettings(min_hits=1, max_lost=1))
    round_ = _tracked_round(state, 0, (V,))
    track(round_, state)
    assert [e[0] for e in round_.events] == [EventKind.TRACK_STARTED]
    assert [t.track_id for t in state.active[V]] == [1]
    state.book.add((V, 1), np.ones(4), 0.0)
    ends = []
    for index in (1, 2, 3):  # the person is gone: no detections
        round_ = stages.Round({V: _frame(index)}, found={V: Detections.empty()})
        track(round_, state)
        ends += [(index, e[0], round_.ended) for e in round_.events]
    assert ends == [(2, EventKind.TRACK_ENDED, {(V, 1)})]  # lost for more than max_lost
    assert forgotten == [((V, 1), 2.0)] and (V, 1) not in state.book.entries


def test_crops_keep_people_tall_enough_to_embed():
    state = stages.LiveState()
    round_ = _tracked_round(state, 0, (V,))
    stages.Track(TrackingSettings(min_hits=1))(round_, state)
    stages.Crops(EmbeddingSettings(min_box_height=100))(round_, state)
    assert round_.crops == {}
    stages.Crops(EmbeddingSettings(min_box_height=32))(round_, state)
    crop, frame = round_.crops[V, 1]
    assert crop.shape[:2] == (80, 40) and frame is round_.frames[V]


def test_level_light_divides_crops_by_the_streams_light_level():
    level = stages.LevelLight()
    state = stages.LiveState()
    for value in (100, 125):
        round_ = stages.Round({V: _frame(0, value)}, found={V: Detections.empty()})
        round_.crops[V, 1] = (np.full((10, 5, 3), value, np.uint8), round_.frames[V])
        level(round_, state)
        assert round_.crops[V, 1][0].mean() == pytest.approx(100, abs=1)


def test_place_learns_only_from_paired_rounds_and_forgets_ended_pairs():
    place = stages.Place()
    state = stages.LiveState()
    round_ = _tracked_round(state, 0)
    stages.Track(TrackingSettings(min_hits=1))(round_, state)
    place(round_, state)  # not paired
    assert not place.registration.rounds
    round_.paired = True
    place(round_, state)
    assert len(place.registration.rounds) == 1 and place.distances() is None
    place.geometry.observe(place.registration.current or _identity_map(), [(1, BOX[0])],
                           [(1, BOX[0])])
    assert place.geometry.matrix([1], [1])[0, 0] == pytest.approx(0.0)
    place.forget((V, 1), state, 0.0)
    assert np.isnan(place.geometry.matrix([1], [1])[0, 0])


def _identity_map():
    from deen.runtime.registration import ViewMap

    return ViewMap(1.0, 0.0, 0.0, 100, 1.0)


def test_embed_spends_the_budget_on_new_tracks_and_drops_non_finite_rows():
    faults, _ = _faults()
    state = stages.LiveState()
    crop = np.zeros((40, 20, 3), np.uint8)
    for track in (1, 2, 3):
        state.active[V].append(_track(track))
    state.book.add((V, 1), np.ones(4), 0.0)  # embedded before: waits
    embedder = _Embedder([[1, 0, 0, 0], [np.nan, 0, 0, 0]])
    embed = stages.Embed(embedder, faults, EmbeddingSettings(budget=2))
    round_ = stages.Round({V: _frame(5)})
    round_.crops = {(V, t): (crop, round_.frames[V]) for t in (1, 2, 3)}
    embed(round_, state)
    assert embedder.calls == [2] and state.pending == 1
    assert [k for k, _, _ in round_.embedded] == [(V, 2)]  # (V, 3)'s row was not finite
    assert state.embedded == 1 and faults.counts["non-finite embedding"] == 1
    assert list(state.candidates) == [(V, 1)]


def _track(track_id: int):
    from deen.runtime.tracking import Track

    return Track(track_id, BOX[0].copy(), 1.0, 0, 0, confirmed=True)


def test_match_reports_a_pair_once_confirmed():
    state = stages.LiveState()
    state.book.add((V, 1), np.array([1.0, 0, 0, 0]), 0.0)
    state.book.add((R, 7), np.array([0.9, 0.1, 0, 0]), 0.0)
    match = stages.Match(MatchingSettings(threshold=0.5, confirm_rounds=2))  # no map stage
    kinds = []
    for index in range(3):
        round_ = stages.Round({V: _frame(index)})
        match(round_, state)
        kinds.append([e[0] for e in round_.events])
    assert kinds == [[], [EventKind.MATCH], []]
    assert match.partner((V, 1)) == 7 and match.partner((R, 7)) == 1


def test_relink_gives_a_returning_person_their_earlier_id_and_says_so():
    state = stages.LiveState()
    match = stages.Match()
    relink = stages.Relink(match, None, RelinkSettings(min_embeddings=2, default=0.8,
                                                       hold_s=0.0))  # announced at once
    state.stages = [relink]
    look, other = np.array([1.0, 0, 0, 0]), np.array([0, 1.0, 0, 0])
    state.active[V] = [_track(1), _track(2)]
    state.book.add((V, 1), look, 0.0)
    state.book.add((V, 2), other, 0.0)
    relink(stages.Round({V: _frame(0)}), state)
    first = relink.person_of((V, 1))
    state.end((V, 1), 1.0)  # person 1 leaves
    state.active[V] = [_track(2), _track(3)]
    state.book.add((V, 3), look * 0.99 + 0.01, 0.0)
    round_ = stages.Round({V: _frame(1)})
    relink(round_, state)  # one embedding: not compared yet, a new person announced
    assert round_.events == [] and relink.person_of((V, 3)) != first
    state.book.add((V, 3), look, 0.0)
    round_ = stages.Round({V: _frame(2)})
    relink(round_, state)
    assert relink.person_of((V, 3)) == first
    (kind, _, fields), = round_.events
    assert kind == EventKind.PERSON_CHANGED
    assert fields["reason"] == "relinked" and fields["track"] == 3
    relink.annotate(round_)
    assert fields["person"] == first and fields["previous"] != first


def test_name_recognises_embedded_tracks_from_the_gallery(tmp_path):
    faults, _ = _faults()
    with Gallery(tmp_path / "g.db", "model", 4) as gallery:
        gallery.add("alice", V, np.array([[1.0, 0, 0, 0]], np.float32), ["a.png"])
        name = stages.Name(gallery, faults, threshold=0.6)
        state = stages.LiveState()
        state.book.add((V, 1), np.array([1.0, 0.1, 0, 0]), 0.0)
        round_ = stages.Round({V: _frame(3)}, embedded=[((V, 1), 3.0, 3)])
        name(round_, state)
        assert state.names == {(V, 1): "alice"}
        (kind, when, fields), = round_.events
        assert kind == EventKind.RECOGNISED and when == 3.0 and fields["name"] == "alice"
        name(round_, state)  # named already: no second event
        assert len(round_.events) == 1


def _started(round_: stages.Round, track: int, frame: int) -> None:
    round_.emit(EventKind.TRACK_STARTED, float(frame), stream="rgb", frame=frame, track=track,
                box=BOX[0].copy(), score=1.0)


def test_relink_announces_a_new_track_once_its_person_is_decided():
    state = stages.LiveState()
    relink = stages.Relink(stages.Match(), None, RelinkSettings(min_embeddings=2, default=0.8,
                                                                hold_s=1.5))
    state.stages = [relink]
    look, other = np.array([1.0, 0, 0, 0]), np.array([0, 1.0, 0, 0])
    state.active[V] = [_track(1), _track(2)]
    state.book.add((V, 1), look, 0.0)
    state.book.add((V, 1), look, 0.0)
    state.book.add((V, 2), other, 0.0)
    round_ = stages.Round({V: _frame(0)})
    _started(round_, 1, 0)
    relink(round_, state)
    relink.annotate(round_)  # 1 has two embeddings: compared (no one seen before), announced
    assert [(e[2]["track"], e[2]["person"]) for e in round_.events] == [(1, 1)]
    assert relink.held((V, 2)) and not relink.held((V, 1))
    first = relink.person_of((V, 1))
    state.end((V, 1), 1.0)  # person 1 leaves; 3 comes in: held, nothing said of it yet
    state.active[V] = [_track(2), _track(3)]
    state.book.add((V, 3), look * 0.99 + 0.01, 0.0)
    state.clock = 1.0
    round_ = stages.Round({V: _frame(1)})
    _started(round_, 3, 1)
    relink(round_, state)
    relink.annotate(round_)
    assert relink.held((V, 3)) and [e[2].get("track") for e in round_.events] == []
    state.book.add((V, 3), look, 0.0)  # compared now: person 1 is back, announced as 1
    state.clock = 1.2
    round_ = stages.Round({V: _frame(2)})
    relink(round_, state)
    relink.annotate(round_)
    (kind, when, fields), = round_.events
    assert kind == EventKind.TRACK_STARTED and fields["person"] == first and when == 2.0
    assert fields["frame"] == 2 and fields["first_frame"] == 1 and not relink.held((V, 3))
    state.clock = 1.6  # 2 never embedded: announced once it has waited hold_s
    round_ = stages.Round({V: _frame(3)})
    relink(round_, state)
    assert not relink.held((V, 2))
    state.active[V] = [_track(3), _track(4)]  # 4 starts and ends unannounced: never told of
    round_ = stages.Round({V: _frame(4)})
    _started(round_, 4, 4)
    relink(round_, state)
    relink.annotate(round_)
    state.active[V] = [_track(3)]
    state.end((V, 4), 1.7)
    round_ = stages.Round({V: _frame(5)})
    round_.emit(EventKind.TRACK_ENDED, 5.0, stream="rgb", track=4, frames=1, name=None)
    relink(round_, state)
    relink.annotate(round_)
    assert round_.events == [] and relink.waiting == {}


def test_emit_sends_the_rounds_events_in_order():
    log = EventLog(None)
    round_ = stages.Round({})
    round_.emit(EventKind.TRACK_STARTED, None, stream="rgb", track=1)
    round_.emit(EventKind.TRACK_ENDED, None, stream="rgb", track=1)
    stages.Emit(log)(round_, stages.LiveState())
    assert [e["event"] for e in log.recent] == ["track_started", "track_ended"]
    assert round_.events == []
