"""The cameras' view map: learned from the boxes both cameras see at the same moments of a
generated pole (the infrared view shifted by 6% of the width), never learned from cameras
that see different places, and used to keep matches to people at corresponding places."""

from __future__ import annotations

import numpy as np
import pytest

from deen.modality import Modality
from deen.mot import read_boxes
from deen.runtime.matching import AppearanceBook, CrossCameraMatcher, MatchingSettings
from deen.runtime.registration import CameraRegistration, PairGeometry, ViewMap, box_distance
from deen.scenes import SceneSettings, write_scene

# Both cameras at one rate and clock, so that frame n of each is one moment; people walking
# on their own (people who stop repeat one box pair for seconds, which the least-squares
# refinement weighs as many).
SETTINGS = SceneSettings(people=6, seconds=30, fps=10, ir_fps=10, ir_offset=0, width=320,
                         height=240, min_in_view=2, max_in_view=4, min_height=40,
                         max_height=150, groups=0, still=0, seed=5)


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    """Per frame, each stream's (person, box) as a tracker with perfect boxes would give."""
    scene = write_scene(tmp_path_factory.mktemp("reg") / "s", SETTINGS)
    out = {}
    for stream in ("rgb", "ir"):
        boxes = read_boxes(scene.root / stream / "gt" / "gt.txt")
        out[stream] = {f: [(int(i), np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]]))
                           for i, b in zip(boxes.ids[f], boxes.boxes[f], strict=True)]
                       for f in boxes.frames()}
    return out


def _learn(visible: dict, infrared: dict) -> CameraRegistration:
    registration = CameraRegistration(refit_every=10**9)
    for frame in range(1, SETTINGS.frames + 1):
        registration.observe(visible.get(frame, []), infrared.get(frame, []))
    registration.current = registration.fit()
    return registration


def test_the_view_map_of_a_pole_is_learned_from_the_people(truth):
    view = _learn(truth["rgb"], truth["ir"]).current
    assert view is not None and view.share >= 0.6
    assert view.scale == pytest.approx(1.0, abs=0.03)
    assert view.dx == pytest.approx(-0.06 * SETTINGS.width, abs=4)
    assert view.dy == pytest.approx(0.0, abs=4)


def test_cameras_that_see_different_moments_get_no_map(truth):
    """The infrared stream half a minute late: the same people, never at the same places at
    the same time, so no map explains what both see."""
    late = {frame + 150: boxes for frame, boxes in truth["ir"].items()}
    late.update({frame - 150: boxes for frame, boxes in truth["ir"].items() if frame > 150})
    assert _learn(truth["rgb"], late).current is None


def test_pairs_are_far_apart_unless_at_corresponding_places():
    view = ViewMap(scale=0.5, dx=10, dy=20, support=100, share=1.0)
    visible = np.array([[100, 100, 140, 200], [300, 100, 340, 200]], float)
    infrared = view.apply(visible)
    distance = box_distance(view.apply(visible), infrared)
    assert np.diag(distance) == pytest.approx([0, 0]) and distance[0, 1] > 1
    geometry = PairGeometry()
    geometry.observe(view, [(1, visible[0]), (2, visible[1])], [(7, infrared[0]),
                                                                (8, infrared[1])])
    matrix = geometry.matrix([1, 2, 3], [7, 8])
    assert matrix[0, 0] == 0 and matrix[0, 1] > 1 and np.isnan(matrix[2]).all()
    geometry.forget(visible=1)
    assert np.isnan(geometry.matrix([1], [7])).all()


def test_with_a_map_only_people_at_corresponding_places_match():
    """Appearance alone would pair 1 with 8 (more alike); the map puts 1 where 7 is."""
    book = AppearanceBook()
    book.add((Modality.VISIBLE, 1), np.array([1.0, 0.2]), 0.0)
    book.add((Modality.INFRARED, 7), np.array([0.5, 1.0]), 0.0)
    book.add((Modality.INFRARED, 8), np.array([1.0, 0.1]), 0.0)
    matcher = CrossCameraMatcher(MatchingSettings(threshold=0.5, without_map=True))
    assert set(matcher.assign(book)) == {(1, 8)}
    assert CrossCameraMatcher(MatchingSettings(threshold=0.5)).assign(book) == {}

    def distances(v_ids, r_ids):
        return np.array([[{7: 0.1, 8: 2.0}[r] for r in r_ids] for _ in v_ids])

    assert set(matcher.assign(book, distances)) == {(1, 7)}
    assert matcher.assign(book, lambda v, r: np.full((len(v), len(r)), np.nan)) == {}


def _walkers(starts: list[tuple[float, float]], speed: float, rounds: int, height: float = 100,
             stop_after: int | None = None) -> list[list[tuple[int, np.ndarray]]]:
    """Per round, (track, box) of people walking right from ``starts`` (x, foot y), standing
    still from round ``stop_after`` on."""
    out = []
    for k in range(rounds):
        step = k if stop_after is None else min(k, stop_after)
        out.append([(n + 1, np.array([x + speed * step, y - height, x + speed * step + 40, y]))
                    for n, (x, y) in enumerate(starts)])
    return out


def _learn_rounds(visible: list, infrared: list) -> ViewMap | None:
    registration = CameraRegistration(refit_every=10**9)
    for v, r in zip(visible, infrared, strict=True):
        registration.observe(v, r)
    return registration.fit()


def test_a_group_in_one_view_laid_onto_one_person_in_the_other_is_no_map():
    """Three visible people walking close together and one infrared person walking with
    them at another place: every visible box lies near that one infrared box, but one
    person cannot be three."""
    visible = _walkers([(100, 300), (130, 305), (160, 310)], speed=3, rounds=120)
    infrared = _walkers([(130, 305)], speed=3, rounds=120)
    assert _learn_rounds(visible, infrared) is None
    # The same three people seen by both cameras give a map.
    assert _learn_rounds(visible, _walkers([(100, 300), (130, 305), (160, 310)], speed=3,
                                           rounds=120)) is not None


def test_people_in_step_for_a_while_are_no_map():
    """Three visible and three infrared people walk in step for half of the rounds, then the
    infrared ones stop: over the rounds no pair stayed together."""
    starts = [(100, 300), (300, 400), (500, 350)]
    visible = _walkers(starts, speed=3, rounds=120)
    assert _learn_rounds(visible, _walkers(starts, speed=3, rounds=120, stop_after=60)) is None
    assert _learn_rounds(visible, _walkers(starts, speed=3, rounds=120)) is not None


@pytest.mark.parametrize("together", [True, False])
def test_a_map_that_explains_part_is_used_once_the_next_fit_finds_it_again(together):
    """Three people walk in step in both views for the first fit, which finds a map; one
    that explains less than ``sure_share`` waits for the next fit. People who stay together
    confirm it; if the infrared ones stop (two places where people happened to walk alike
    for a while), the next fit finds no map and none is ever used."""
    starts = [(100, 300), (300, 400), (500, 350)]
    visible = _walkers(starts, speed=3, rounds=80)
    infrared = _walkers(starts, speed=3, rounds=80, stop_after=None if together else 40)
    for sure_share, waits in ((1.01, True), (0.8, False)):
        registration = CameraRegistration(refit_every=40, confirm_after=40, history=40,
                                          sure_share=sure_share)
        used, found = [], []
        for v, r in zip(visible, infrared, strict=True):
            registration.observe(v, r)
            used.append(registration.current is not None)
            found.append(registration.previous is not None)
        assert found[39] and not any(used[:39])
        if waits:
            assert not any(used[:79]) and used[79] == together
        else:  # explains all: used at once
            assert used[39]
