"""Where one camera's view lies in the other's, learned from the people both see.

A visible and a thermal camera on one pole watch nearly the same scene, so a person seen by
both is at corresponding places in the two frames at the same moment. When the views
overlap, the correspondence is close to a scale and a shift (the cameras' fields of view
and mounting offset); when they do not (cameras apart), there is none, and matching falls
back to appearance alone.

:class:`CameraRegistration` learns the map from the live tracks' boxes of paired frames,
with no calibration step: each candidate pair (a visible box and an infrared box of the same
moment) proposes a map from its box heights and foot points, and the proposal that carries
the most visible boxes onto an infrared box (RANSAC) is refined by least squares on those
inliers. A map is used only when it explains a clear share of what both cameras saw, over
several people, and (unless it explains nearly all) the next fit finds it again, so that
cameras that see different places never get one by chance. What it explains is counted one
to one: in each round a mapped visible box is paired with at most one infrared box, and over
the kept rounds each visible track with one infrared track (its most frequent partner). A
true map pairs each person with themselves for as long as both cameras see them; a false
one, found where people in two different places walk at similar heights, lays several
visible people onto one infrared person, or one onto several in turn.

:class:`PairGeometry` then says, for each visible/infrared track pair, how far apart their
boxes are once mapped (relative to the person's height), smoothed over the rounds in which
both were seen, so that two people crossing each other are still told apart by where they
came from.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from deen.settings import Section, setting


@dataclass(frozen=True)
class ViewMapSettings(Section):
    """The cameras' view map (:class:`CameraRegistration`): cameras on one pole see a person
    at corresponding places at one moment, and pairs are matched only there."""

    enabled: bool = setting(True, "learn where the visible view lies in the infrared one from "
                                  "the people both see (cameras that see different places "
                                  "never get a map)")
    pair_skew_s: float = setting(0.1, "frames of the two streams further apart than this, "
                                      "seconds, are not a pair (not used to learn the map)",
                                 at_least=0.0)


@dataclass(frozen=True)
class ViewMap:
    """Infrared pixel = ``scale`` × visible pixel + (``dx``, ``dy``)."""

    scale: float
    dx: float
    dy: float
    support: int  # visible boxes the map carried onto their track's infrared partner
    share: float  # their share of the visible boxes seen while the infrared camera saw people

    def apply(self, boxes: np.ndarray) -> np.ndarray:
        """N×4 visible boxes (x1, y1, x2, y2) in infrared pixels."""
        return _mapped(np.asarray(boxes, np.float64).reshape(-1, 4),
                       (self.scale, self.dx, self.dy))


def _mapped(boxes: np.ndarray, proposal: tuple[float, float, float]) -> np.ndarray:
    scale, dx, dy = proposal
    return boxes * scale + np.array([dx, dy, dx, dy])


def _apart(mapped: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Distance of mapped visible boxes from infrared boxes (…×4 each, broadcast): the
    larger of the top-centre and foot-point distances, over the infrared box's height (so a
    person of another size at the same place is far too)."""
    dx = (mapped[..., 0] + mapped[..., 2]) / 2 - (boxes[..., 0] + boxes[..., 2]) / 2
    top = np.hypot(dx, mapped[..., 1] - boxes[..., 1])
    foot = np.hypot(dx, mapped[..., 3] - boxes[..., 3])
    return np.maximum(top, foot) / np.maximum(boxes[..., 3] - boxes[..., 1], 1.0)


