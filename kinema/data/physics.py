"""The physics world-model benchmark (Kang et al., arXiv 2411.02385) as a seeded torch dataset.

Closed-form 2D kinematics in a 10 x 10 world (y up), rendered with numpy:
- ``uniform``: one red ball moving horizontally at constant velocity;
- ``collision``: a red and a blue ball on one horizontal line, perfectly elastic 1-D collision
  (mass proportional to r^2) that happens after the conditioning frames;
- ``parabola``: one red ball thrown horizontally, falling under gravity 9.8 units/s^2.

Beyond the paper's three (which ``"all"`` cycles): ``bounce``, one red ball moving in one of
eight directions and bouncing elastically off the four walls. It never leaves the view, so
it is the scenario for long videos (a 10x extension has a truth to compare with) and gives
the synthetic sound a click at every wall.

Item ``i`` is a pure function of ``(seed, split, scenario, i)``: datasets are reproducible and
effectively infinite. Use different seeds for training and evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from kinema.data.render import DIRECTIONS, composite, pixel_grid, reflect, sdf_alpha
from kinema.io import to_tensor

WORLD = 10.0
GRAVITY = 9.8
EDGE = 0.03  # world units: width of the anti-aliased rim (at least one pixel is used)
SCENARIOS = ("uniform", "collision", "parabola")  # the paper's, cycled by "all"
EXTRA_SCENARIOS = ("bounce",)
ALL_SCENARIOS = SCENARIOS + EXTRA_SCENARIOS
SPLITS = ("id", "ood")
RED, BLUE = (255, 0, 0), (0, 0, 255)
MAX_BALLS = 2

# Parameter ranges of DATA.md: unions of closed intervals.
SPEED_RANGES = {"id": ((1.0, 4.0),), "ood": ((0.0, 0.8), (4.5, 6.0))}
RADIUS_RANGES = {"id": ((0.7, 1.4),), "ood": ((0.3, 0.6), (1.5, 2.0))}


@dataclass
class Trajectory:
    """Ground truth of one clip. Arrays are per frame; ball 0 is red, ball 1 (if any) blue.

    positions, velocities: ``(T, n_balls, 2)`` world units (x right, y up) and units/s.
    radii: ``(n_balls,)``. collision_time: seconds from frame 0 (collision scenario only).
    """

    scenario: str
    positions: np.ndarray
    velocities: np.ndarray
    radii: np.ndarray
    params: dict = field(default_factory=dict)
    collision_time: float | None = None


def _uniform_in(rng: np.random.Generator, ranges: tuple[tuple[float, float], ...]) -> float:
    """Uniform sample from a union of intervals (each chosen in proportion to its length)."""
    lengths = np.array([hi - lo for lo, hi in ranges])
    lo, hi = ranges[rng.choice(len(ranges), p=lengths / lengths.sum())]
    return float(rng.uniform(lo, hi))


def _start_x(rng: np.random.Generator, r: float, travel: float) -> float:
    """Left-most x of a horizontal path of length ``travel``, kept in view when it fits."""
    lo, hi = r, WORLD - r - travel
    if hi >= lo:
        return float(rng.uniform(lo, hi))
    return float((WORLD - travel) / 2 + rng.uniform(-0.5, 0.5))  # centred; leaves the view


def simulate(
    scenario: str,
    split: str,
    rng: np.random.Generator,
    num_frames: int,
    dt: float,
    cond_frames: int,
) -> Trajectory:
    """Draw parameters from ``split``'s ranges and evaluate the closed-form trajectory."""
    t = np.arange(num_frames, dtype=np.float64) * dt
    duration = t[-1]
    speeds, radii = SPEED_RANGES[split], RADIUS_RANGES[split]
    if scenario == "uniform":
        r, speed = _uniform_in(rng, radii), _uniform_in(rng, speeds)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        x_start = _start_x(rng, r, speed * duration)
        x0 = x_start if sign > 0 else WORLD - x_start
        y0 = float(rng.uniform(r, WORLD - r))
        vx = sign * speed
        pos = np.stack([x0 + vx * t, np.full_like(t, y0)], -1)[:, None]
        vel = np.broadcast_to(np.array([vx, 0.0]), (num_frames, 1, 2)).copy()
        params = {"speed": speed, "radius": r, "x0": x0, "y0": y0, "vx": vx}
        return Trajectory(scenario, pos, vel, np.array([r]), params)
    if scenario == "parabola":
        r, speed = _uniform_in(rng, radii), _uniform_in(rng, speeds)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        x_start = _start_x(rng, r, speed * duration)
        x0 = x_start if sign > 0 else WORLD - x_start
        y0 = float(rng.uniform(max(r, 0.7 * WORLD), WORLD - r))
        vx = sign * speed
        pos = np.stack([x0 + vx * t, y0 - 0.5 * GRAVITY * t**2], -1)[:, None]
        vel = np.stack([np.full_like(t, vx), -GRAVITY * t], -1)[:, None]
        params = {"speed": speed, "radius": r, "x0": x0, "y0": y0, "vx": vx, "g": GRAVITY}
        return Trajectory(scenario, pos, vel, np.array([r]), params)
    if scenario == "collision":
        return _collision(split, rng, t, dt, cond_frames)
    if scenario == "bounce":
        return _bounce(split, rng, t)
    raise ValueError(f"unknown physics scenario '{scenario}'; allowed: {', '.join(ALL_SCENARIOS)}")


