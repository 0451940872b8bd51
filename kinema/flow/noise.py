"""Block noise for the pyramid jump points (Pyramidal Flow Matching, arXiv 2410.05954).

Nearest upsampling copies one value into a 2x2 block, so the noise of an upsampled state is
perfectly correlated inside each block. Adding noise that is *anti*-correlated inside each
block (covariance ``S = (1 + g) I - g 11^T``) cancels that correlation; without it samples
come out blurry and blocky.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange

from kinema.errors import KinemaError


def block_noise_factor(gamma: float) -> torch.Tensor:
    """Symmetric square root ``L (4, 4)`` float64 of ``S = (1 + g) I - g 11^T``.

    ``S`` has eigenvalue ``1 - 3g`` along ``1`` and ``1 + g`` on its orthogonal complement,
    so ``L = sqrt(1 + g) (I - J) + sqrt(1 - 3g) J`` with ``J = 11^T / 4``. This is valid where
    Cholesky is not: at ``g = 1/3`` ``S`` is singular (the block sum is exactly zero).
    """
    if not 0.0 <= gamma <= 1.0 / 3.0 + 1e-12:
        raise KinemaError(
            f"block noise gamma must be in [0, 1/3] (S = (1+g)I - g*11^T >= 0), got {gamma}"
        )
    j = torch.full((4, 4), 0.25, dtype=torch.float64)
    eye = torch.eye(4, dtype=torch.float64)
    return math.sqrt(1.0 + gamma) * (eye - j) + math.sqrt(max(1.0 - 3.0 * gamma, 0.0)) * j


def block_noise(
    shape: tuple[int, ...] | torch.Size,
    *,
    gamma: float = 1.0 / 3.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Noise of ``shape (..., H, W)`` (H, W even) whose every 2x2 block of every channel is
    drawn independently from ``N(0, S)``, ``S = (1 + gamma) I - gamma 11^T``: unit variance
    per pixel, correlation ``-gamma`` between the four pixels of a block (block sum exactly
    zero at ``gamma = 1/3``), independent across blocks.

    Block pixel order is row-major (``p q`` in ``(h p) (w q)``); ``S`` is symmetric in the
    four pixels so the order does not matter. Drawn in one ``randn`` call in at least fp32.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or shape[-2] % 2 or shape[-1] % 2 or min(shape) < 1:
        raise KinemaError(f"block noise needs a shape (..., H, W) with H and W even, got {shape}")
    work = torch.promote_types(dtype, torch.float32)
    z = torch.randn(
        (*shape[:-2], shape[-2] // 2, shape[-1] // 2, 4),
        generator=generator,
        device=device,
        dtype=work,
    )
    factor = block_noise_factor(gamma).to(device=z.device, dtype=work)
    blocks = z @ factor.T  # (..., H/2, W/2, 4), each row ~ N(0, L L^T = S)
    return rearrange(blocks, "... h w (p q) -> ... (h p) (w q)", p=2, q=2).to(dtype)
