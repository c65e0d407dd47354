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
    pairs = CrossCameraMatcher(MatchingSettings(threshold=0.0)).assign(book)
    assert set(pairs) == {(1, 2), (2, 1)}
    assert sims[1, 2] + sims[2, 1] > sims[1, 1] + sims[2, 2]


def test_threshold_leaves_dissimilar_tracks_unmatched():
    book = _book({1: [1, 0], 2: [0, 1]}, {7: [1, 0.1], 8: [-1, 0]})
    assert CrossCameraMatcher(MatchingSettings(threshold=0.5)).assign(book) == {
        (1, 7): pytest.approx(float(np.dot([1, 0], [1, 0.1]) / np.hypot(1, 0.1)))}


def test_match_confirmed_after_rounds_and_broken_when_it_stops_holding():
    matcher = CrossCameraMatcher(MatchingSettings(threshold=0.5, confirm_rounds=3, break_rounds=2))
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
    matcher = CrossCameraMatcher(MatchingSettings(threshold=0.5, confirm_rounds=2))
    same, other = _book({1: [1, 0]}, {5: [1, 0]}), _book({1: [0, 1]}, {5: [1, 0]})
    assert matcher.update(same) == [] and matcher.update(other) == []
    assert matcher.update(same) == []
    assert [e.kind for e in matcher.update(same)] == ["match"]


def test_ended_track_breaks_its_match():
    matcher = CrossCameraMatcher(MatchingSettings(threshold=0.5, confirm_rounds=1))
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


def test_a_person_who_comes_back_keeps_their_id_and_a_stranger_does_not():
    from deen.runtime.relink import Relinker, RelinkSettings

    relinker = Relinker(RelinkSettings(min_embeddings=2, default=0.8, margin=0.05))
    alice, bob, carol = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]
    book = AppearanceBook()
    for key, vector in (((V, 1), alice), ((V, 2), bob)):
        for _ in range(2):
            book.add(key, np.asarray(vector), 0.0)
    relinker.observe(book, {V: [1, 2]}, now=0.0)
    for key in ((V, 1), (V, 2)):
        relinker.end(key, book, now=1.0)
        book.drop(key)
    # Alice comes back as track 7 (a little changed), Carol appears as track 8.
    for key, vector in (((V, 7), [0.95, 0.1, 0.0]), ((V, 8), carol)):
        for _ in range(2):
            book.add(key, np.asarray(vector), 2.0)
    links = relinker.observe(book, {V: [7, 8]}, now=2.0)
    assert links == [((V, 7), 1)]
    assert relinker.person_of((V, 7)) == 1 and relinker.person_of((V, 8)) == 8


def test_the_relink_threshold_is_calibrated_on_people_seen_together():
    from deen.runtime.relink import Relinker, RelinkSettings

    relinker = Relinker(RelinkSettings(min_embeddings=1, min_negatives=3, quantile=1.0, floor=0.1))
    book = AppearanceBook()
    rng = np.random.default_rng(0)
    for track in range(4):  # four people in view at once: six certainly-different pairs
        book.add((V, track), np.array([1.0, *(0.3 * rng.normal(size=3))]), 0.0)
    relinker.observe(book, {V: [0, 1, 2, 3]}, now=0.0)
    vectors = np.stack([book.entries[V, t].vector for t in range(4)])
    pairs = (vectors @ vectors.T)[np.triu_indices(4, 1)]
    assert relinker.threshold(V) == pytest.approx(pairs.max())


def test_a_returning_person_recognised_in_one_stream_brings_their_partner_back():
    """Alice was visible track 1 matched to infrared track 2. She comes back as visible 7
    (recognised: alike) and infrared 9, whose infrared look alone is not clear (half way
    between her and Bob); once 7 and 9 are matched, 9 is Alice's infrared person, 2."""
    from deen.runtime.relink import Relinker, RelinkSettings

    relinker = Relinker(RelinkSettings(min_embeddings=1, default=0.8, margin=0.05))
    alice, bob = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    book = AppearanceBook()
    for key, vector in (((V, 1), alice), ((R, 2), alice), ((R, 3), bob)):
        book.add(key, vector, 0.0)
    relinker.observe(book, {V: [1], R: [2, 3]}, now=0.0)
    relinker.paired([(1, 2)])
    for key in ((V, 1), (R, 2), (R, 3)):
        relinker.end(key, book, now=1.0)
        book.drop(key)
    book.add((V, 7), np.array([0.98, 0.1]), 2.0)
    book.add((R, 9), np.array([0.7, 0.7]), 2.0)
    relinker.observe(book, {V: [7], R: [9]}, now=2.0)
    assert relinker.person_of((V, 7)) == 1 and relinker.person_of((R, 9)) == 9
    assert relinker.paired([(7, 9)]) == [((R, 9), 2)]
    assert relinker.person_of((R, 9)) == 2
    # Bob (infrared person 3) was never matched: nobody brings him back.
    assert (R, 3) not in relinker.partners