def _bounce(split: str, rng: np.random.Generator, t: np.ndarray) -> Trajectory:
    """One ball in a box: straight lines folded at the walls (``reflect``). Nothing drawn
    depends on the clip length, so a longer clip of the same item extends a shorter one."""
    r, speed = _uniform_in(rng, RADIUS_RANGES[split]), _uniform_in(rng, SPEED_RANGES[split])
    direction = list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]
    unit = np.array(DIRECTIONS[direction], np.float64)
    v = speed * unit / np.linalg.norm(unit)  # (2,) world units/s, y up
    start = rng.uniform(r, WORLD - r, 2)
    free = start + v * t[:, None]  # (T, 2) the path without walls
    lo, hi = r, WORLD - r
    pos = reflect(free, lo, hi)
    # moving along the fold's rising half keeps the sign of v, the falling half flips it
    rising = np.mod(free - lo, 2 * (hi - lo)) < (hi - lo)
    vel = np.where(rising, v, -v)
    params = {"speed": speed, "radius": r, "x0": start[0], "y0": start[1], "vx": v[0], "vy": v[1]}
    return Trajectory("bounce", pos[:, None], vel[:, None], np.array([r]), params)


def _collision(
    split: str, rng: np.random.Generator, t: np.ndarray, dt: float, cond_frames: int
) -> Trajectory:
    speeds, radii = SPEED_RANGES[split], RADIUS_RANGES[split]
    r1, r2 = _uniform_in(rng, radii), _uniform_in(rng, radii)
    s1, s2 = _uniform_in(rng, speeds), _uniform_in(rng, speeds)
    # Red (ball 1 of the formula) starts on the left and must close in on blue: v1 > v2.
    if rng.random() < 0.5 or abs(s1 - s2) < 0.2:
        v1, v2 = s1, -s2  # head-on
    else:
        v1, v2 = max(s1, s2), min(s1, s2)  # red catches up with blue
    if v1 - v2 < 0.2:  # both nearly at rest (OOD): give red enough speed to meet blue
        v1 = v2 + 0.2
    m1, m2 = r1**2, r2**2
    u1 = ((m1 - m2) * v1 + 2 * m2 * v2) / (m1 + m2)
    u2 = ((m2 - m1) * v2 + 2 * m1 * v1) / (m1 + m2)
    # Collide strictly after the conditioning frames and at least two frames before the end.
    t_lo = min(cond_frames * dt + 0.5 * dt, t[-1])
    t_hi = max(t_lo, t[-1] - 2 * dt)
    tc = float(rng.uniform(t_lo, t_hi))
    xc = float(rng.uniform(0.35 * WORLD, 0.65 * WORLD))  # contact point
    y = float(rng.uniform(max(r1, r2), WORLD - max(r1, r2)))
    before = t < tc
    x1 = np.where(before, xc - r1 + v1 * (t - tc), xc - r1 + u1 * (t - tc))
    x2 = np.where(before, xc + r2 + v2 * (t - tc), xc + r2 + u2 * (t - tc))
    vx1 = np.where(before, v1, u1)
    vx2 = np.where(before, v2, u2)
    if rng.random() < 0.5:  # mirror the scene so that red also comes from the right
        x1, x2, vx1, vx2 = WORLD - x1, WORLD - x2, -vx1, -vx2
        v1, v2, u1, u2, xc = -v1, -v2, -u1, -u2, WORLD - xc
    ys = np.full_like(t, y)
    pos = np.stack([np.stack([x1, ys], -1), np.stack([x2, ys], -1)], 1)
    zeros = np.zeros_like(t)
    vel = np.stack([np.stack([vx1, zeros], -1), np.stack([vx2, zeros], -1)], 1)
    params = {
        "radius": r1,
        "radius_blue": r2,
        "v_red": v1,
        "v_blue": v2,
        "v_red_after": u1,
        "v_blue_after": u2,
        "collision_time": tc,
        "contact_x": xc,
        "y0": y,
    }
    return Trajectory("collision", pos, vel, np.array([r1, r2]), params, collision_time=tc)


