"""Velocity error of the physics benchmark (DATA.md): detect the ball, difference, compare.

Two detectors, both per frame on uint8 ``(T, H, W, 3)`` video:
- ``threshold`` (the paper's): pixels with the colour's channel > 127 and the others < 127,
  unweighted centroid; it moves in whole-pixel jumps (floor ~0.12-0.16 units/s at 64x64);
- ``alpha`` (kinema's primary): weight = how strongly a pixel has the colour,
  ``clip((C - max(others)) / 255, 0, 1)``, weights below 0.1 ignored; sub-pixel accurate.
"""

from __future__ import annotations

import numpy as np

from kinema.data.physics import WORLD

CHANNELS = {"red": 0, "green": 1, "blue": 2}
METHODS = ("alpha", "threshold")


def ball_weights(frames: np.ndarray, color: str = "red", method: str = "alpha") -> np.ndarray:
    """Per-pixel weights ``(T, H, W)`` of how much each pixel belongs to the ``color`` ball."""
    if color not in CHANNELS:
        raise ValueError(f"unknown ball colour '{color}'; allowed: {', '.join(CHANNELS)}")
    c = CHANNELS[color]
    x = frames.astype(np.float32)
    main = x[..., c]
    others = np.delete(x, c, axis=-1)
    if method == "alpha":
        w = np.clip((main - others.max(-1)) / 255.0, 0.0, 1.0)
        return np.where(w >= 0.1, w, 0.0)
    if method == "threshold":
        return ((main > 127) & (others < 127).all(-1)).astype(np.float32)
    raise ValueError(f"unknown detector '{method}'; allowed: {', '.join(METHODS)}")


def weighted_centroids(weights: np.ndarray) -> np.ndarray:
    """Weighted centre per frame ``(T, 2)`` of ``weights (T, H, W)`` in pixels (x right,
    y down, pixel centres at +0.5); NaN where a frame has no weight."""
    _, h, wd = weights.shape
    total = weights.sum((1, 2))
    ys = np.arange(h, dtype=np.float64) + 0.5
    xs = np.arange(wd, dtype=np.float64) + 0.5
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (weights.sum(1) * xs).sum(-1) / total
        cy = (weights.sum(2) * ys).sum(-1) / total
    out = np.stack([cx, cy], -1)
    out[total <= 0] = np.nan
    return out


def ball_centroids(frames: np.ndarray, color: str = "red", method: str = "alpha") -> np.ndarray:
    """Ball centre per frame ``(T, 2)`` in world units (x right, y up); NaN where not seen."""
    w = ball_weights(frames, color, method)
    _, h, wd = w.shape
    c = weighted_centroids(w)
    return np.stack([c[:, 0] * WORLD / wd, WORLD - c[:, 1] * WORLD / h], -1)


def fully_visible(positions: np.ndarray, radius: float) -> np.ndarray:
    """``(T,)`` True where a ball of ``radius`` at ``positions (T, 2)`` lies inside the view."""
    inside = (positions - radius >= 0) & (positions + radius <= WORLD)
    return inside.all(-1)


def interval_errors(
    frames: np.ndarray,
    positions: np.ndarray,
    radius: float,
    dt: float = 0.1,
    *,
    color: str = "red",
    method: str = "alpha",
    collision_time: float | None = None,
    start_frame: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Velocity error of every frame interval and which intervals count.

    Velocities are finite differences over ``dt`` of the detected and the ground-truth
    centres (``positions (T, 2)``), so the comparison is exact for any motion.

    Returns three ``(T - 1,)`` arrays: ``err = |v_detected - v_true|`` (world units/s, NaN
    where the ball is not detected), ``scored`` (the protocol keeps the interval: the ball is
    fully in view at both ends in the ground truth, it starts at or after ``start_frame``,
    e.g. the first generated frame, and at or after ``collision_time``) and ``seen`` (the
    detector finds the ball at both ends). The metric averages ``err[scored & seen]``;
    ``scored & ~seen`` are intervals where a generated video lost the ball.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got shape {frames.shape}")
    if len(frames) != len(positions):
        raise ValueError(f"{len(frames)} frames but {len(positions)} ground-truth positions")
    det = ball_centroids(frames, color, method)
    visible = fully_visible(positions, radius)
    found = np.isfinite(det).all(-1)
    scored = visible[:-1] & visible[1:] & (np.arange(len(frames) - 1) >= start_frame)
    if collision_time is not None and np.isfinite(collision_time):
        scored &= np.arange(len(frames) - 1) * dt >= collision_time
    v_det = np.diff(det, axis=0) / dt
    v_true = np.diff(positions, axis=0) / dt
    return np.linalg.norm(v_det - v_true, axis=-1), scored, found[:-1] & found[1:]


def velocity_errors(
    frames: np.ndarray,
    positions: np.ndarray,
    radius: float,
    dt: float = 0.1,
    *,
    color: str = "red",
    method: str = "alpha",
    collision_time: float | None = None,
    start_frame: int = 0,
) -> np.ndarray:
    """Per-interval velocity errors ``|v_detected - v_true|`` (world units/s) of the
    intervals that count (see :func:`interval_errors`, same arguments).

    Returns a 1-D array (possibly empty); the metric is its mean over all clips.
    """
    err, scored, seen = interval_errors(
        frames,
        positions,
        radius,
        dt,
        color=color,
        method=method,
        collision_time=collision_time,
        start_frame=start_frame,
    )
    return err[scored & seen]
