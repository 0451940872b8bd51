"""Sound for the physics clips: a click at every impact and a tone that follows the speed.

The audio is a pure function of a clip's ground truth (:class:`~kinema.data.physics.Trajectory`),
so it is aligned with the video by construction and deterministic per item:

- **clicks**: an exponentially damped sinusoid starting at every impact: the ball-ball
  collision (``collision_time``) and every wall or floor bounce, found in the trajectory as a
  sign flip of a velocity component between two frames;
- **tone**: a quiet sine at ``base_hz + hz_per_speed * |v|`` (capped at ``max_hz``) with
  ``v`` the velocity of ball 0 (the red ball, whose speed the benchmark scores); its phase
  accumulates sample by sample, so the pitch glides without clicks. One tone, not one per
  ball: two tones beat at the difference of their pitches, and the beats read as clicks.

Time 0 is frame 0; a clip of ``T`` frames lasts exactly ``T * dt`` seconds
(``round(T * dt * sample_rate)`` samples). Note that the benchmark's three scenarios have no
wall bounces (balls leave the view, the parabola falls out of the bottom), so physics clips
click only at collisions; bounce detection serves any other trajectory (e.g. a bouncing ball).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from kinema.data.physics import PhysicsDataset, Trajectory, caption
from kinema.errors import KinemaError


@dataclass(frozen=True)
class SoundConfig:
    """How a trajectory sounds. Amplitudes are peak values; the mix stays inside [-1, 1]."""

    sample_rate: int = 16_000
    base_hz: float = 200.0  # tone pitch of a ball at rest
    hz_per_speed: float = 100.0  # pitch added per world unit/s of speed
    max_hz: float = 2_000.0  # cap (fast falls would otherwise sweep past the clicks' band)
    tone_amp: float = 0.1
    fade_s: float = 0.01  # raised-cosine fade of the tone at both clip ends
    click_amp: float = 0.5
    click_hz: float = 3_000.0
    click_decay_s: float = 0.004  # e-folding time of the click envelope
    merge_s: float = 0.002  # impacts closer than this make one click

    def __post_init__(self) -> None:
        if not isinstance(self.sample_rate, int) or self.sample_rate < 1000:
            raise KinemaError(f"sample_rate must be an integer >= 1000 Hz, got {self.sample_rate}")
        nyquist = self.sample_rate / 2
        if not 0 < self.base_hz <= self.max_hz < nyquist or not 0 < self.click_hz < nyquist:
            raise KinemaError(
                f"need 0 < base_hz <= max_hz < {nyquist:g} and 0 < click_hz < {nyquist:g} "
                f"(half the sample rate), got base_hz {self.base_hz}, max_hz {self.max_hz}, "
                f"click_hz {self.click_hz}"
            )
        if self.tone_amp < 0 or self.click_amp < 0 or self.click_decay_s <= 0:
            raise KinemaError("tone_amp and click_amp must be >= 0 and click_decay_s > 0")


@dataclass(frozen=True)
class Impact:
    """One click: ``time`` in seconds, ``kind`` ``"collision"`` or ``"bounce"``, the balls
    involved, and ``frame`` k such that ``k * dt <= time <= (k + 1) * dt``."""

    time: float
    kind: str
    balls: tuple[int, ...]
    frame: int


def num_samples(num_frames: int, dt: float, sample_rate: int) -> int:
    """Samples of a clip of ``num_frames`` frames: exactly ``num_frames * dt`` seconds."""
    return round(num_frames * dt * sample_rate)


def impacts(traj: Trajectory, dt: float, merge_s: float = 0.002) -> list[Impact]:
    """Collisions and bounces of ``traj`` in time order.

    A bounce is a velocity component changing sign between frames ``k`` and ``k + 1`` by a
    jump: its change is mostly *not* the smooth acceleration seen in the neighbouring frame
    intervals (the smaller of the two changes), which rules out the top of a thrown ball's
    arc, where the vertical velocity flips smoothly. Its time ``t_k + s`` is where the paths
    from both frames meet, moving with that smooth acceleration ``a``:
    ``x_k + v_k s + a s^2 / 2 = x_{k+1} + v_{k+1} (s - dt) + a (s - dt)^2 / 2``, linear in
    ``s`` (exact for straight motion and for bounces under gravity). Flips in the frame
    interval of the ball-ball collision belong to it and are not bounces.
    """
    tc = traj.collision_time
    found: list[Impact] = []
    if tc is not None:
        k = min(int(tc // dt), len(traj.positions) - 2)
        found.append(Impact(float(tc), "collision", tuple(range(len(traj.radii))), k))
    pos, vel = traj.positions, traj.velocities  # (T, n, 2)
    dv = np.diff(vel, axis=0)  # (T - 1, n, 2): velocity change over each frame interval
    flips = np.argwhere(vel[:-1] * vel[1:] < 0)  # rows (k, ball, axis)
    for k, b, a in flips:
        if tc is not None and k * dt <= tc <= (k + 1) * dt:
            continue
        around = [dv[j, b, a] for j in (k - 1, k + 1) if 0 <= j < len(dv)]
        smooth = min(around, key=abs) if around else 0.0
        if abs(dv[k, b, a] - smooth) <= 0.5 * abs(dv[k, b, a]):
            continue
        v0, v1 = vel[k, b, a], vel[k + 1, b, a]
        s = (pos[k + 1, b, a] - pos[k, b, a] - v1 * dt + smooth * dt / 2) / (v0 - v1 + smooth)
        found.append(Impact(float(k * dt + np.clip(s, 0.0, dt)), "bounce", (int(b),), int(k)))
    found.sort(key=lambda e: e.time)
    merged: list[Impact] = []
    for e in found:
        if merged and e.time - merged[-1].time < merge_s:
            last = merged[-1]
            balls = tuple(sorted(set(last.balls) | set(e.balls)))
            merged[-1] = Impact(last.time, last.kind, balls, last.frame)
        else:
            merged.append(e)
    return merged


def sample_velocities(
    traj: Trajectory, dt: float, times: np.ndarray, events: list[Impact]
) -> np.ndarray:
    """Ball velocities ``(S, n_balls, 2)`` at sample ``times`` ``(S,)`` (seconds).

    Linear between frames (exact under constant acceleration), held after the last frame,
    and switched at the impact time inside a frame interval that holds an impact (linear
    blending would slide the pitch through the bounce instead of jumping).
    """
    vel = traj.velocities.astype(np.float64)
    last = len(vel) - 1
    pos = times / dt
    k = np.clip(np.floor(pos).astype(np.int64), 0, last)
    k1 = np.minimum(k + 1, last)
    frac = np.clip(pos - k, 0.0, 1.0)[:, None, None]
    out = vel[k] + frac * (vel[k1] - vel[k])
    for e in events:
        inside = k == e.frame
        for b in e.balls:
            before = inside & (times < e.time)
            out[before, b] = vel[e.frame, b]
            out[inside & ~before, b] = vel[min(e.frame + 1, last), b]
    return out


def click(config: SoundConfig) -> np.ndarray:
    """One click ``(n,)``: a damped sinusoid lasting 6 e-folding times (envelope < 0.25%)."""
    sr, tau = config.sample_rate, config.click_decay_s
    t = np.arange(round(6 * tau * sr)) / sr
    return config.click_amp * np.exp(-t / tau) * np.sin(2 * np.pi * config.click_hz * t)


@dataclass
class PhysicsSound:
    """``wave``: float32 ``(S,)`` in [-1, 1]; ``impacts``: the clicked events in time order."""

    wave: np.ndarray
    impacts: list[Impact]
    sample_rate: int

    @property
    def event_times(self) -> np.ndarray:
        """float64 ``(E,)`` click onsets in seconds."""
        return np.array([e.time for e in self.impacts], dtype=np.float64)


def synthesize(
    traj: Trajectory, dt: float = 0.1, config: SoundConfig | None = None
) -> PhysicsSound:
    """The sound of ``traj`` (frames ``dt`` seconds apart): the speed tone plus impact clicks."""
    cfg = config if config is not None else SoundConfig()
    sr = cfg.sample_rate
    n = num_samples(len(traj.positions), dt, sr)
    times = np.arange(n) / sr
    events = impacts(traj, dt, cfg.merge_s)
    speed = np.linalg.norm(sample_velocities(traj, dt, times, events)[:, 0], axis=-1)  # (S,)
    hz = np.minimum(cfg.base_hz + cfg.hz_per_speed * speed, cfg.max_hz)
    wave = cfg.tone_amp * np.sin(2 * np.pi * np.cumsum(hz) / sr)
    fade = min(round(cfg.fade_s * sr), n // 2)
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        wave[:fade] *= ramp
        wave[n - fade :] *= ramp[::-1]
    burst = click(cfg)
    for e in events:
        start = round(e.time * sr)
        stop = min(n, start + len(burst))
        if start < n:
            wave[start:stop] += burst[: stop - start]
    return PhysicsSound(np.clip(wave, -1.0, 1.0).astype(np.float32), events, sr)


class PhysicsAudioVisualDataset(Dataset):
    """Physics clips with their sound (video-to-audio and audio-to-video pairs).

    Items: with ``video=True`` everything :class:`~kinema.data.physics.PhysicsDataset` yields,
    plus
        audio: float ``(1, S)`` in [-1, 1], ``S = round(T * dt * sample_rate)``;
        events: float ``(max_events,)`` click times in seconds, NaN-padded; num_events: int;
        sample_rate: int.
    With ``video=False`` (codec training: no rendering) only the audio keys, ``caption``,
    ``scenario``, ``collision_time`` and ``index``.

    ``physics``: the clips (a :class:`PhysicsDataset`); or pass its options as keywords.
    """

    def __init__(
        self,
        physics: PhysicsDataset | None = None,
        *,
        sound: SoundConfig | None = None,
        video: bool = True,
        max_events: int = 8,
        **physics_options,
    ) -> None:
        if physics is not None and physics_options:
            raise KinemaError(
                f"give either a PhysicsDataset or its options, not both: {sorted(physics_options)}"
            )
        if max_events < 1:
            raise KinemaError(f"max_events must be >= 1, got {max_events}")
        self.physics = physics if physics is not None else PhysicsDataset(**physics_options)
        self.sound = sound if sound is not None else SoundConfig()
        self.video, self.max_events = video, max_events

    @property
    def sample_rate(self) -> int:
        return self.sound.sample_rate

    def __len__(self) -> int:
        return len(self.physics)

    def sound_of(self, index: int) -> PhysicsSound:
        """The synthesized sound of item ``index`` (numpy, with its impacts)."""
        return synthesize(self.physics.trajectory(index), self.physics.dt, self.sound)

    def __getitem__(self, index: int) -> dict:
        traj = self.physics.trajectory(index)
        sound = synthesize(traj, self.physics.dt, self.sound)
        times = sound.event_times
        if len(times) > self.max_events:
            raise KinemaError(
                f"item {index} has {len(times)} impacts; raise max_events (now {self.max_events})"
            )
        events = torch.full((self.max_events,), math.nan)
        events[: len(times)] = torch.from_numpy(times)
        if self.video:
            item = self.physics[index]
        else:
            tc = traj.collision_time
            item = {
                "caption": caption(traj),
                "scenario": traj.scenario,
                "collision_time": math.nan if tc is None else tc,
                "index": index,
            }
        item.update(
            audio=torch.from_numpy(sound.wave)[None],
            events=events,
            num_events=len(times),
            sample_rate=self.sample_rate,
        )
        return item


def place_clicks(
    wave: np.ndarray, burst: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """Add ``count`` copies of ``burst`` to ``wave (S,)`` in place at sample onsets drawn
    uniformly (clicks may overlap and add) and clip to [-1, 1]; returns the onsets, sorted."""
    starts = np.sort(rng.integers(0, len(wave) - len(burst), count))
    for s in starts:
        wave[s : s + len(burst)] += burst
    np.clip(wave, -1.0, 1.0, out=wave)
    return starts


class ClickDataset(Dataset):
    """Isolated clicks, no tone: the first stage of audio codec training
    (``kinema train audio-codec --click-steps``).

    Item ``i``: ``audio`` float ``(1, num_samples)`` silence with ``clicks`` copies of the
    physics :func:`click` at sample onsets drawn uniformly (seeded by ``(seed, i)``; clicks
    may overlap and add), ``events`` their onset times in seconds ``(clicks,)`` sorted, and
    ``sample_rate``. Why: on the physics sound a small codec learns the tone and never
    the rare 3 kHz clicks (MSE or high-passed MSE, 600 steps: 0 of 24 clicks); pretrained
    on clicks alone it renders them (64 of 64 held out), but it forgets them again on the
    sound unless :class:`ClickOverlay` keeps clicks frequent there (BENCHMARKS.md).
    """

    def __init__(
        self,
        length: int,
        num_samples: int,
        *,
        clicks: int = 2,
        sound: SoundConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.sound = sound if sound is not None else SoundConfig()
        self.burst = click(self.sound).astype(np.float32)
        if length < 1 or clicks < 1 or num_samples <= len(self.burst):
            raise KinemaError(
                f"ClickDataset needs length >= 1, clicks >= 1 and num_samples > "
                f"{len(self.burst)} (one click), got {length}, {clicks}, {num_samples}"
            )
        self.length, self.num_samples, self.clicks, self.seed = length, num_samples, clicks, seed

    @property
    def sample_rate(self) -> int:
        return self.sound.sample_rate

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        wave = np.zeros(self.num_samples, dtype=np.float32)
        starts = place_clicks(wave, self.burst, self.clicks, rng)
        return {
            "audio": torch.from_numpy(wave)[None],
            "events": torch.from_numpy(starts / self.sample_rate),
            "sample_rate": self.sample_rate,
        }


class ClickOverlay(Dataset):
    """A sound dataset (items with ``audio (1, S)``, ``events``, ``num_events``) with
    ``clicks`` extra physics clicks added to every item at seeded random onsets (seeded by
    ``(seed, i)``); their times join ``events`` while its NaN padding has room.

    For audio codec training: the physics sound has at most one click per clip, ~3% of its
    energy, and a codec trained on it drops clicks altogether; with more of them in the
    same tone-filled context it has to keep them.
    """

    def __init__(self, base: Dataset, clicks: int = 2, *, seed: int = 0) -> None:
        sound = getattr(base, "sound", None)
        self.sound = sound if sound is not None else SoundConfig()
        self.burst = click(self.sound).astype(np.float32)
        if clicks < 1:
            raise KinemaError(f"ClickOverlay needs clicks >= 1, got {clicks}")
        self.base, self.clicks, self.seed = base, clicks, seed

    @property
    def sample_rate(self) -> int:
        return self.sound.sample_rate

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.base[index])
        wave = item["audio"][0].numpy().astype(np.float32).copy()
        if len(wave) <= len(self.burst):
            raise KinemaError(
                f"item {index} has {len(wave)} samples; a click needs more than {len(self.burst)}"
            )
        starts = place_clicks(
            wave, self.burst, self.clicks, np.random.default_rng([self.seed, index])
        )
        item["audio"] = torch.from_numpy(wave)[None]
        if "events" in item:
            events = item["events"].clone()
            times = torch.cat(
                [events[~events.isnan()], torch.from_numpy(starts / self.sample_rate)]
            )
            times = times.sort().values[: len(events)].to(events.dtype)
            events[: len(times)] = times
            item["events"], item["num_events"] = events, len(times)
        return item