def render(traj: Trajectory, height: int, width: int) -> np.ndarray:
    """Rasterise a trajectory to uint8 ``(T, H, W, 3)``: white background, red over blue."""
    ys, xs = pixel_grid(height, width)
    sx, sy = width / WORLD, height / WORLD
    edge_px = max(EDGE * sx, 1.0)
    layers = []
    for b in reversed(range(len(traj.radii))):  # blue first, red painted on top
        cx = traj.positions[:, b, 0].astype(np.float32) * sx
        cy = (WORLD - traj.positions[:, b, 1].astype(np.float32)) * sy
        # Ellipse-aware distance so non-square resolutions keep round balls in world units.
        dx = (xs[None] - cx[:, None, None]) / sx
        dy = (ys[None] - cy[:, None, None]) / sy
        dist_px = (np.sqrt(dx * dx + dy * dy) - traj.radii[b]) * sx
        layers.append((sdf_alpha(dist_px, edge_px), RED if b == 0 else BLUE))
    background = np.full((len(traj.positions), height, width, 3), 255.0, np.float32)
    return composite(background, layers)


def _speed_word(speed: float) -> str:
    if speed < 0.9:
        return "very slowly"
    if speed < 2.0:
        return "slowly"
    if speed <= 3.0:
        return "steadily"
    if speed <= 4.2:
        return "quickly"
    return "very quickly"


def _size_word(r: float) -> str:
    return "tiny" if r < 0.65 else "small" if r < 1.05 else "large" if r <= 1.45 else "huge"


def _direction(vx: float) -> str:
    return "right" if vx >= 0 else "left"


def caption(traj: Trajectory) -> str:
    """A templated caption naming size, colour, direction and speed."""
    p = traj.params
    size = _size_word(traj.radii[0])
    if traj.scenario == "uniform":
        return f"a {size} red ball moves {_direction(p['vx'])} {_speed_word(abs(p['vx']))}"
    if traj.scenario == "parabola":
        return f"a {size} red ball is thrown to the {_direction(p['vx'])} and falls"
    if traj.scenario == "bounce":
        unit = np.array([p["vx"], p["vy"]]) / max(p["speed"], 1e-9)
        names = list(DIRECTIONS)
        dirs = np.array([DIRECTIONS[k] for k in names], np.float64)
        heading = names[int((dirs / np.linalg.norm(dirs, axis=1, keepdims=True) @ unit).argmax())]
        return f"a {size} red ball bounces {heading} {_speed_word(p['speed'])}"
    blue = f"a {_size_word(traj.radii[1])} blue ball"
    if abs(p["v_blue"]) < 0.05:
        blue += " at rest"
    else:
        blue += f" moving {_direction(p['v_blue'])}"
    return f"a {size} red ball moving {_direction(p['v_red'])} hits {blue}"


