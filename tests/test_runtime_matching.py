"""Matching logic on hand-made embeddings: assignment, threshold, confirmation, breaking,
the embedding budget, the tracker, and the SQLite gallery (restart and killed process)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from deen.errors import DeenError
from deen.modality import Modality
from deen.runtime.detect import Detections
from deen.runtime.gallery import Gallery
from deen.runtime.matching import (
    AppearanceBook,
    CrossCameraMatcher,
    MatchingSettings,
    choose_tracks,
)
from deen.runtime.tracking import ByteTracker, TrackingSettings

V, R = Modality.VISIBLE, Modality.INFRARED


def _book(visible: dict[int, list[float]], infrared: dict[int, list[float]]) -> AppearanceBook:
    book = AppearanceBook()
    for key, vector in [*(((V, k), v) for k, v in visible.items()),
                        *(((R, k), v) for k, v in infrared.items())]:
        book.add(key, np.asarray(vector, dtype=np.float64), 0.0)
    return book


def test_assignment_is_one_to_one_and_optimal_not_greedy():
    # Greedy would take v1–r1 (0.95) and be left with v2–r2 (0.54): 1.49 in all; the
    # optimum v1–r2 + v2–r1 is 0.82 + 0.90 = 1.72.
    a = np.array([1.0, 0.0, 0.0])
    v1 = a * 0.95 + np.array([0, 0.312, 0])
    book = _book({1: v1, 2: [0.9, 0.0, 0.436]}, {1: a, 2: [0.6, 0.8, 0.0]})
    sims = {(i, j): float(book.entries[V, i].vector @ book.entries[R, j].vector)
            for i in (1, 2) for j in (1, 2)}
    pairs = CrossCameraMatcher(MatchingSettings(threshold=0.0, without_map=True)).assign(book)
    assert set(pairs) == {(1, 2), (2, 1)}
    assert sims[1, 2] + sims[2, 1] > sims[1, 1] + sims[2, 2]


def test_threshold_leaves_dissimilar_tracks_unmatched():
    book = _book({1: [1, 0], 2: [0, 1]}, {7: [1, 0.1], 8: [-1, 0]})
    assert CrossCameraMatcher(MatchingSettings(threshold=0.5, without_map=True)).assign(book) == {
        (1, 7): pytest.approx(float(np.dot([1, 0], [1, 0.1]) / np.hypot(1, 0.1)))}


def test_match_confirmed_after_rounds_and_broken_when_it_stops_holding():
    matcher = CrossCameraMatcher(MatchingSettings(threshold=0.5, confirm_rounds=3, break_rounds=2,
                                                  without_map=True))
    book = _book({1: [1, 0]}, {5: [1, 0]})
    assert matcher.update(book) == []
    assert matcher.update(book) == []
    (event,) = matcher.update(book)
    assert (event.kind, event.visible, event.infrared) == ("match", 1, 5)
    assert matcher.partner((V, 1)) == 5 and matcher.partner((R, 5)) == 1
    assert matcher.update(book) == []  # holds: no new event
    changed = _book({1: [0, 1]}, {5: [1, 0]})  # the visible track's appearance turned away
    assert matcher.update(changed) == []
    (event,) = matcher.update(changed)
    assert (event.kind, event.reason) == ("unmatch", "no longer similar")
    assert matcher.partner((V, 1)) is None


def test_a_streak_must_be_unbroken():
    matcher = CrossCameraMatcher(MatchingSettings(threshold=0.5, confirm_rounds=2,
                                                  without_map=True))
    same, other = _book({1: [1, 0]}, {5: [1, 0]}), _book({1: [0, 1]}, {5: [1, 0]})
    assert matcher.update(same) == [] and matcher.update(other) == []
    assert matcher.update(same) == []
    assert [e.kind for e in matcher.update(same)] == ["match"]


def test_ended_track_breaks_its_match():
    matcher = CrossCameraMatcher(MatchingSettings(threshold=0.5, confirm_rounds=1,
                                                  without_map=True))
    book = _book({1: [1, 0]}, {5: [1, 0]})
    assert [e.kind for e in matcher.update(book)] == ["match"]
    book.drop((R, 5))
    (event,) = matcher.update(book, ended={(R, 5)})
    assert (event.kind, event.reason) == ("unmatch", "track ended")


def test_running_mean_is_normalised_mean_of_unit_embeddings():
    book = AppearanceBook()
    book.add((V, 1), np.array([10.0, 0.0]), 1.0)
    book.add((V, 1), np.array([0.0, 0.1]), 2.0)  # scale does not matter, direction does
    np.testing.assert_allclose(book.entries[V, 1].vector, [2 ** -0.5, 2 ** -0.5])
    assert book.entries[V, 1].count == 2 and book.entries[V, 1].last_embedded == 2.0


def test_budget_takes_new_tracks_first_then_the_stalest():
    book = AppearanceBook()
    book.add((V, 1), np.ones(2), when=5.0)
    book.add((R, 2), np.ones(2), when=1.0)
    book.add((V, 3), np.ones(2), when=3.0)
    candidates = [(V, 1), (R, 2), (V, 3), (R, 9), (V, 8)]
    assert choose_tracks(candidates, book, 3) == [(R, 9), (V, 8), (R, 2)]
    assert choose_tracks(candidates, book, 10)[-1] == (V, 1)


def test_tracker_keeps_identity_of_a_walking_person_and_ends_lost_tracks():
    tracker = ByteTracker(TrackingSettings(min_hits=2, max_lost=3))
    started, ids = [], set()
    for frame in range(10):
        x = 10 + 6 * frame
        people = Detections(np.array([[x, 20, x + 40, 120], [300 - x, 20, 340 - x, 120]],
                                     np.float32), np.array([0.9, 0.3], np.float32))
        update = tracker.update(people, frame)
        started += update.started
        ids |= {t.track_id for t in update.active}
    # The low-score person is never started (ByteTrack starts tracks from high scores only).
    assert len(started) == 1 and ids == {started[0].track_id}
    for frame in range(10, 14):
        update = tracker.update(Detections.empty(), frame)
    assert [t.track_id for t in update.ended] == [started[0].track_id]


def test_a_walking_person_keeps_their_track_across_frames_the_camera_dropped():
    """A small person (20×60 px) walking 8 px a frame; a live camera drops frames 6-9: the
    prediction moves them the five frames that passed, so frame 10 is still their track."""
    tracker = ByteTracker(TrackingSettings(min_hits=1))
    ids = set()
    for frame in [*range(6), *range(10, 14)]:
        x = 10 + 8 * frame
        update = tracker.update(Detections(np.array([[x, 20, x + 20, 80]], np.float32),
                                           np.array([0.9], np.float32)), frame)
        ids |= {t.track_id for t in update.active}
    assert len(ids) == 1


def _one_box(x: float, width: float = 20) -> Detections:
    return Detections(np.array([[x, 20, x + width, 80]], np.float32),
                      np.array([0.9], np.float32))


@pytest.mark.parametrize("recover", [0.3, 0.0])
def test_a_box_beside_a_lost_track_continues_it_unless_recovery_is_off(recover):
    """A small person (20×60 px) stands at x = 100, then is next seen 14 px on (the frames
    between were dropped): the boxes overlap by IoU 0.18, under the matching's 0.3, but the
    centre moved a quarter of a height; the track goes on (a new track is a new id)."""
    tracker = ByteTracker(TrackingSettings(min_hits=1, recover=recover))
    ids = set()
    for frame, x in [*((f, 100) for f in range(6)), (9, 114), (10, 114)]:
        ids |= {t.track_id for t in tracker.update(_one_box(x), frame, 640).active}
    assert len(ids) == (1 if recover else 2)


def test_a_track_lost_at_the_pictures_side_is_not_continued_by_someone_walking_in():
    """Someone last seen at the picture's left edge has walked out: a box there a moment
    later is someone walking in, a new track."""
    tracker = ByteTracker(TrackingSettings(min_hits=1, recover=0.3))
    ids = set()
    for frame in range(4):
        ids |= {t.track_id for t in tracker.update(_one_box(0), frame, 640).active}
    tracker.update(Detections.empty(), 4, 640)
    ids |= {t.track_id for t in tracker.update(_one_box(12), 5, 640).active}
    assert len(ids) == 2


def test_a_part_or_a_merge_is_fitted_to_the_persons_learnt_size():
    """Legs the colour of the floor leave a moving region on the upper body, and two people
    crossing make one region as wide as both: the track keeps its person's height and width
    at the place its prediction agrees with."""
    tracker = ByteTracker(TrackingSettings(min_hits=1))
    for frame in range(6):  # a whole person, 40×100 px, walking right
        x = 100 + 5 * frame
        update = tracker.update(Detections(np.array([[x, 50, x + 40, 150]], np.float32),
                                           np.array([0.9], np.float32)), frame)
    assert not update.active[0].fitted
    # Only the upper half moves against the background: the box keeps the top and the height.
    update = tracker.update(Detections(np.array([[130, 51, 170, 101]], np.float32),
                                       np.array([0.9], np.float32)), 6)
    track = update.active[0]
    assert track.fitted and np.allclose(track.box, [130, 51, 170, 151], atol=1)
    # A second person joins them in one region 90 px wide: the box is one person wide, where
    # the walk predicted them (x about 135..175), not the region's centre.
    update = tracker.update(Detections(np.array([[135, 50, 225, 150]], np.float32),
                                       np.array([0.9], np.float32)), 7)
    track = update.active[0]
    assert track.fitted and track.box[2] - track.box[0] == pytest.approx(40, abs=1)
    assert abs(track.box[0] - 135) <= 8
    # Whole again: the detection is the box, and a slow change of size is learnt, not fitted.
    for frame, height in zip(range(8, 20), range(102, 126, 2), strict=True):
        x = 100 + 5 * frame
        box = np.array([[x, 50, x + 0.4 * height, 50 + height]], np.float32)
        update = tracker.update(Detections(box, np.array([0.9], np.float32)), frame)
        assert not update.active[0].fitted and np.allclose(update.active[0].box, box[0])
    # Off: the detections are the boxes.
    plain = ByteTracker(TrackingSettings(min_hits=1, fit_boxes=False))
    for frame in range(6):
        plain.update(Detections(np.array([[100, 50, 140, 150]], np.float32),
                                np.array([0.9], np.float32)), frame)
    update = plain.update(Detections(np.array([[100, 50, 140, 100]], np.float32),
                                     np.array([0.9], np.float32)), 6)
    assert not update.active[0].fitted and np.allclose(update.active[0].box, [100, 50, 140, 100])


def _people(size: tuple[int, int], *people: tuple[list[float], tuple[int, int, int]]
            ) -> np.ndarray:
    """A grey frame with each (box, BGR colour) painted in order: later ones in front."""
    image = np.full((*size, 3), 128, np.uint8)
    for (x1, y1, x2, y2), colour in people:
        image[int(y1):int(y2), int(x1):int(x2)] = colour
    return image


RED, BLUE = (40, 40, 200), (200, 60, 40)


@pytest.mark.parametrize("appearance", [1.0, 0.0])
def test_two_people_whose_boxes_overlap_keep_their_tracks_by_their_colours(appearance):
    """A person in red and one in blue stand side by side (frame 0); in the next frame each
    detection overlaps both predicted boxes, and the overlap alone favours giving the red
    track the blue person's box (0.44 + 0.50 against 0.34 + 0.31). The colours say
    otherwise: with ``appearance`` on, each track keeps its own person."""
    tracker = ByteTracker(TrackingSettings(min_hits=1, appearance=appearance))
    before = [[100, 50, 140, 150], [140, 50, 180, 150]]
    update = tracker.update(Detections(np.array(before, np.float32),
                                       np.array([0.9, 0.9], np.float32)), 0, 320,
                            _people((240, 320), (before[0], RED), (before[1], BLUE)))
    red_track = next(t.track_id for t in update.active if t.box[0] == 100)
    red, blue = [114, 48, 174, 148], [106, 60, 166, 160]  # blue is nearer (feet lower)
    update = tracker.update(Detections(np.array([red, blue], np.float32),
                                       np.array([0.9, 0.9], np.float32)), 1, 320,
                            _people((240, 320), (red, RED), (blue, BLUE)))
    box = next(t.box for t in update.active if t.track_id == red_track)
    assert np.allclose(box, red if appearance else blue)


def test_a_boxs_look_is_its_colours_head_to_feet_and_unknown_when_hidden():
    """Bands run head to feet; lightness counts less than hue (a person under a light shadow,
    three quarters of the light, stays nearer their own look than anyone in another colour
    is); a box that a nearer box covers by a fifth has no look of its own."""
    from deen.runtime.tracking import LOOK_BANDS, look_distance, looks

    image = _people((240, 320), ([10, 10, 50, 110], RED), ([10, 60, 50, 110], BLUE))
    two_tone = looks(image, np.array([[10, 10, 50, 110]], np.float32))[0]
    assert two_tone[0, 1] > two_tone[-1, 1]  # red on top (Lab a), blue below
    assert two_tone.shape == (LOOK_BANDS, 3)
    shaded = tuple(3 * c // 4 for c in RED)
    image = _people((240, 320), ([10, 10, 50, 110], RED), ([60, 10, 100, 110], shaded),
                    ([110, 10, 150, 110], BLUE))
    seen = looks(image, np.array([[10, 10, 50, 110], [60, 10, 100, 110],
                                  [110, 10, 150, 110]], np.float32))
    distance = look_distance(seen[:1], seen)[0]
    assert distance[0] == 0 and distance[1] < 0.5 < distance[2]
    # Side by side, feet level: neither is known to be in front, so neither has a look.
    behind = looks(image, np.array([[10, 10, 50, 110], [30, 10, 70, 110]], np.float32))
    assert np.isnan(behind).all()
    # The nearer one (feet lower) keeps its look; the one it hides has none.
    hidden = looks(image, np.array([[10, 10, 50, 110], [30, 20, 70, 130]], np.float32))
    assert np.isnan(hidden[0]).all() and not np.isnan(hidden[1]).any()
    assert look_distance(hidden[:1], seen)[0].max() == 0  # unknown never decides


def test_gallery_recognises_and_survives_a_restart(tmp_path):
    path = tmp_path / "gallery.db"
    with Gallery(path, "model-a", 4) as gallery:
        gallery.add("alice", V, np.array([[1, 0, 0, 0], [0.9, 0.1, 0, 0]]), ["a1", "a2"])
        gallery.add("bob", R, np.array([[0, 0, 1, 0]]), ["b1"])
    with Gallery.open_existing(path) as gallery:
        assert gallery.identities() == [("alice", 2, 0), ("bob", 0, 1)]
        found = gallery.recognise(np.array([1.0, 0, 0, 0]), threshold=0.5)
        assert found.name == "alice" and found.similarity > 0.99
        assert gallery.recognise(np.array([0, 0, 0, 1.0]), threshold=0.5) is None
        assert gallery.remove("bob") == 1
    with pytest.raises(DeenError, match="model-a"):
        Gallery(path, "model-b", 4)


def test_gallery_loses_no_committed_rows_when_the_process_is_killed(tmp_path):
    """A writer enrols 3-image identities in a loop and is SIGKILLed mid-run: every
    enrolment it reported is there, and none is half there."""
    path = tmp_path / "gallery.db"
    writer = textwrap.dedent(f"""
        import numpy as np, sys
        from deen.modality import Modality
        from deen.runtime.gallery import Gallery
        g = Gallery({str(path)!r}, "m", 8)
        rng = np.random.default_rng(0)
        for i in range(100000):
            g.add(f"person{{i}}", Modality.VISIBLE, rng.normal(size=(3, 8)), ["a", "b", "c"])
            print(i, flush=True)
    """)
    process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE,
                               text=True)
    reported = -1
    for line in process.stdout:
        reported = int(line)
        if reported >= 20:
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    with Gallery.open_existing(path) as gallery:
        counts = {name: v for name, v, _ in gallery.identities()}
        assert gallery.store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert all(f"person{i}" in counts for i in range(reported + 1))
    assert set(counts.values()) == {3}  # all of an enrolment, or none of it
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 3 * len(counts)


def _identities(**settings):
    from deen.runtime.identity import Identities, RelinkSettings

    return Identities(RelinkSettings(**settings))


def _round(ids, book, live, now=0.0, matches=(), apart=None, follow=False, near=None):
    """One identity round with ``live`` = {modality: [track ids]}."""
    return ids.update(book, {V: live.get(V, []), R: live.get(R, [])}, now, list(matches),
                      apart, follow, near)


def _leave(ids, book, keys, now):
    for key in keys:
        ids.end(key, book, now)
        book.drop(key)


def test_a_person_who_comes_back_keeps_their_id_and_a_stranger_does_not():
    ids = _identities(min_embeddings=2, default=0.8, margin=0.05)
    alice, bob, carol = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]
    book = AppearanceBook()
    for key, vector in (((V, 1), alice), ((V, 2), bob)):
        for _ in range(2):
            book.add(key, np.asarray(vector), 0.0)
    assert _round(ids, book, {V: [1, 2]}) == []
    first = ids.person_of((V, 1))
    _leave(ids, book, [(V, 1), (V, 2)], 1.0)
    # Alice comes back as track 7 (a little changed), Carol appears as track 8.
    for key, vector in (((V, 7), [0.95, 0.1, 0.0]), ((V, 8), carol)):
        for _ in range(2):
            book.add(key, np.asarray(vector), 2.0)
    changes = _round(ids, book, {V: [7, 8]}, now=2.0)
    assert [(c.key, c.person, str(c.reason)) for c in changes] == [((V, 7), first, "relinked")]
    assert ids.person_of((V, 8)) not in (first, ids.person_of((V, 7)))


@pytest.mark.parametrize("unsure", [0.2, 0.0])
def test_a_track_nearly_like_someone_seen_before_stays_held_until_a_compare_decides(unsure):
    """Alice left. Track 7's first look is near hers but under the threshold (0.8): with
    ``unsure`` it stays held (no id shown) until its next compare links it to her; without,
    that first compare decides (a new person, announced). Carol, like no one seen before, is
    announced at her first compare either way."""
    ids = _identities(min_embeddings=1, default=0.8, margin=0.05, hold_s=3.0, again=2.0,
                      unsure=unsure)
    alice, bob, carol = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]
    book = AppearanceBook()
    for key, vector in (((V, 1), alice), ((V, 2), bob)):
        book.add(key, np.asarray(vector), 0.0)
    _round(ids, book, {V: [1, 2]})
    first = ids.person_of((V, 1))
    _leave(ids, book, [(V, 1), (V, 2)], 1.0)
    book.add((V, 7), np.asarray([0.7, 0.3, 0.64]), 2.0)  # 0.7 like Alice: nearly
    book.add((V, 8), np.asarray(carol), 2.0)
    assert _round(ids, book, {V: [7, 8]}, now=2.0) == []
    assert ids.held((V, 7), 2.5) == (unsure > 0) and not ids.held((V, 8), 2.5)
    book.add((V, 7), np.asarray(alice), 2.5)  # a second look, clearly hers
    (change,) = _round(ids, book, {V: [7, 8]}, now=2.5)
    assert (change.key, change.person) == ((V, 7), first) and not ids.held((V, 7), 2.5)


def test_person_ids_are_one_space_for_both_streams():
    ids = _identities()
    book = AppearanceBook()
    _round(ids, book, {V: [1], R: [1]})
    assert ids.person_of((V, 1)) != ids.person_of((R, 1))


def test_the_relink_threshold_is_calibrated_on_people_seen_together():
    ids = _identities(min_embeddings=1, min_negatives=3, quantile=1.0, floor=0.1)
    book = AppearanceBook()
    rng = np.random.default_rng(0)
    for track in range(4):  # four people in view at once: six certainly-different pairs
        book.add((V, track), np.array([1.0, *(0.3 * rng.normal(size=3))]), 0.0)
    _round(ids, book, {V: [0, 1, 2, 3]})
    vectors = np.stack([book.entries[V, t].vector for t in range(4)])
    pairs = (vectors @ vectors.T)[np.triu_indices(4, 1)]
    assert ids.threshold(V) == pytest.approx(pairs.max())


def test_two_people_seen_together_for_many_rounds_are_one_calibration_pair():
    """Two people in view for a minute are one observation of two different people, not
    six hundred: the stream keeps the default threshold until min_negatives distinct pairs
    have been seen, however long one pair stays."""
    ids = _identities(min_embeddings=1, min_negatives=3, quantile=1.0, floor=0.1,
                      default=0.9)
    book = AppearanceBook()
    for track, vector in ((0, [1.0, 0.0]), (1, [0.6, 0.8]), (2, [0.0, 1.0])):
        book.add((V, track), np.array(vector), 0.0)
    for _ in range(50):
        _round(ids, book, {V: [0, 1]})
    assert ids.threshold(V) == 0.9
    _round(ids, book, {V: [0, 1, 2]})  # three distinct pairs now
    assert ids.threshold(V) == pytest.approx(0.8)


def test_a_match_makes_one_person_and_a_returning_person_brings_their_partner_back():
    """Alice was visible track 1 matched to infrared track 2: one person. She comes back as
    visible 7 (recognised: alike) and infrared 9, whose infrared look alone is not clear
    (half way between her and Bob); once 7 and 9 are matched, 9 is Alice too."""
    ids = _identities(min_embeddings=1, default=0.8, margin=0.05)
    alice, bob = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    book = AppearanceBook()
    for key, vector in (((V, 1), alice), ((R, 2), alice), ((R, 3), bob)):
        book.add(key, vector, 0.0)
    _round(ids, book, {V: [1], R: [2, 3]})
    changes = _round(ids, book, {V: [1], R: [2, 3]}, matches=[(1, 2)])
    alice_id = ids.person_of((V, 1))
    assert [(c.key, c.person, str(c.reason)) for c in changes] == [((R, 2), alice_id,
                                                                     "matched")]
    _leave(ids, book, [(V, 1), (R, 2), (R, 3)], 1.0)
    book.add((V, 7), np.array([0.98, 0.1]), 2.0)
    book.add((R, 9), np.array([0.7, 0.7]), 2.0)
    _round(ids, book, {V: [7], R: [9]}, now=2.0, follow=True)
    assert ids.person_of((V, 7)) == alice_id and ids.person_of((R, 9)) != alice_id
    (change,) = _round(ids, book, {V: [7], R: [9]}, now=2.0, matches=[(7, 9)], follow=True)
    assert (change.key, change.person, str(change.reason)) == ((R, 9), alice_id, "matched")


def test_a_new_track_alone_at_a_tracks_place_in_the_other_stream_is_that_person_at_once():
    """Under the view map, infrared track 4 starts where visible track 1 (Alice, seen before)
    is and nobody else: it is Alice from its first round, before any embedding; a track near
    two people waits for a match."""
    ids = _identities(min_embeddings=1)
    book = AppearanceBook()
    _round(ids, book, {V: [1, 2]})
    alice = ids.person_of((V, 1))
    places = {(R, 4): (V, 1), (R, 5): None}
    _round(ids, book, {V: [1, 2], R: [4, 5]}, follow=True, near=places.get)
    assert ids.person_of((R, 4)) == alice and ids.person_of((R, 5)) not in (
        alice, ids.person_of((V, 2)))


def test_a_track_joined_at_its_partners_place_goes_along_when_the_partner_is_recognised():
    """Alice left. She comes back as visible 7, and infrared 8 starts at her place: 8 is
    joined with 7's new person at once. When 7 is recognised as Alice, 8 is Alice in the
    same round, not only when a match confirms it later."""
    ids = _identities(min_embeddings=2, default=0.8, margin=0.05)
    alice, bob = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    book = AppearanceBook()
    for key, vector in (((V, 1), alice), ((V, 2), bob)):
        for _ in range(2):
            book.add(key, vector, 0.0)
    _round(ids, book, {V: [1, 2]})
    alice_id = ids.person_of((V, 1))
    _leave(ids, book, [(V, 1), (V, 2)], 1.0)
    book.add((V, 7), alice, 2.0)
    places = {(R, 8): (V, 7)}
    _round(ids, book, {V: [7], R: [8]}, now=2.0, follow=True, near=places.get)
    assert ids.person_of((R, 8)) == ids.person_of((V, 7)) != alice_id
    book.add((V, 7), alice, 2.1)
    changes = _round(ids, book, {V: [7], R: [8]}, now=2.1, follow=True, near=places.get)
    assert [(c.key, c.person, str(c.reason)) for c in changes] == [
        ((V, 7), alice_id, "relinked"), ((R, 8), alice_id, "matched")]


def test_both_cameras_agreeing_recognise_a_returning_person_one_camera_alone_would_not():
    """Alice and Bob were each seen by both cameras. Alice comes back, matched across the
    cameras: her visible look alone (0.90) is under the visible threshold, but both cameras
    put her first and above their lower quantile: she is recognised."""
    ids = _identities(min_embeddings=1, min_negatives=3, quantile=1.0, joint_quantile=0.5,
                      floor=0.0)
    alice_v, bob_v = np.array([1.0, 0.0, 0.0]), np.array([0.6, 0.8, 0.0])
    alice_r, bob_r = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    book = AppearanceBook()
    for key, vector in (((V, 1), alice_v), ((V, 2), bob_v), ((R, 3), alice_r),
                        ((R, 4), bob_r), ((V, 9), np.array([0.6, 0.8, 0.05]))):
        book.add(key, vector, 0.0)
    _round(ids, book, {V: [1, 2, 9], R: [3, 4]}, matches=[(1, 3), (2, 4)], follow=True)
    alice = ids.person_of((V, 1))
    assert ids.threshold(V) > 0.9  # Bob and the stranger 9 look much alike in visible
    _leave(ids, book, [(V, 1), (V, 2), (V, 9), (R, 3), (R, 4)], 1.0)
    book.add((V, 7), np.array([0.9, 0.3, 0.3]), 2.0)  # 0.90 Alice, 0.78 Bob
    book.add((R, 8), np.array([0.0, 0.95, 0.31]), 2.0)
    (change,) = [c for c in _round(ids, book, {V: [7], R: [8]}, now=2.0, matches=[(7, 8)],
                                   follow=True) if c.key == (V, 7)]
    assert (change.person, str(change.reason)) == (alice, "relinked")
    _round(ids, book, {V: [7], R: [8]}, now=2.1, matches=[(7, 8)], follow=True)
    assert ids.person_of((R, 8)) == alice  # its match brings the infrared track along


def test_a_track_matched_to_the_lead_stream_follows_it_and_not_its_own_look():
    """Bob was visible and infrared person B. A stranger comes back as visible 7 (not
    recognised) matched to infrared 9, whose infrared look is Bob's: infrared people look
    alike, so 9 follows its visible match and is the stranger."""
    ids = _identities(min_embeddings=1, follow_after=1, default=0.8, margin=0.05)
    bob, stranger = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    book = AppearanceBook()
    book.add((V, 1), bob, 0.0)
    book.add((R, 3), bob, 0.0)
    _round(ids, book, {V: [1], R: [3]}, matches=[(1, 3)], follow=True)
    bob_id = ids.person_of((V, 1))
    _leave(ids, book, [(V, 1), (R, 3)], 1.0)
    book.add((V, 7), stranger, 2.0)
    book.add((R, 9), bob, 2.0)
    _round(ids, book, {V: [7], R: [9]}, now=2.0, matches=[(7, 9)], follow=True)
    assert ids.person_of((R, 9)) == ids.person_of((V, 7)) != bob_id


def test_a_person_seen_by_one_camera_is_recognised_by_the_other_across_the_modalities():
    """Cameras at two places: Alice and Bob walk through the visible camera; later a track
    of the infrared camera looks like Alice across the modalities. It takes her id once
    the cross-modality threshold is calibrated (on tracks of the two cameras live at once,
    which are certainly two people); an ambiguous one waits."""
    ids = _identities(min_embeddings=1, cross_min_negatives=2, cross_quantile=1.0,
                      cross_floor=0.0, cross_margin=0.1, default=0.99)
    alice, bob, other = np.eye(4)[0], np.eye(4)[1], np.eye(4)[2]
    book = AppearanceBook()
    book.add((V, 1), alice, 0.0)
    book.add((V, 2), bob, 0.0)
    book.add((R, 5), other, 0.0)
    book.add((R, 6), np.array([0.1, 0.1, 0.2, 1.0]), 0.0)
    apart = {(v, r): True for v in (1, 2) for r in (5, 6)}
    _round(ids, book, {V: [1, 2], R: [5, 6]}, apart=apart)
    alice_id, bob_id = ids.person_of((V, 1)), ids.person_of((V, 2))
    assert ids.threshold("cross") == pytest.approx(0.097, abs=0.001)  # the most alike pair
    _leave(ids, book, [(V, 1), (V, 2), (R, 5), (R, 6)], 1.0)
    book.add((R, 9), np.array([0.5, 0.45, 0.0, 0.1]), 5.0)  # Alice or Bob: not clear
    assert _round(ids, book, {R: [9]}, now=5.0) == []
    _leave(ids, book, [(R, 9)], 6.0)
    book.add((R, 8), np.array([0.9, 0.2, 0.0, 0.1]), 7.0)  # Alice, clearly
    (change,) = _round(ids, book, {R: [8]}, now=7.0)
    assert (change.key, change.person, str(change.reason)) == ((R, 8), alice_id,
                                                               "cross-relinked")
    assert bob_id != alice_id


def test_no_link_across_the_modalities_before_the_threshold_is_calibrated():
    ids = _identities(min_embeddings=1)
    book = AppearanceBook()
    book.add((V, 1), np.eye(3)[0], 0.0)
    _round(ids, book, {V: [1]})
    _leave(ids, book, [(V, 1)], 1.0)
    book.add((R, 2), np.eye(3)[0], 2.0)  # identical, but nothing calibrates the threshold
    assert _round(ids, book, {R: [2]}, now=2.0) == []


def test_a_cross_default_links_across_the_modalities_before_the_threshold_is_calibrated():
    """A threshold known for the model (``cross_default``) stands in until live pairs
    calibrate one: a look above it and clear of the runner-up is linked, one below is not."""
    ids = _identities(min_embeddings=1, cross_default=0.6, cross_margin=0.1)
    book = AppearanceBook()
    book.add((V, 1), np.eye(3)[0], 0.0)
    book.add((V, 2), np.eye(3)[1], 0.0)
    _round(ids, book, {V: [1, 2]})
    alice = ids.person_of((V, 1))
    _leave(ids, book, [(V, 1), (V, 2)], 1.0)
    book.add((R, 3), np.array([0.5, 0.1, 0.86]), 2.0)  # most like Alice, but under 0.6
    assert _round(ids, book, {R: [3]}, now=2.0) == []
    _leave(ids, book, [(R, 3)], 3.0)
    book.add((R, 4), np.array([0.8, 0.1, -0.59]), 4.0)  # Alice at 0.8, Bob 0.7 behind
    (change,) = _round(ids, book, {R: [4]}, now=4.0)
    assert (change.person, str(change.reason)) == (alice, "cross-relinked")


def test_a_person_remembered_twice_does_not_veto_their_own_return():
    """Alice left twice as two ids (the second visit was missed); Bob was seen beside her.
    Alice's return is alike to both her copies: only Bob, certainly someone else, counts as
    the runner-up, so she is linked."""
    ids = _identities(min_embeddings=1, default=0.8, margin=0.05)
    book = AppearanceBook()
    book.add((V, 1), np.array([1.0, 0.0, 0.0]), 0.0)
    book.add((V, 2), np.array([0.0, 1.0, 0.0]), 0.0)  # Bob, beside Alice's first visit
    _round(ids, book, {V: [1, 2]})
    first = ids.person_of((V, 1))
    _leave(ids, book, [(V, 1), (V, 2)], 1.0)
    book.add((V, 3), np.array([0.75, 0.0, 0.66]), 2.0)  # Alice again, not recognised
    _round(ids, book, {V: [3]}, now=2.0)
    second = ids.person_of((V, 3))
    assert second != first
    _leave(ids, book, [(V, 3)], 3.0)
    book.add((V, 4), np.array([0.936, 0.0, 0.353]), 4.0)  # as alike to both copies
    _round(ids, book, {V: [4]}, now=4.0)
    assert ids.person_of((V, 4)) in (first, second)


def test_a_track_not_recognised_at_first_is_compared_again_as_its_look_firms_up():
    """Alice's first crops after coming back are poor (half way to Bob): not clear, no link.
    Once her embeddings have doubled and her look is hers again, she is compared again and
    linked; between doublings she is not compared."""
    ids = _identities(min_embeddings=2, default=0.8, margin=0.05)
    alice, bob = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    book = AppearanceBook()
    for _ in range(2):
        book.add((V, 1), alice, 0.0)
        book.add((V, 2), bob, 0.0)
    _round(ids, book, {V: [1, 2]})
    alice_id = ids.person_of((V, 1))
    _leave(ids, book, [(V, 1), (V, 2)], 1.0)
    for _ in range(2):
        book.add((V, 5), np.array([0.7, 0.7, 0.1]), 2.0)
    assert _round(ids, book, {V: [5]}, now=2.0) == []
    book.add((V, 5), alice, 3.0)  # three embeddings: not yet doubled
    assert _round(ids, book, {V: [5]}, now=3.0) == []
    for _ in range(5):
        book.add((V, 5), alice, 4.0)
    (change,) = _round(ids, book, {V: [5]}, now=4.0)
    assert (change.key, change.person) == ((V, 5), alice_id)


def test_a_brighter_frame_is_levelled_to_the_first_frames_light():
    from deen.runtime.exposure import Exposure

    rng = np.random.default_rng(0)
    first = rng.integers(30, 200, (120, 160, 3)).astype(np.uint8)
    exposure = Exposure()
    assert exposure.measure(np.zeros_like(first)) == 1.0  # a blank start is no reference
    assert exposure.measure(first) == 1.0
    brighter = np.clip(first.astype(np.float32) * 1.25, 0, 255).astype(np.uint8)
    brighter[40:100, 60:80] = 255  # a person in white: a minority of the pixels
    gain = exposure.measure(brighter)
    assert gain == pytest.approx(1.25, abs=0.03)
    crop = Exposure.level(brighter[0:30, 0:30], gain)
    assert np.abs(crop.astype(int) - first[0:30, 0:30]).mean() < 2.0
    assert exposure.measure(np.zeros_like(first)) == exposure.least  # held within bounds