def test_settled_ids_join_each_persons_visits_and_never_two_people_seen_together():
    """A finished run: Alice visits three times and Bob twice (visible tracks 1-5); each
    visible track was matched to one infrared track (11-15) but track 15's own infrared
    look is Alice's. Settling joins each person's visits, keeps Alice and Bob (seen
    together in frames 1-10) apart, and gives each infrared track its partner's person,
    whatever it looks like."""
    from collections import Counter

    from deen.runtime.relink import TrackRecord, settle

    rng = np.random.default_rng(1)
    alice, bob = np.eye(8)[0], np.eye(8)[1]
    spans = {1: (1, 10), 2: (1, 10), 3: (20, 30), 4: (40, 50), 5: (45, 55)}
    who = {1: alice, 2: bob, 3: alice, 4: alice, 5: bob}

    def record(vector: np.ndarray, span: tuple[int, int]) -> TrackRecord:
        noisy = vector + 0.15 * rng.normal(size=8)
        return TrackRecord(5 * noisy / np.linalg.norm(noisy),
                           frozenset(range(span[0], span[1] + 1)))

    # Negatives to calibrate on: ten others seen together with everyone, far later.
    others = {100 + k: record(np.eye(8)[2 + k % 6], (100, 110)) for k in range(10)}
    visible = {t: record(who[t], spans[t]) for t in spans} | others
    infrared = {10 + t: record(alice if t == 5 else who[t], spans[t]) for t in spans}
    matched = Counter({(t, 10 + t): 9 for t in spans})
    persons = settle({V: visible, R: infrared}, matched, quantile=0.9, min_negatives=10)
    assert [persons[V, t] for t in spans] == [1, 2, 1, 1, 2]
    assert [persons[R, 10 + t] for t in spans] == [11, 12, 11, 11, 12]
    assert len({persons[V, t] for t in others}) == 10
    # Infrared alone (no lead): tracks 14 and 15 both look like Alice, but were seen
    # together: two people, whatever the looks say.
    alone = settle({R: infrared}, Counter(), lead=None, default=0.5)
    assert alone[R, 14] != alone[R, 15] and alone[R, 12] == 12


def test_a_burst_of_passing_tracks_does_not_calibrate_settling():
    """A change of light makes a dozen one-frame tracks at once, all alike (background, not
    people). They were seen together, but they are not people seen together: counted as
    such they would set the threshold near 1 and keep every person's visits apart."""
    from collections import Counter

    from deen.runtime.relink import TrackRecord, settle

    rng = np.random.default_rng(2)

    def record(vector: np.ndarray, first: int, last: int, noise: float = 0.15) -> TrackRecord:
        noisy = vector + noise * rng.normal(size=8)
        return TrackRecord(noisy / np.linalg.norm(noisy), frozenset(range(first, last + 1)))

    people = {100 + k: record(np.eye(8)[1 + k % 7], 100, 110) for k in range(10)}
    alice = {1: record(np.eye(8)[0], 1, 10), 2: record(np.eye(8)[0], 30, 40)}
    burst = {200 + k: record(np.ones(8), 200, 200, noise=0.01) for k in range(12)}
    tracks = {V: alice | people | burst}
    persons = settle(tracks, Counter(), lead=None, min_negatives=10)
    assert persons[V, 1] == persons[V, 2]
    counted = settle(tracks, Counter(), lead=None, min_negatives=10, min_rows=1)
    assert counted[V, 1] != counted[V, 2]