def check_clip_args(num_frames: int, resolution: int | tuple[int, int], dt: float) -> None:
    """Validate clip geometry with messages that give the allowed range."""
    if not isinstance(num_frames, int) or num_frames < 2:
        raise ValueError(f"num_frames must be an integer >= 2, got {num_frames}")
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    if h < 8 or w < 8 or h > 4096 or w > 4096:
        raise ValueError(f"resolution must be between 8 and 4096 pixels, got {resolution}")
    if not (isinstance(dt, int | float) and 0 < dt <= 1 and math.isfinite(dt)):
        raise ValueError(f"dt must be in (0, 1] seconds, got {dt}")


class PhysicsDataset(Dataset):
    """Seeded physics clips with ground truth.

    Each item is a dict:
        video: float ``(3, T, H, W)`` in [-1, 1];
        positions, velocities: ``(T, 2, 2)`` world units, ball 1 NaN when absent;
        radii: ``(2,)`` (NaN when absent); num_balls: int; collision_time: float (NaN if none);
        caption, scenario, split: str; params: dict of floats; index: int.

    ``scenario='all'`` cycles uniform, collision, parabola over consecutive indices;
    ``'bounce'`` (not in ``'all'``) is the ball in a box.
    """

    def __init__(
        self,
        scenario: str = "all",
        split: str = "id",
        length: int = 10_000,
        resolution: int | tuple[int, int] = 64,
        num_frames: int = 17,
        dt: float = 0.1,
        cond_frames: int = 5,
        seed: int = 0,
    ) -> None:
        if scenario != "all" and scenario not in ALL_SCENARIOS:
            raise ValueError(
                f"unknown physics scenario '{scenario}'; allowed: all, {', '.join(ALL_SCENARIOS)}"
            )
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; allowed: {', '.join(SPLITS)}")
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive integer, got {length}")
        check_clip_args(num_frames, resolution, dt)
        if not 0 <= cond_frames < num_frames:
            raise ValueError(f"cond_frames must be in [0, {num_frames - 1}], got {cond_frames}")
        self.scenarios = SCENARIOS if scenario == "all" else (scenario,)
        self.split, self.length, self.seed = split, length, seed
        self.height, self.width = (
            (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
        )
        self.num_frames, self.dt, self.cond_frames = num_frames, dt, cond_frames

    def __len__(self) -> int:
        return self.length

    def trajectory(self, index: int) -> Trajectory:
        """The ground truth of item ``index`` without rendering it."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} clips")
        scenario = self.scenarios[index % len(self.scenarios)]
        key = [self.seed, SPLITS.index(self.split), ALL_SCENARIOS.index(scenario), index]
        rng = np.random.default_rng(key)
        return simulate(scenario, self.split, rng, self.num_frames, self.dt, self.cond_frames)

    def frames(self, index: int) -> tuple[np.ndarray, Trajectory]:
        """uint8 ``(T, H, W, 3)`` frames and ground truth of item ``index``."""
        traj = self.trajectory(index)
        return render(traj, self.height, self.width), traj

    def __getitem__(self, index: int) -> dict:
        video, traj = self.frames(index)
        nb = len(traj.radii)
        pos = np.full((self.num_frames, MAX_BALLS, 2), np.nan, np.float32)
        vel = np.full_like(pos, np.nan)
        radii = np.full((MAX_BALLS,), np.nan, np.float32)
        pos[:, :nb], vel[:, :nb], radii[:nb] = traj.positions, traj.velocities, traj.radii
        return {
            "video": to_tensor(video),
            "positions": torch.from_numpy(pos),
            "velocities": torch.from_numpy(vel),
            "radii": torch.from_numpy(radii),
            "num_balls": nb,
            "collision_time": math.nan if traj.collision_time is None else traj.collision_time,
            "caption": caption(traj),
            "scenario": traj.scenario,
            "split": self.split,
            "params": {k: float(v) for k, v in traj.params.items()},
            "index": index,
        }
