"""Physics sound: clicks on impacts, pitch from speed, exact duration, determinism, onsets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kinema.audio import click_timing_error, detect_onsets, dominant_frequency
from kinema.data import PhysicsDataset, collate
from kinema.data.physics import GRAVITY, WORLD, Trajectory
from kinema.data.physics_audio import (
    ClickDataset,
    ClickOverlay,
    PhysicsAudioVisualDataset,
    SoundConfig,
    click,
    impacts,
    num_samples,
    synthesize,
)
from kinema.data.render import reflect
from kinema.errors import KinemaError

SR = 16_000


def bouncing(
    frames: int = 25,
    dt: float = 0.1,
    r: float = 0.5,
    x0: float = 2.0,
    vx: float = 8.0,
    h: float = 1.5,
) -> tuple[Trajectory, np.ndarray]:
    """A ball bouncing elastically between the side walls and on the floor under gravity,
    dropped from rest ``h`` above the floor; returns it with the exact impact times."""
    t = np.arange(frames) * dt
    span = WORLD - 2 * r
    u = np.mod(x0 - r + vx * t, 2 * span)
    x = reflect(x0 + vx * t, r, WORLD - r)
    vxs = vx * np.where(u <= span, 1.0, -1.0)
    t_hit = math.sqrt(2 * h / GRAVITY)  # first floor contact; one bounce period is 2 t_hit
    s = np.mod(t + t_hit, 2 * t_hit) - t_hit  # time since the last apex
    y, vy = r + h - GRAVITY * s**2 / 2, -GRAVITY * s
    walls = [(k * span - (x0 - r)) / vx for k in (1, 2, 3)]
    floors = [t_hit * (1 + 2 * k) for k in range(3)]
    true = np.array(sorted(e for e in walls + floors if e < t[-1]))
    pos = np.stack([x, y], -1)[:, None]
    vel = np.stack([vxs, vy], -1)[:, None]
    return Trajectory("bounce", pos, vel, np.array([r])), true


def test_clicks_land_on_the_collisions():
    for split in ("id", "ood"):
        ds = PhysicsAudioVisualDataset(scenario="collision", split=split, length=12, video=False)
        for i in range(len(ds)):
            item, traj = ds[i], ds.physics.trajectory(i)
            assert item["num_events"] == 1
            assert item["events"][0].item() == pytest.approx(traj.collision_time, abs=1e-6)
            timing = click_timing_error(item["audio"], item["events"], SR)
            assert (timing.matched, timing.missed, timing.extra) == (1, 0, 0), (split, i)
            assert timing.error_s < 2e-3  # measured <= 0.84 ms over 1,200 clips


def test_uniform_and_parabola_are_silent_of_clicks():
    ds = PhysicsAudioVisualDataset(length=6, video=False, scenario="all")
    for i in (0, 2, 3, 5):  # uniform, parabola (top of the arc is no impact)
        item = ds[i]
        assert item["scenario"] in ("uniform", "parabola") and item["num_events"] == 0
        assert len(detect_onsets(item["audio"], SR)) == 0


def test_bounces_are_found_in_the_trajectory_and_clicked():
    traj, true = bouncing()
    found = impacts(traj, 0.1)
    assert [e.kind for e in found] == ["bounce"] * 4
    # exact for the walls (straight motion) and the floor (constant gravity on both sides)
    np.testing.assert_allclose([e.time for e in found], true, atol=1e-9)
    sound = synthesize(traj, 0.1)
    timing = click_timing_error(sound.wave, true, SR)
    assert (timing.matched, timing.missed, timing.extra) == (4, 0, 0)
    assert timing.error_s < 5e-3
    # a click 30 ms late is a timing error the metric reports
    late = click_timing_error(sound.wave, true + 0.03, SR)
    assert late.matched == 4 and late.error_s == pytest.approx(0.03, abs=2e-3)


def test_tone_pitch_follows_the_red_ball_speed():
    cfg = SoundConfig()
    ds = PhysicsDataset("uniform", length=3)
    for i in range(3):
        traj = ds.trajectory(i)
        wave = synthesize(traj, ds.dt, cfg).wave
        f = dominant_frequency(wave, SR, 0.05, 1.65)
        assert f == pytest.approx(200 + 100 * abs(traj.params["vx"]), abs=0.5)
    # collision: the red ball's speed before and after the impact
    traj = PhysicsDataset("collision", length=1, seed=1).trajectory(0)
    wave, tc, p = synthesize(traj).wave, traj.collision_time, traj.params
    before = dominant_frequency(wave, SR, tc - 0.3, tc - 0.02)
    after = dominant_frequency(wave, SR, tc + 0.02, 1.68)
    assert before == pytest.approx(200 + 100 * abs(p["v_red"]), abs=2)
    assert after == pytest.approx(200 + 100 * abs(p["v_red_after"]), abs=2)
    # parabola: the pitch glides with |v| = hypot(vx, g t) (50 ms windows)
    traj = PhysicsDataset("parabola", length=1).trajectory(0)
    wave = synthesize(traj).wave
    for t in (0.2, 0.5, 0.8):
        speed = math.hypot(traj.params["vx"], GRAVITY * t)
        f = dominant_frequency(wave, SR, t - 0.025, t + 0.025)
        assert f == pytest.approx(min(200 + 100 * speed, cfg.max_hz), rel=0.005)


@pytest.mark.parametrize("frames,dt,sr", [(17, 0.1, 16_000), (9, 0.05, 22_050), (33, 0.1, 8_000)])
def test_duration_is_exact(frames, dt, sr):
    ds = PhysicsAudioVisualDataset(
        num_frames=frames, dt=dt, cond_frames=3, length=3, video=False, sound=SoundConfig(sr)
    )
    for i in range(3):
        audio = ds[i]["audio"]
        assert audio.shape == (1, round(frames * dt * sr)) == (1, num_samples(frames, dt, sr))
        assert audio.dtype == torch.float32 and audio.abs().max() <= 1.0
    assert num_samples(17, 0.1, 16_000) == 27_200


def test_items_are_deterministic_and_batch():
    a = PhysicsAudioVisualDataset(length=4, resolution=32, num_frames=9, cond_frames=3, seed=5)
    b = PhysicsAudioVisualDataset(length=4, resolution=32, num_frames=9, cond_frames=3, seed=5)
    c = PhysicsAudioVisualDataset(length=4, resolution=32, num_frames=9, cond_frames=3, seed=6)
    x, y = a[1], b[1]
    assert torch.equal(x["audio"], y["audio"]) and torch.equal(x["video"], y["video"])
    assert torch.equal(x["events"].nan_to_num(), y["events"].nan_to_num())
    assert not torch.equal(x["audio"], c[1]["audio"])
    batch = collate([a[i] for i in range(4)])
    assert batch["video"].shape == (4, 3, 9, 32, 32)
    assert batch["audio"].shape == (4, 1, 14_400) and batch["events"].shape == (4, 8)
    assert batch["num_events"].tolist() == [0, 1, 0, 0]
    assert torch.isnan(batch["events"][0]).all() and batch["sample_rate"].tolist() == [SR] * 4
    # the same clip's audio without rendering
    light = PhysicsAudioVisualDataset(a.physics, video=False)[1]
    assert "video" not in light and torch.equal(light["audio"], x["audio"])


def test_metric_counts_missed_and_extra_and_ignores_silence():
    traj, true = bouncing()
    wave = synthesize(traj).wave
    timing = click_timing_error(wave, np.concatenate([true[:2], [0.3], [np.nan]]), SR)
    assert (timing.matched, timing.missed, timing.extra) == (2, 1, 2)
    assert len(detect_onsets(np.zeros(SR), SR)) == 0
    none = click_timing_error(np.zeros(SR), true, SR)
    assert math.isnan(none.error_s) and none.missed == 4


def test_bad_options_raise_one_line_errors():
    with pytest.raises(KinemaError, match="half the sample rate"):
        SoundConfig(sample_rate=8_000, click_hz=5_000)
    with pytest.raises(KinemaError, match="not both"):
        PhysicsAudioVisualDataset(PhysicsDataset(length=2), length=3)
    with pytest.raises(KinemaError, match="mono waveform"):
        detect_onsets(np.zeros((2, 100)), SR)


def test_click_dataset_places_the_physics_click_at_seeded_onsets():
    data = ClickDataset(4, 4000, clicks=2, seed=3)
    burst = click(SoundConfig())
    item = data[1]
    wave, events = item["audio"][0].numpy(), item["events"].numpy()
    assert item["audio"].shape == (1, 4000) and item["sample_rate"] == 16_000
    assert events.shape == (2,) and np.all(np.diff(events) >= 0)
    rebuilt = np.zeros(4000)
    for t in events:
        start = round(t * 16_000)
        rebuilt[start : start + len(burst)] += burst
    np.testing.assert_allclose(wave, np.clip(rebuilt, -1, 1), atol=1e-6)
    assert torch.equal(ClickDataset(4, 4000, clicks=2, seed=3)[1]["audio"], item["audio"])
    assert not torch.equal(data[0]["audio"], item["audio"])
    found = detect_onsets(wave, 16_000)
    separate = abs(events[1] - events[0]) > 0.05  # the detector's minimum gap
    assert len(found) == (2 if separate else 1) and abs(found[0] - events[0]) < 0.002
    with pytest.raises(IndexError):
        data[4]
    with pytest.raises(KinemaError, match="num_samples"):
        ClickDataset(4, 10)


def test_click_overlay_adds_seeded_clicks_to_the_sound_and_its_events():
    base = PhysicsAudioVisualDataset(
        scenario="collision", split="id", length=3, num_frames=9, cond_frames=1, seed=0,
        video=False,
    )  # fmt: skip
    data = ClickOverlay(base, clicks=2, seed=5)
    burst = click(SoundConfig())
    item, plain = data[1], base[1]
    assert len(data) == 3 and item["audio"].shape == plain["audio"].shape
    assert item["num_events"] == plain["num_events"] + 2
    events = item["events"][: item["num_events"]].numpy()
    assert np.all(np.diff(events) >= 0) and item["events"][item["num_events"] :].isnan().all()
    # the added onsets: the event times that were not the base's
    base_times = plain["events"][: plain["num_events"]].numpy()
    added = [t for t in events if not np.isclose(base_times, t).any()]
    assert len(added) == 2
    rebuilt = plain["audio"][0].numpy().astype(np.float64)
    for t in added:
        start = round(t * 16_000)
        rebuilt[start : start + len(burst)] += burst
    np.testing.assert_allclose(item["audio"][0].numpy(), np.clip(rebuilt, -1, 1), atol=1e-6)
    assert torch.equal(ClickOverlay(base, clicks=2, seed=5)[1]["audio"], item["audio"])
    assert not torch.equal(ClickOverlay(base, clicks=2, seed=6)[1]["audio"], item["audio"])
    with pytest.raises(KinemaError, match="clicks >= 1"):
        ClickOverlay(base, clicks=0)