def test_a_person_remembered_twice_does_not_veto_their_own_return():
    """Alice left twice as two ids (the second visit was missed); Bob was seen beside her.
    Alice's return is alike to both her copies: only Bob, certainly someone else, counts as
    the runner-up, so she is linked."""
    from deen.runtime.relink import Relinker, RelinkSettings

    relinker = Relinker(RelinkSettings(min_embeddings=1, default=0.8, margin=0.05))
    book = AppearanceBook()
    book.add((V, 1), np.array([1.0, 0.0, 0.0]), 0.0)
    book.add((V, 2), np.array([0.0, 1.0, 0.0]), 0.0)  # Bob, beside Alice's first visit
    relinker.observe(book, {V: [1, 2]}, now=0.0)
    for key in ((V, 1), (V, 2)):
        relinker.end(key, book, now=1.0)
        book.drop(key)
    book.add((V, 3), np.array([0.75, 0.0, 0.66]), 2.0)  # Alice again, not recognised
    relinker.observe(book, {V: [3]}, now=2.0)
    assert relinker.person_of((V, 3)) == 3
    relinker.end((V, 3), book, now=3.0)
    book.drop((V, 3))
    book.add((V, 4), np.array([0.936, 0.0, 0.353]), 4.0)  # as alike to both copies
    relinker.observe(book, {V: [4]}, now=4.0)
    assert relinker.person_of((V, 4)) in (1, 3)


def test_a_track_matched_to_the_lead_stream_follows_it_and_not_its_own_look():
    """Bob was infrared person 3, matched to visible person 1. A stranger comes back as
    visible 7 (not recognised) matched to infrared 9, whose infrared look is Bob's: infrared
    people look alike, so 9 follows its visible match and stays a new person."""
    from deen.runtime.relink import Relinker, RelinkSettings

    relinker = Relinker(RelinkSettings(min_embeddings=1, follow_after=1, default=0.8, margin=0.05))
    bob, stranger = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    book = AppearanceBook()
    book.add((V, 1), bob, 0.0)
    book.add((R, 3), bob, 0.0)
    relinker.observe(book, {V: [1], R: [3]}, now=0.0)
    relinker.paired([(1, 3)])
    for key in ((V, 1), (R, 3)):
        relinker.end(key, book, now=1.0)
        book.drop(key)
    book.add((V, 7), stranger, 2.0)
    relinker.paired([(7, 9)])  # matched before the infrared track was compared
    book.add((R, 9), bob, 2.0)
    relinker.observe(book, {V: [7], R: [9]}, now=2.0)
    assert relinker.person_of((V, 7)) == 7 and relinker.person_of((R, 9)) == 9
    # Each stream on its own (no lead): the infrared look alone links 9 to Bob.
    alone = Relinker(RelinkSettings(min_embeddings=1, default=0.8, margin=0.05, lead="none"))
    alone.departed = {R: [d for d in relinker.departed[R]]}
    assert alone.observe(book, {R: [9]}, now=2.0) == [((R, 9), 3)]


def test_a_track_not_recognised_at_first_is_compared_again_as_its_look_firms_up():
    """Alice's first crops after coming back are poor (half way to Bob): not clear, no link.
    Once her embeddings have doubled and her look is hers again, she is compared again and
    linked; between doublings she is not compared."""
    from deen.runtime.relink import Relinker, RelinkSettings

    relinker = Relinker(RelinkSettings(min_embeddings=2, default=0.8, margin=0.05))
    alice, bob = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    book = AppearanceBook()
    for _ in range(2):
        book.add((V, 1), alice, 0.0)
        book.add((V, 2), bob, 0.0)
    relinker.observe(book, {V: [1, 2]}, now=0.0)
    for key in ((V, 1), (V, 2)):
        relinker.end(key, book, now=1.0)
        book.drop(key)
    for _ in range(2):
        book.add((V, 5), np.array([0.7, 0.7, 0.1]), 2.0)
    assert relinker.observe(book, {V: [5]}, now=2.0) == []
    book.add((V, 5), alice, 3.0)  # three embeddings: not yet doubled
    assert relinker.observe(book, {V: [5]}, now=3.0) == []
    for _ in range(5):
        book.add((V, 5), alice, 4.0)
    assert relinker.observe(book, {V: [5]}, now=4.0) == [((V, 5), 1)]


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
