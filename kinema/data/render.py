"""Anti-aliased rasterisation shared by the synthetic datasets (numpy, vectorised over frames).

Shapes are drawn from signed distances: coverage ``alpha = clip(0.5 - d / edge, 0, 1)`` with
``d`` the signed distance to the outline and ``edge`` the width of the soft edge, so an
alpha-weighted centroid of a disc recovers its centre to a small fraction of a pixel.
"""

from __future__ import annotations

import numpy as np

# Screen directions (dx, dy), dy > 0 meaning up (not unit length: normalise before use)
DIRECTIONS = {
    "right": (1, 0),
    "up-right": (1, 1),
    "up": (0, 1),
    "up-left": (-1, 1),
    "left": (-1, 0),
    "down-left": (-1, -1),
    "down": (0, -1),
    "down-right": (1, -1),
}


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(ys, xs)`` of shape ``(H, 1)`` and ``(1, W)``, in pixels."""
    ys = np.arange(height, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(width, dtype=np.float32)[None, :] + 0.5
    return ys, xs


def sdf_alpha(dist: np.ndarray, edge: float) -> np.ndarray:
    """Coverage in [0, 1] from a signed distance (negative inside), edge width ``edge``."""
    return np.clip(0.5 - dist / edge, 0.0, 1.0)


def shape_sdf(
    kind: str, cx: np.ndarray, cy: np.ndarray, half: float, height: int, width: int
) -> np.ndarray:
    """Signed distance ``(T, H, W)`` in pixels to a shape centred at ``(cx, cy)`` ``(T,)``.

    ``half`` is the radius (circle), half side (square) or circumradius (triangle, apex up).
    """
    ys, xs = pixel_grid(height, width)
    dx = xs[None] - cx[:, None, None]
    dy = ys[None] - cy[:, None, None]
    if kind == "circle":
        return np.sqrt(dx * dx + dy * dy) - half
    if kind == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - half
    if kind == "triangle":
        # Equilateral triangle, apex up (screen y grows downwards): max of three half-planes.
        inr = half / 2.0  # inradius = circumradius / 2
        s3 = np.sqrt(3.0) / 2.0
        right, left = -0.5 * dy + s3 * dx - inr, -0.5 * dy - s3 * dx - inr
        return np.maximum(np.maximum(dy - inr, right), left)
    raise ValueError(f"unknown shape '{kind}'; allowed: circle, square, triangle")


def composite(background: np.ndarray, layers: list[tuple[np.ndarray, tuple[int, int, int]]]):
    """Paint ``(alpha (T, H, W), rgb)`` layers in order over a float ``(T, H, W, 3)`` canvas.

    Returns uint8 ``(T, H, W, 3)``.
    """
    img = background.astype(np.float32)
    for alpha, rgb in layers:
        a = alpha[..., None]
        img = img * (1.0 - a) + np.asarray(rgb, np.float32) * a
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def reflect(x: np.ndarray, lo: float | np.ndarray, hi: float | np.ndarray) -> np.ndarray:
    """Fold unbounded positions into ``[lo, hi]`` as if bouncing elastically off both ends."""
    span = np.maximum(hi - lo, 1e-6)
    u = np.mod(x - lo, 2.0 * span)
    return lo + np.where(u <= span, u, 2.0 * span - u)
