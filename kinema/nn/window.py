"""Local attention along one axis of a grid, as a boolean mask over its raster order.

A token attends the ``window`` cells of its own line along ``axis`` (all other coordinates
equal) that are centred on it as far as the borders allow: the window of coordinate ``c``
on an axis of length ``n`` starts at ``clamp(c - window // 2, 0, n - window)``, so every
query sees exactly ``min(window, n)`` keys (neighbourhood attention; at the borders the
window slides inward instead of shrinking). Sliding windows, unlike fixed tiles, let the
receptive field grow with depth: alternating axes reach any cell.
"""

from __future__ import annotations

import math

import torch

from kinema.errors import KinemaError


def window_mask(
    shape: tuple[int, ...],
    axis: int,
    window: int,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boolean attention mask (True = may attend) of 1D windows along ``axis`` of a grid.

    Args:
        shape: grid sizes, e.g. ``(t, h, w)``; tokens are in raster order (last axis fastest).
        axis: the axis the windows run along (``1`` = columns / vertical for ``(t, h, w)``).
        window: cells per window; ``>= shape[axis]`` means the whole line.
        device: device of the result.

    Returns:
        ``(N, N)`` bool with ``N = prod(shape)``; row = query, column = key.
    """
    shape = tuple(int(s) for s in shape)
    if not shape or min(shape) < 1:
        raise KinemaError(f"grid shape must be positive sizes, got {shape}")
    if not -len(shape) <= axis < len(shape):
        raise KinemaError(f"axis {axis} is out of range for a {len(shape)}-D grid {shape}")
    if window < 1:
        raise KinemaError(f"attention window must be >= 1, got {window}")
    axis %= len(shape)
    n = shape[axis]
    w = min(window, n)
    stride = math.prod(shape[axis + 1 :])
    flat = torch.arange(math.prod(shape), device=device)
    c = flat.div(stride, rounding_mode="floor") % n  # coordinate along the axis
    line = flat - c * stride  # same value <=> all other coordinates equal
    start = (c - w // 2).clamp(0, n - w)
    inside = (c[None, :] >= start[:, None]) & (c[None, :] < start[:, None] + w)
    return inside & (line[None, :] == line[:, None])


def line_index(
    shape: tuple[int, ...], axis: int, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """Raster indices of the cells of every line along ``axis`` of a grid.

    A windowed attention along ``axis`` only ever relates cells of one line, so it can run
    on the lines as a batch: ``x[:, line_index(shape, axis)]`` is ``(B, lines, n, D)`` with
    ``n = shape[axis]``, and ``window_mask((n,), 0, window)`` (or ``window_mask((g, n), 1,
    window)`` for ``g`` lines joined in one sequence) is the mask of
    ``window_mask(shape, axis, window)`` restricted to them.

    Returns:
        ``(prod(shape) // n, n)`` long: row = line (the other coordinates in raster order),
        column = coordinate along ``axis``.
    """
    shape = tuple(int(s) for s in shape)
    if not shape or min(shape) < 1:
        raise KinemaError(f"grid shape must be positive sizes, got {shape}")
    if not -len(shape) <= axis < len(shape):
        raise KinemaError(f"axis {axis} is out of range for a {len(shape)}-D grid {shape}")
    flat = torch.arange(math.prod(shape), device=device).reshape(shape)
    return flat.movedim(axis, -1).reshape(-1, shape[axis])
