"""Video tokens <-> blocks: the (t, h, w) grid cut into equal sub-boxes ``(bt, bh, bw)``.

Blocks are ordered raster over the block grid ``(t/bt, h/bh, w/bw)``; the ``L = bt*bh*bw``
tokens inside a block are raster over ``(bt, bh, bw)``. For ``(1, 1, w)`` blocks (NBP's
1x1x16) and for ``(1, 1, 1)`` (NTP) this is the plain raster order of the grid.
"""

from __future__ import annotations

import torch
from einops import rearrange

from kinema.errors import KinemaError

Shape3 = tuple[int, int, int]


def check_tiling(grid: Shape3, block: Shape3) -> None:
    """Raise a one-line :class:`KinemaError` unless ``block`` tiles ``grid`` exactly."""
    if len(grid) != 3 or len(block) != 3 or min(*grid, *block) < 1:
        raise KinemaError(
            f"latent grid {tuple(grid)} and block shape {tuple(block)} must be 3 positive sizes"
        )
    bad = [f"{axis} {g} % {b} != 0" for axis, g, b in zip("thw", grid, block, strict=True) if g % b]
    if bad:
        raise KinemaError(
            f"block_shape {tuple(block)} does not tile the latent grid {tuple(grid)} "
            f"({', '.join(bad)}); each block side must divide the grid side"
        )


def to_blocks(tokens: torch.Tensor, block: Shape3) -> torch.Tensor:
    """``(B, t, h, w, *rest)`` -> ``(B, n_blocks, L, *rest)`` in block order.

    Works for token ids ``(B, t, h, w)`` and for per-token vectors such as positions
    ``(1, t, h, w, 3)``.
    """
    if tokens.ndim < 4:
        raise KinemaError(f"tokens must be (B, t, h, w), got {tuple(tokens.shape)}")
    check_tiling(tuple(tokens.shape[1:4]), block)
    bt, bh, bw = block
    return rearrange(
        tokens,
        "b (nt bt) (nh bh) (nw bw) ... -> b (nt nh nw) (bt bh bw) ...",
        bt=bt,
        bh=bh,
        bw=bw,
    )


def from_blocks(blocks: torch.Tensor, grid: Shape3, block: Shape3) -> torch.Tensor:
    """Inverse of :func:`to_blocks`: ``(B, n_blocks, L, *rest)`` -> ``(B, t, h, w, *rest)``."""
    check_tiling(grid, block)
    (t, h, w), (bt, bh, bw) = grid, block
    n, length = (t // bt) * (h // bh) * (w // bw), bt * bh * bw
    if blocks.ndim < 3 or tuple(blocks.shape[1:3]) != (n, length):
        raise KinemaError(
            f"blocks must be (B, {n}, {length}) for grid {tuple(grid)} and block "
            f"{tuple(block)}, got {tuple(blocks.shape)}"
        )
    return rearrange(
        blocks,
        "b (nt nh nw) (bt bh bw) ... -> b (nt bt) (nh bh) (nw bw) ...",
        nt=t // bt,
        nh=h // bh,
        bt=bt,
        bh=bh,
    )
