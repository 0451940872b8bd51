"""Physics benchmark: closed-form kinematics, parameter ranges, rendering, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kinema.data import PhysicsDataset, collate
from kinema.data.physics import GRAVITY, RADIUS_RANGES, SPEED_RANGES
from kinema.eval.physics import ball_centroids, velocity_errors
from kinema.io import read_video, write_video


def _in(value, ranges):
    return any(lo - 1e-9 <= value <= hi + 1e-9 for lo, hi in ranges)


def test_items_are_deterministic_by_seed():
    a, b = PhysicsDataset(seed=3), PhysicsDataset(seed=3)
    for i in (0, 1, 2, 57):
        x, y = a[i], b[i]
        assert torch.equal(x["video"], y["video"]) and x["caption"] == y["caption"]
        assert torch.equal(x["positions"].nan_to_num(), y["positions"].nan_to_num())
    c = PhysicsDataset(seed=4)
    assert not torch.equal(a[0]["video"], c[0]["video"])


def test_item_layout():
    ds = PhysicsDataset(resolution=32, num_frames=9)
    items = [ds[i] for i in range(3)]
    assert [it["scenario"] for it in items] == ["uniform", "collision", "parabola"]
    assert items[0]["video"].shape == (3, 9, 32, 32)
    assert items[0]["positions"].shape == (9, 2, 2)
    assert items[0]["num_balls"] == 1 and items[1]["num_balls"] == 2
    assert torch.isnan(items[0]["positions"][:, 1]).all()
    batch = collate(items)
    assert batch["video"].shape == (3, 3, 9, 32, 32) and len(batch["caption"]) == 3


@pytest.mark.parametrize("split", ["id", "ood"])
@pytest.mark.parametrize("scenario", ["uniform", "collision", "parabola", "bounce"])
def test_parameters_stay_in_split_ranges(scenario, split):
    ds = PhysicsDataset(scenario, split, length=100)
    for i in range(100):
        tr = ds.trajectory(i)
        for r in tr.radii:
            assert _in(r, RADIUS_RANGES[split])
        speed = tr.params.get("speed")
        if speed is not None:
            assert _in(speed, SPEED_RANGES[split])


def test_uniform_matches_closed_form():
    ds = PhysicsDataset("uniform", num_frames=17, dt=0.1)
    t = np.arange(17) * 0.1
    for i in range(20):
        tr = ds.trajectory(i)
        p = tr.params
        np.testing.assert_allclose(tr.positions[:, 0, 0], p["x0"] + p["vx"] * t, atol=1e-12)
        np.testing.assert_allclose(tr.positions[:, 0, 1], p["y0"], atol=1e-12)
        np.testing.assert_allclose(tr.velocities[:, 0], [[p["vx"], 0.0]] * 17, atol=1e-12)
        assert abs(p["vx"]) == pytest.approx(p["speed"])


def test_parabola_matches_closed_form():
    ds = PhysicsDataset("parabola", num_frames=17, dt=0.1)
    t = np.arange(17) * 0.1
    for i in range(20):
        tr = ds.trajectory(i)
        p = tr.params
        np.testing.assert_allclose(tr.positions[:, 0, 0], p["x0"] + p["vx"] * t, atol=1e-12)
        np.testing.assert_allclose(tr.positions[:, 0, 1], p["y0"] - GRAVITY * t**2 / 2, atol=1e-12)
        # Velocities are the derivative of the positions: central differences agree.
        mid = (tr.positions[2:, 0] - tr.positions[:-2, 0]) / 0.2
        np.testing.assert_allclose(mid, tr.velocities[1:-1, 0], atol=1e-9)


@pytest.mark.parametrize("split", ["id", "ood"])
def test_bounce_stays_in_the_box_and_reflects_off_the_walls(split):
    from kinema.data.physics import WORLD
    from kinema.data.physics_audio import impacts

    frames, dt = 120, 0.1
    long = PhysicsDataset("bounce", split, length=20, num_frames=frames, dt=dt)
    short = PhysicsDataset("bounce", split, length=20, num_frames=17, dt=dt)
    for i in range(20):
        tr = long.trajectory(i)
        p, r = tr.params, tr.radii[0]
        pos, vel = tr.positions[:, 0], tr.velocities[:, 0]
        # never leaves the view: the whole ball inside the 10 x 10 box in every frame
        assert (pos >= r - 1e-9).all() and (pos <= WORLD - r + 1e-9).all()
        # speed is conserved; each velocity component only ever flips sign
        np.testing.assert_allclose(np.linalg.norm(vel, axis=1), p["speed"], rtol=1e-9)
        np.testing.assert_allclose(np.abs(vel), np.abs([[p["vx"], p["vy"]]] * frames))
        # between bounces the position advances by velocity * dt
        step = np.diff(pos, axis=0)
        same = (vel[1:] == vel[:-1]).all(1)
        np.testing.assert_allclose(step[same], vel[:-1][same] * dt, atol=1e-9)
        # a bounce happens at a wall: the path from frame k meets it at the impact time
        for e in impacts(tr, dt):
            k, s = e.frame, e.time - e.frame * dt
            at = pos[k] + vel[k] * s
            assert np.isclose(at, r, atol=1e-6).any() or np.isclose(at, WORLD - r, atol=1e-6).any()
        # a longer clip of the same item continues the shorter one
        np.testing.assert_allclose(short.trajectory(i).positions, tr.positions[:17])
    # over 12 s every in-distribution ball (speed >= 1) bounces; the caption names its
    # heading and speed
    if split == "id":
        assert all(impacts(long.trajectory(i), dt) for i in range(20))
    cap = long[0]["caption"]
    assert cap.startswith("a ") and "red ball bounces" in cap
    tr = long.trajectory(0)
    heading = cap.split("bounces ")[1].split()[0]
    vx, vy = tr.params["vx"], tr.params["vy"]
    assert ("right" in heading) == (vx > 1e-9) and ("up" in heading) == (vy > 1e-9)
    assert "bounce" not in {PhysicsDataset()[i]["scenario"] for i in range(6)}  # not in "all"


@pytest.mark.parametrize("split", ["id", "ood"])
def test_collision_is_elastic(split):
    ds = PhysicsDataset("collision", split, num_frames=17, dt=0.1, cond_frames=5)
    for i in range(50):
        tr = ds.trajectory(i)
        m1, m2 = tr.radii**2
        v_before = tr.params["v_red"], tr.params["v_blue"]
        v_after = tr.params["v_red_after"], tr.params["v_blue_after"]
        p0, p1 = m1 * v_before[0] + m2 * v_before[1], m1 * v_after[0] + m2 * v_after[1]
        e0 = 0.5 * (m1 * v_before[0] ** 2 + m2 * v_before[1] ** 2)
        e1 = 0.5 * (m1 * v_after[0] ** 2 + m2 * v_after[1] ** 2)
        assert p1 == pytest.approx(p0, abs=1e-9) and e1 == pytest.approx(e0, rel=1e-9)
        tc = tr.collision_time
        assert 5 * 0.1 < tc < 16 * 0.1  # after the conditioning frames, before the end
        # The balls touch exactly at tc and never overlap before or after.
        t = np.arange(17) * 0.1
        gap = np.abs(tr.positions[:, 0, 0] - tr.positions[:, 1, 0]) - tr.radii.sum()
        assert (gap >= -1e-9).all()
        x_red = tr.positions[0, 0, 0] + v_before[0] * tc
        x_blue = tr.positions[0, 1, 0] + v_before[1] * tc
        assert abs(x_red - x_blue) == pytest.approx(tr.radii.sum(), abs=1e-9)
        # Before tc the frame velocities are the incoming ones, after tc the outgoing ones.
        np.testing.assert_allclose(tr.velocities[t < tc, 0, 0], v_before[0])
        np.testing.assert_allclose(tr.velocities[t > tc, 1, 0], v_after[1])


def test_render_colours_and_centroid():
    ds = PhysicsDataset("collision", resolution=64)
    frames, tr = ds.frames(0)
    assert frames.dtype == np.uint8 and frames.shape == (17, 64, 64, 3)
    assert (frames[:, 0, 0] == 255).all() or (frames[:, -1, -1] == 255).all()  # white corner
    assert ((frames == [255, 0, 0]).all(-1)).any() and ((frames == [0, 0, 255]).all(-1)).any()
    for color, b in (("red", 0), ("blue", 1)):
        det = ball_centroids(frames, color)
        inside = (
            (tr.positions[:, b] - tr.radii[b] >= 0) & (tr.positions[:, b] + tr.radii[b] <= 10)
        ).all(-1)
        err = np.abs(det[inside] - tr.positions[inside, b]).max()
        assert err < 0.03, f"{color} centroid off by {err}"


@pytest.mark.parametrize("scenario", ["uniform", "collision", "parabola"])
def test_velocity_error_floor_through_mp4(tmp_path, scenario):
    """The written ground truth matches the decoded frames (DATA.md floor ~0.02 at 64x64)."""
    ds = PhysicsDataset(scenario, resolution=64, seed=11)
    alpha, thresh = [], []
    for i in range(12):
        frames, tr = ds.frames(i)
        back = read_video(write_video(tmp_path / f"{i}.mp4", frames, fps=10, lossless=True))
        kw = {"collision_time": tr.collision_time}
        alpha.append(velocity_errors(back, tr.positions[:, 0], tr.radii[0], **kw))
        thresh.append(
            velocity_errors(back, tr.positions[:, 0], tr.radii[0], method="threshold", **kw)
        )
    a, t = np.concatenate(alpha).mean(), np.concatenate(thresh).mean()
    assert a < 0.03 and 0.05 < t < 0.25 and len(np.concatenate(alpha)) > 20


def test_fast_objects_leave_the_view_and_are_dropped():
    ds = PhysicsDataset("uniform", "ood", length=200)
    fast = next(i for i in range(200) if ds.trajectory(i).params["speed"] > 5.5)
    frames, tr = ds.frames(fast)
    errs = velocity_errors(frames, tr.positions[:, 0], tr.radii[0])
    assert len(errs) < 16  # some intervals dropped: the ball is partly out of view


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scenario": "orbit"}, "allowed: all, uniform, collision, parabola, bounce"),
        ({"split": "test"}, "allowed: id, ood"),
        ({"num_frames": 0}, "num_frames must be an integer >= 2"),
        ({"resolution": -64}, "resolution must be between 8 and 4096"),
        ({"dt": 0}, r"dt must be in \(0, 1\]"),
        ({"length": 0}, "length must be a positive integer"),
        ({"cond_frames": 17}, r"cond_frames must be in \[0, 16\]"),
    ],
)
def test_impossible_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PhysicsDataset(**kwargs)


def test_index_out_of_range():
    with pytest.raises(IndexError):
        PhysicsDataset(length=3)[3]


def test_captions_name_motion():
    ds = PhysicsDataset("uniform")
    for i in range(10):
        tr = ds.trajectory(i)
        cap = ds[i]["caption"]
        assert "red ball" in cap
        assert ("left" in cap) == (tr.params["vx"] < 0)
    assert "blue ball" in PhysicsDataset("collision")[0]["caption"]
    assert math.isnan(PhysicsDataset("uniform")[0]["collision_time"])