def box_distance(mapped: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """M×N distances (:func:`_apart`) between mapped visible boxes and infrared boxes."""
    mapped, boxes = np.asarray(mapped).reshape(-1, 4), np.asarray(boxes).reshape(-1, 4)
    return _apart(mapped[:, None], boxes[None])


class _Round(NamedTuple):
    """One paired round's live tracks: each stream's track ids and N×4 boxes."""

    visible_ids: list[int]
    visible: np.ndarray
    infrared: np.ndarray
    infrared_ids: list[int]


@dataclass
class CameraRegistration:
    """Learns the visible→infrared :class:`ViewMap` from boxes seen at the same moments."""

    inlier_distance: float = 0.35  # a mapped box this close (in heights) explains a box
    min_support: int = 60  # visible boxes the map must explain …
    min_tracks: int = 3  # … with at least this many pairs of tracks that stayed together …
    min_share: float = 0.4  # … and this share of the visible boxes that had a candidate
    faithful: float = 0.8  # a pair stayed together: paired in this share of its rounds …
    min_rounds: int = 10  # … and in at least this many
    refit_every: int = 50  # rounds between fits
    sure_share: float = 0.8  # a map explaining this share is used without confirming it …
    confirm_after: int = 25  # … else it is fitted again after this many rounds
    history: int = 600  # rounds of boxes kept
    hypotheses: int = 300
    score_rounds: int = 120  # kept rounds, spread evenly, that rank the hypotheses …
    finalists: int = 10  # … whose best are counted on all kept rounds
    # A least-squares refinement is kept unless it explains clearly fewer boxes: a
    # proposal from one pair is rough, and within the inlier distance many rough maps
    # explain about as many boxes as the right one.
    keep_refined: float = 0.95
    seed: int = 0
    rounds: deque[_Round] = field(default_factory=deque)
    current: ViewMap | None = None  # the map in use
    previous: ViewMap | None = None  # the last fit's map, used or not
    misses: int = 0  # fits in a row that had plenty to go on and found no map
    _since_fit: int = 0

    @property
    def apart(self) -> bool:
        """Whether the cameras watch different places: three fits in a row, each with twice
        the boxes a map needs, found none."""
        return self.current is None and self.misses >= 3

    def observe(self, visible: list[tuple[int, np.ndarray]],
                infrared: list[tuple[int, np.ndarray]]) -> None:
        """One paired round's live tracks, as (track id, box) of each stream."""
        if visible and infrared:
            self.rounds.append(_Round([t for t, _ in visible],
                                      np.array([b for _, b in visible], np.float64),
                                      np.array([b for _, b in infrared], np.float64),
                                      [t for t, _ in infrared]))
            while len(self.rounds) > self.history:
                self.rounds.popleft()
        self._since_fit += 1
        due = self.confirm_after if self.previous is not None and self.current is None \
            else self.refit_every
        if self._since_fit >= due:
            self._since_fit = 0
            found = self.fit()
            # A map that explains nearly all is used at once; one that explains less only
            # once the next fit agrees (the map in use, if any, is the last fit's): a false
            # map, found where people in two places happened to walk alike for a while, is
            # not found again.
            confirmed = found is not None and (found.share >= self.sure_share or (
                self.previous is not None and self._agree(found, self.previous)))
            self.previous = found
            self.current = found if confirmed else None
            plenty = sum(len(r.visible) for r in self.rounds) >= 2 * self.min_support and \
                len({t for r in self.rounds for t in r.visible_ids}) >= self.min_tracks
            self.misses = 0 if found is not None else self.misses + plenty

    def _agree(self, a: ViewMap, b: ViewMap) -> bool:
        """Whether two maps carry the kept visible boxes to nearly the same places: on
        average within ``inlier_distance`` of the box's height."""
        boxes = np.concatenate([r.visible for r in self.rounds])
        return float(np.mean(_apart(a.apply(boxes), b.apply(boxes)))) <= self.inlier_distance

    def fit(self) -> ViewMap | None:
        """RANSAC over the kept rounds; None when no map explains enough."""
        if not self.rounds:
            return None
        v_boxes = np.concatenate([r.visible for r in self.rounds])
        # Every candidate pair (visible box, infrared box of the same round).
        pairs_v, pairs_r, pairs_round, r_boxes = [], [], [], []
        v_offset = r_offset = 0
        for n, (_, v, r, _) in enumerate(self.rounds):
            a, b = np.meshgrid(np.arange(len(v)), np.arange(len(r)), indexing="ij")
            pairs_v.append(a.ravel() + v_offset)
            pairs_r.append(b.ravel() + r_offset)
            pairs_round.append(np.full(a.size, n))
            r_boxes.append(r)
            v_offset += len(v)
            r_offset += len(r)
        pv, pr = np.concatenate(pairs_v), np.concatenate(pairs_r)
        r_boxes = np.concatenate(r_boxes)
        if len(v_boxes) < self.min_support:
            return None
        # Proposals are drawn and ranked on rounds spread over the history (neighbouring
        # rounds are near copies); the best few are counted on all of them, and the best
        # of those refined.
        scored = np.isin(np.concatenate(pairs_round), np.unique(np.linspace(
            0, len(self.rounds) - 1, min(len(self.rounds), self.score_rounds)).astype(int)))
        sv, sr = pv[scored], pr[scored]
        rng = np.random.default_rng(self.seed)
        picks = rng.choice(len(sv), size=min(self.hypotheses, len(sv)), replace=False)
        ranked = []
        for k in picks:
            proposal = _from_one_pair(v_boxes[sv[k]], r_boxes[sr[k]])
            if proposal is not None:
                ranked.append((int(self._inliers(proposal, v_boxes, r_boxes, sv, sr).sum()),
                               proposal))
        if not ranked:
            return None
        ranked.sort(key=lambda scored_proposal: -scored_proposal[0])
        best, best_inliers = None, np.zeros(len(v_boxes), bool)
        for _, proposal in ranked[:self.finalists]:
            inliers = self._inliers(proposal, v_boxes, r_boxes, pv, pr)
            if inliers.sum() > best_inliers.sum():
                best, best_inliers = proposal, inliers
        for _ in range(2):  # refine on the inliers' closest pairs, then recount
            refined = _least_squares(*self._closest_pairs(best, v_boxes, r_boxes, pv, pr,
                                                          best_inliers))
            if refined is None:
                break
            inliers = self._inliers(refined, v_boxes, r_boxes, pv, pr)
            if inliers.sum() < self.keep_refined * best_inliers.sum():
                break
            best, best_inliers = refined, inliers
        support, partners = self._one_to_one(best)
        share = support / len(v_boxes)
        if support < self.min_support or share < self.min_share or partners < self.min_tracks:
            return None
        return ViewMap(*best, support=support, share=round(share, 3))

    def _one_to_one(self, proposal: tuple[float, float, float]) -> tuple[int, int]:
        """The visible boxes ``proposal`` carries onto their track's partner, and how many
        partners stayed together. Each round pairs mapped visible and infrared boxes one to
        one (nearest in total, within ``inlier_distance``); over the rounds, each visible
        track keeps one infrared partner and each infrared track one visible partner, the
        pairs paired most often first. A pair stayed together when it was paired in at least
        ``faithful`` of the rounds that both tracks were live: one person seen by two
        cameras is, two people who fell in step for a while are not."""
        together: Counter[tuple[int, int]] = Counter()
        live: Counter[tuple[int, int]] = Counter()
        for v_ids, v, r, r_ids in self.rounds:
            distance = box_distance(_mapped(v, proposal), r)
            rows, cols = linear_sum_assignment(np.minimum(distance, 10.0))
            for i, j in zip(rows, cols, strict=True):
                if distance[i, j] <= self.inlier_distance:
                    together[v_ids[i], r_ids[j]] += 1
            live.update((a, b) for a in v_ids for b in r_ids)
        taken_v: set[int] = set()
        taken_r: set[int] = set()
        support = stayed = 0
        for (v_id, r_id), rounds in together.most_common():
            if v_id not in taken_v and r_id not in taken_r:
                taken_v.add(v_id)
                taken_r.add(r_id)
                support += rounds
                stayed += rounds >= max(self.faithful * live[v_id, r_id], self.min_rounds)
        return support, stayed

    def _distances(self, proposal: tuple[float, float, float], v_boxes: np.ndarray,
                   r_boxes: np.ndarray, pv: np.ndarray, pr: np.ndarray) -> np.ndarray:
        """Each candidate pair's distance under ``proposal``."""
        return _apart(_mapped(v_boxes[pv], proposal), r_boxes[pr])

    def _inliers(self, proposal, v_boxes, r_boxes, pv, pr) -> np.ndarray:
        near = self._distances(proposal, v_boxes, r_boxes, pv, pr) <= self.inlier_distance
        explained = np.zeros(len(v_boxes), bool)
        explained[pv[near]] = True
        return explained

    def _closest_pairs(self, proposal, v_boxes, r_boxes, pv, pr, inliers
                       ) -> tuple[np.ndarray, np.ndarray]:
        distance = self._distances(proposal, v_boxes, r_boxes, pv, pr)
        order = np.lexsort((distance, pv))  # by visible box, nearest first
        first = np.ones(len(order), bool)
        first[1:] = pv[order][1:] != pv[order][:-1]
        chosen = order[first]
        chosen = chosen[inliers[pv[chosen]]]
        return v_boxes[pv[chosen]], r_boxes[pr[chosen]]


def _from_one_pair(v: np.ndarray, r: np.ndarray) -> tuple[float, float, float] | None:
    """The scale and shift that carry box ``v`` onto box ``r`` (heights and foot points)."""
    hv, hr = v[3] - v[1], r[3] - r[1]
    if hv <= 1 or hr <= 1:
        return None
    scale = hr / hv
    return (scale, (r[0] + r[2]) / 2 - scale * (v[0] + v[2]) / 2, r[3] - scale * v[3])


def _least_squares(v: np.ndarray, r: np.ndarray) -> tuple[float, float, float] | None:
    """Scale and shift that best carry the boxes' top-centre and foot points."""
    if len(v) < 3:
        return None
    cx_v, cx_r = (v[:, 0] + v[:, 2]) / 2, (r[:, 0] + r[:, 2]) / 2
    ones, zeros = np.ones(len(v)), np.zeros(len(v))
    rows = np.concatenate([np.stack([cx_v, ones, zeros], 1), np.stack([v[:, 1], zeros, ones], 1),
                           np.stack([v[:, 3], zeros, ones], 1)])
    target = np.concatenate([cx_r, r[:, 1], r[:, 3]])
    solution, *_ = np.linalg.lstsq(rows, target, rcond=None)
    scale, dx, dy = (float(s) for s in solution)
    return (scale, dx, dy) if scale > 0 else None


@dataclass
class PairGeometry:
    """Smoothed mapped distance of each (visible, infrared) track pair seen together."""

    smoothing: float = 0.5  # weight of the newest round
    distance: dict[tuple[int, int], float] = field(default_factory=dict)

    def observe(self, view: ViewMap, visible: list[tuple[int, np.ndarray]],
                infrared: list[tuple[int, np.ndarray]]) -> None:
        if not visible or not infrared:
            return
        now = box_distance(view.apply(np.array([b for _, b in visible])),
                           np.array([b for _, b in infrared]))
        for i, (v, _) in enumerate(visible):
            for j, (r, _) in enumerate(infrared):
                old = self.distance.get((v, r))
                new = float(now[i, j])
                self.distance[v, r] = new if old is None else \
                    self.smoothing * new + (1 - self.smoothing) * old

    def matrix(self, v_ids: list[int], r_ids: list[int]) -> np.ndarray:
        """Distances of the pairs (NaN: never seen together)."""
        return np.array([[self.distance.get((v, r), np.nan) for r in r_ids] for v in v_ids],
                        np.float64).reshape(len(v_ids), len(r_ids))

    def forget(self, visible: int | None = None, infrared: int | None = None) -> None:
        """Drop the pairs of an ended track."""
        self.distance = {p: d for p, d in self.distance.items()
                         if p[0] != visible and p[1] != infrared}
