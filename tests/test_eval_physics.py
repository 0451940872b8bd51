"""The physics benchmark's scorer on hand-made clips with known motion: a perfect render
scores the floor, a known wrong speed its known error, and the protocol's drops (ball
partly out of view, before the collision, not detected) are counted, not scored."""

from __future__ import annotations

import numpy as np
import pytest

from kinema.data.physics import Trajectory, render
from kinema.errors import KinemaError
from kinema.eval.physics import velocity_errors
from kinema.eval.physics_eval import PhysicsScorer, evaluate_physics_videos, trajectory_from_meta

DT = 0.1


def uniform(x0: float, vx: float, frames: int = 9, r: float = 1.0, y: float = 5.0):
    t = np.arange(frames) * DT
    pos = np.stack([x0 + vx * t, np.full_like(t, y)], -1)[:, None]
    return Trajectory("uniform", pos, np.zeros_like(pos), np.array([r]))


def collision(tc: float = 0.45, v: float = 2.0, frames: int = 9, r: float = 1.0):
    """Equal masses, blue at rest: red stops at the contact point and blue leaves at v."""
    t = np.arange(frames) * DT
    xc = 5.0
    red = np.where(t < tc, xc - r + v * (t - tc), xc - r)
    blue = np.where(t < tc, xc + r, xc + r + v * (t - tc))
    ys = np.full_like(t, 5.0)
    pos = np.stack([np.stack([red, ys], -1), np.stack([blue, ys], -1)], 1)
    return Trajectory("collision", pos, np.zeros_like(pos), np.array([r, r]), collision_time=tc)


def meta(tr: Trajectory, split: str = "id") -> dict:
    """The record `kinema data make` would write for ``tr``."""
    return {
        "file": f"{tr.scenario}.mp4",
        "fps": 1 / DT,
        "scenario": tr.scenario,
        "split": split,
        "positions": tr.positions.tolist(),
        "radii": tr.radii.tolist(),
        "num_balls": len(tr.radii),
        "collision_time": tr.collision_time,
    }


def score(video, tr, cond_frames=2, detectors=("alpha",), res=128):
    scorer = PhysicsScorer(cond_frames, DT, detectors)
    scorer.add(video, tr, "id", render(tr, res, res))
    return scorer.results().rows


def test_perfect_render_scores_its_floor():
    tr = uniform(2.0, 3.0)
    (row,) = score(render(tr, 128, 128), tr)
    assert row.error == row.floor and row.error < 0.02  # DATA.md: ~0.007 at 128x128
    assert (row.intervals, row.dropped, row.missed, row.clips_scored) == (6, 0, 0, 1)


@pytest.mark.parametrize("v_true, v_video", [(2.0, 3.0), (-1.5, -1.0), (2.5, 0.0)])
def test_wrong_speed_gives_its_known_error(v_true, v_video):
    truth, wrong = uniform(5.0, v_true), uniform(5.0, v_video)
    (row,) = score(render(wrong, 128, 128), truth)
    # every interval: |v_video - v_true| world units/s, up to the sub-pixel detector error
    assert row.error == pytest.approx(abs(v_video - v_true), abs=0.02)
    assert row.floor < 0.02 and row.intervals == 6


def test_partly_visible_frames_are_dropped():
    tr = uniform(6.9, 4.0)  # r = 1: fully in view up to frame 5 (x = 8.9), then leaving
    x = tr.positions[:, 0, 0]
    visible = (x - 1 >= 0) & (x + 1 <= 10)
    expected = int((visible[:-1] & visible[1:])[1:].sum())  # intervals from frame 1 on
    assert expected == 4
    (row,) = score(render(tr, 128, 128), tr, cond_frames=1)
    assert (row.intervals, row.dropped, row.floor_intervals) == (expected, 7 - expected, expected)
    assert row.error < 0.02  # the edge frames' biased centroids are not scored


def test_collision_scores_only_after_the_collision():
    tr = collision(tc=0.45)
    # intervals 2..7 follow the given frames; those starting before t = 0.45 are dropped
    video = render(tr, 128, 128)
    (row,) = score(video, tr, cond_frames=2)
    assert (row.intervals, row.dropped) == (3, 3) and row.error < 0.02
    # a video that gets the approach wrong (red frozen) but the outcome right scores the same
    frozen = Trajectory("collision", tr.positions.copy(), tr.velocities, tr.radii)
    frozen.positions[:5, 0, 0] = frozen.positions[0, 0, 0]
    (same,) = score(render(frozen, 128, 128), tr, cond_frames=2)
    assert same.error == pytest.approx(row.error, abs=1e-9)
    # ...while the frozen red ball after the collision is an error of the blue ball's speed
    wrong = Trajectory("collision", tr.positions[:, ::-1].copy(), tr.velocities, tr.radii)
    (bad,) = score(render(wrong, 128, 128), tr, cond_frames=2)
    assert bad.error == pytest.approx(2.0, abs=0.03)


def test_lost_ball_is_missed_not_scored():
    tr = uniform(2.0, 3.0)
    blank = np.full((9, 64, 64, 3), 255, np.uint8)
    (row,) = score(blank, tr, res=64)
    assert row.error is None and row.intervals == 0 and row.missed == 6
    assert row.clips == 1 and row.clips_scored == 0 and row.floor < 0.04


def test_rows_per_scenario_split_and_detector_pool_intervals():
    trs = [uniform(2.0, 3.0), uniform(5.0, -2.0), collision()]
    splits = ["id", "ood", "id"]
    records = [meta(tr, sp) for tr, sp in zip(trs, splits, strict=True)]
    videos = [render(tr, 64, 64) for tr in trs]
    res = evaluate_physics_videos(videos, records, cond_frames=2)
    keys = [(r.scenario, r.split, r.detector) for r in res.rows]
    assert keys == [
        ("uniform", "id", "alpha"),
        ("uniform", "id", "threshold"),
        ("uniform", "ood", "alpha"),
        ("uniform", "ood", "threshold"),
        ("collision", "id", "alpha"),
        ("collision", "id", "threshold"),
    ]
    assert res.dt == pytest.approx(DT)  # from the records' fps
    # the threshold row is the paper's metric: the pooled mean of velocity_errors
    errs = velocity_errors(videos[0], trs[0].positions[:, 0], 1.0, method="threshold")
    assert res.rows[1].error == pytest.approx(errs[2:].mean())
    d = res.to_dict()
    assert d["cond_frames"] == 2 and d["rows"][0]["intervals"] == 6
    assert res.markdown().count("\n") == 2 + len(res.rows) - 1


def test_bad_ground_truth_is_a_one_line_error():
    tr = uniform(2.0, 3.0)
    with pytest.raises(KinemaError, match="missing positions"):
        trajectory_from_meta({"scenario": "uniform", "radii": [1.0]})
    with pytest.raises(KinemaError, match="unknown scenario 'orbit'"):
        trajectory_from_meta({**meta(tr), "scenario": "orbit"})
    with pytest.raises(KinemaError, match="1 ground-truth records but a different number"):
        evaluate_physics_videos([], [meta(tr)], cond_frames=2)
    with pytest.raises(KinemaError, match=r"expected uint8 \(9, H, W, 3\)"):
        evaluate_physics_videos([render(tr, 32, 32)[:5]], [meta(tr)], cond_frames=2)
    with pytest.raises(KinemaError, match=r"cond_frames must be in \[1, 7\]"):
        evaluate_physics_videos([render(tr, 32, 32)], [meta(tr)], cond_frames=8)
    with pytest.raises(KinemaError, match="unknown detector centroid"):
        PhysicsScorer(2, DT, ["centroid"])
