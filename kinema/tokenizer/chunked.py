"""Long videos in bounded memory: chunks along time, tiles across space.

- **Chunks** stream the causal network over time (:func:`kinema.tokenizer.conv.streaming`):
  every causal conv carries the frames its next window needs, so the result equals the
  one-shot output (up to float summation order, ~1e-6 in fp32). Chunk boundaries fall on
  latent frames: the first encode chunk has ``1 + ft*(n-1)`` frames, later ones ``ft*n``.
- **Tiles** split the frame into overlapping windows of the latent grid and blend their
  outputs with linear ramps across each overlap. This is *approximate*: a tile sees zero
  padding instead of its neighbours at its border, and the per-frame GroupNorm statistics
  are taken over the tile instead of the whole frame.

Tile sizes and overlaps are in latent positions for both directions (a decode tile of 8
with ``fs = 8`` is 64 pixels wide).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kinema.errors import KinemaError
from kinema.tokenizer.conv import streaming


def chunk_bounds(num: int, chunk: int, first: int | None = None) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` covering ``range(num)``: the first of size ``first`` (default
    ``chunk``), the rest of size ``chunk`` (the last may be shorter)."""
    if chunk < 1:
        raise KinemaError(f"chunk must be >= 1 latent frame, got {chunk}")
    bounds, start, size = [], 0, first if first is not None else chunk
    while start < num:
        bounds.append((start, min(start + size, num)))
        start, size = start + size, chunk
    return bounds


def stream_time(module: nn.Module, x: torch.Tensor, bounds: list[tuple[int, int]]) -> torch.Tensor:
    """Run causal ``module`` over ``x (B, C, T, ...)`` one time chunk at a time."""
    with streaming(module):
        return torch.cat([module(x[:, :, a:b]) for a, b in bounds], dim=2)


def encode_chunked(encoder: nn.Module, video: torch.Tensor, chunk: int, ft: int) -> torch.Tensor:
    """Encoder output of ``video (B, 3, 1 + ft*k, H, W)``, ``chunk`` latent frames at a time.

    Returns ``(B, C, 1 + k, H/fs, W/fs)``, equal to ``encoder(video)``.
    """
    bounds = chunk_bounds(video.shape[2], ft * chunk, first=1 + ft * (chunk - 1))
    return stream_time(encoder, video, bounds)


def decode_chunked(decoder: nn.Module, z: torch.Tensor, chunk: int) -> torch.Tensor:
    """Decoder output of ``z (B, C, t, h, w)``, ``chunk`` latent frames at a time."""
    return stream_time(decoder, z, chunk_bounds(z.shape[2], chunk))


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start positions of tiles of ``tile`` covering ``size`` with at least ``overlap``."""
    if tile >= size:
        return [0]
    if not 0 <= overlap < tile:
        raise KinemaError(f"tile overlap must be in [0, {tile}), got {overlap}")
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def _ramp(n: int, lo: int, hi: int) -> torch.Tensor:
    """``(n,)`` weights rising linearly over the first ``lo`` and falling over the last
    ``hi`` positions; where two tiles overlap by ``L`` their ramps sum to 1."""
    i = torch.arange(n, dtype=torch.float32)
    up = ((i + 1) / (lo + 1)).clamp(max=1.0)
    down = ((n - i) / (hi + 1)).clamp(max=1.0)
    return up * down


def blend_tiles(
    run: Callable[[slice, slice], torch.Tensor],
    grid: tuple[int, int],
    tile: int,
    overlap: int,
    out_scale: int,
) -> torch.Tensor:
    """Blend ``run(rows, cols)`` over overlapping tiles of a latent ``grid = (h, w)``.

    ``run`` gets latent-grid slices and returns ``(B, C, T, rows*out_scale, cols*out_scale)``
    (``out_scale`` = ``fs`` for decoding, 1 for encoding). Returns the blended
    ``(B, C, T, h*out_scale, w*out_scale)`` in fp32.
    """
    h, w = grid
    th, tw = min(tile, h), min(tile, w)
    rows, cols = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    s = out_scale
    out = weight = None

    def edges(starts: list[int], k: int, size: int) -> tuple[int, int]:
        lo = starts[k - 1] + size - starts[k] if k > 0 else 0
        hi = starts[k] + size - starts[k + 1] if k + 1 < len(starts) else 0
        return lo * s, hi * s

    for a, y0 in enumerate(rows):
        wy = _ramp(th * s, *edges(rows, a, th))
        for b, x0 in enumerate(cols):
            wx = _ramp(tw * s, *edges(cols, b, tw))
            y = run(slice(y0, y0 + th), slice(x0, x0 + tw)).float()
            if out is None:
                shape = (*y.shape[:3], h * s, w * s)
                out = y.new_zeros(shape)
                weight = y.new_zeros(shape[3:])
            wt = (wy[:, None] * wx[None, :]).to(y.device)
            ys, xs = slice(y0 * s, (y0 + th) * s), slice(x0 * s, (x0 + tw) * s)
            out[..., ys, xs] += y * wt
            weight[ys, xs] += wt
    return out / weight
