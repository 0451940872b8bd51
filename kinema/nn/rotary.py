"""Rotary position embedding with explicit (possibly fractional) per-token positions.

Convention: Hugging Face Llama's ``rotate_half``. In a head-dim part of size ``d`` channel
``i`` is paired with channel ``i + d/2`` (not ``2i`` with ``2i+1``) and the pair is rotated
by ``pos * theta ** (-2i / d)``, ``i < d/2``. Weights of HF Llama models therefore work
unchanged.

1D: one part spanning the whole head dim, positions ``(B, N)`` or ``(N,)``.

3D: the head dim is split into three consecutive parts ``[dt | dh | dw]``
(``rope_axes_dim``), each an independent 1D rotary over its own axis: the ``dt`` part sees
the t position, the ``dh`` part h, the ``dw`` part w; positions ``(B, N, 3)`` or ``(N, 3)``.
The default split gives each spatial axis 3/8 of the head dim (rounded down to even) and
time the rest (head dim 64 -> (16, 24, 24), 128 -> (32, 48, 48)).

Positions are floats on purpose: Pyramid Flow places a low-resolution history frame on the
full-resolution grid with ``pos * scale``; integer positions are converted.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn

from kinema.errors import KinemaError


class Rope(NamedTuple):
    """Rotation tables for one forward, shared by all layers.

    ``cos``, ``sin``: ``(B|1, 1, N, head_dim)`` fp32 (``sin`` already carries the sign of
    ``rotate_half``); ``parts``: sizes of the head-dim parts (one per rotary axis), inside
    each of which channel ``i`` is paired with ``i + d/2``.
    """

    cos: torch.Tensor
    sin: torch.Tensor
    parts: tuple[int, ...]


def default_axes_dim(head_dim: int) -> tuple[int, int, int]:
    """Default 3D split ``(dt, dh, dw)`` of an even ``head_dim``: 3/8 to h and to w, rest to t."""
    if head_dim % 2 or head_dim < 6:
        raise KinemaError(f"3D rotary needs an even head_dim >= 6, got {head_dim}")
    dhw = (head_dim * 3 // 8) // 2 * 2
    return (head_dim - 2 * dhw, dhw, dhw)


def apply_rotary(x: torch.Tensor, rope: Rope, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Rotate ``x (B, H, N, head_dim)`` by ``rope``; computed in fp32, returned in ``dtype``
    (default ``x.dtype``).

    Equals HF's ``x * cos + rotate_half(x) * sin`` (per part in 3D mode).
    """
    xf = x.float()
    return (xf * rope.cos + swap_halves(xf, rope.parts) * rope.sin).to(dtype or x.dtype)


def swap_halves(x: torch.Tensor, parts: tuple[int, ...]) -> torch.Tensor:
    """``x (..., sum(parts))`` with the two halves of each part swapped (``rotate_half``
    without its sign). Slices and one concatenation: a gather (``index_select``) along the
    last dim is ~20x slower on CPU."""
    pieces = []
    for part in x.split(parts, dim=-1):
        half = part.shape[-1] // 2
        pieces += [part[..., half:], part[..., :half]]
    return torch.cat(pieces, dim=-1)


class RotaryEmbedding(nn.Module):
    """Builds :class:`Rope` tables from explicit positions.

    Args:
        head_dim: channels per attention head (even).
        theta: frequency base (10000 in LLaMA-1/2).
        axes_dim: ``None`` for 1D rotary, or ``(dt, dh, dw)`` (each even, summing to
            ``head_dim``) for 3D rotary over (t, h, w).
    """

    def __init__(
        self, head_dim: int, theta: float = 10000.0, axes_dim: tuple[int, ...] | None = None
    ) -> None:
        super().__init__()
        parts = (head_dim,) if axes_dim is None else tuple(int(d) for d in axes_dim)
        if any(d <= 0 or d % 2 for d in parts) or sum(parts) != head_dim:
            raise KinemaError(
                f"rotary split {parts} is invalid for head_dim {head_dim}: "
                f"parts must be positive, even and sum to {head_dim}"
            )
        self.head_dim = head_dim
        self.theta = float(theta)
        self.axes_dim = None if axes_dim is None else parts
        self.parts = parts
        # Per channel: which position axis it reads, its frequency and its rotate_half
        # sign. Built once, so a forward is one gather, one multiply, cos and sin.
        axis, inv_freq, sign = [], [], []
        for a, d in enumerate(parts):
            # Same expression as HF's default rope init so fp32 parity is exact.
            f = 1.0 / (self.theta ** (torch.arange(0, d, 2, dtype=torch.float) / d))
            axis.append(torch.full((d,), a))
            inv_freq.append(torch.cat([f, f]))
            sign.append(torch.cat([-torch.ones(d // 2), torch.ones(d // 2)]))
        self.register_buffer("axis", torch.cat(axis), persistent=False)
        self.register_buffer("inv_freq", torch.cat(inv_freq), persistent=False)
        self.register_buffer("sign", torch.cat(sign), persistent=False)

    def _apply(self, fn, recurse: bool = True):
        # model.to(bfloat16) must not round the frequency table: bf16 frequencies would move
        # every long-range position away from where the model was trained
        fp32 = {"inv_freq": self.inv_freq, "sign": self.sign}
        super()._apply(fn, recurse)
        for name, table in fp32.items():  # follow the device, keep the dtype
            setattr(self, name, table.to(getattr(self, name).device))
        return self

    @property
    def n_axes(self) -> int:
        return 1 if self.axes_dim is None else len(self.axes_dim)

    def forward(self, pos: torch.Tensor) -> Rope:
        """Tables for positions ``pos``: 1D ``(B, N)`` / ``(N,)``; 3D ``(B, N, 3)`` / ``(N, 3)``."""
        pos = pos.to(device=self.inv_freq.device, dtype=torch.float32)
        if self.axes_dim is None:
            if pos.ndim not in (1, 2):
                raise KinemaError(
                    f"1D rotary positions must be (B, N) or (N,), got {tuple(pos.shape)}"
                )
            angles = pos[..., None] * self.inv_freq  # (..., N, head_dim)
        else:
            if pos.ndim not in (2, 3) or pos.shape[-1] != self.n_axes:
                raise KinemaError(
                    f"3D rotary positions must be (B, N, 3) or (N, 3), got {tuple(pos.shape)}"
                )
            angles = pos.index_select(-1, self.axis) * self.inv_freq  # (..., N, head_dim)
        if angles.ndim == 2:
            angles = angles[None]
        angles = rearrange(angles, "b n d -> b 1 n d")
        return Rope(angles.cos(), angles.sin() * self.sign, self.parts)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, theta={self.theta}, axes_dim={self.axes_dim}"


def grid_positions(
    t: int,
    h: int,
    w: int,
    *,
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
    scale: tuple[float, float, float] | float = 1.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(t, h, w) positions of a ``t x h x w`` latent grid in raster order (w fastest).

    Position of cell ``(i, j, k)`` is ``offset + scale * (i, j, k)``. A history frame at 1/4
    resolution of an ``H x W`` grid takes ``scale=(1, 4, 4)`` so it covers the same
    extent; a grid starting at latent frame 5 takes ``offset=(5, 0, 0)``.

    Returns: ``(t*h*w, 3)`` float32.
    """
    sc = (float(scale),) * 3 if isinstance(scale, (int, float)) else tuple(map(float, scale))
    axes = [
        torch.arange(n, device=device, dtype=torch.float32) * s + o
        for n, s, o in zip((t, h, w), sc, offset, strict=True)
    ]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    return rearrange(grid, "t h w c -> (t h w) c")
