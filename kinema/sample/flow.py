"""Pyramid Euler sampler for one latent frame (the temporal loop over frames lives above it).

``K = 1`` is plain rectified-flow Euler sampling through the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from kinema.errors import KinemaError
from kinema.flow.noise import block_noise
from kinema.flow.pyramid import PyramidSchedule, check_pyramid_size, noise_pyramid, upsample2x

Velocity = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


@torch.no_grad()
def sample_pyramid(
    velocity: Velocity,
    shape: Sequence[int],
    schedule: PyramidSchedule,
    steps: Sequence[int],
    *,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Integrate the pyramid flow from noise to a clean full-resolution latent.

    Args:
        velocity: ``velocity(x, timestep, stage) -> v`` with ``x (B, C, h_k, w_k)`` fp32 at
            the stage resolution, ``timestep (B,)`` fp32 global timestep
            (:meth:`PyramidSchedule.timestep`) and ``v`` of ``x``'s shape (any float dtype;
            it runs under whatever autocast the caller set). Guidance belongs in this
            callable, e.g. run ``cat([x, x])`` with and without the condition and mix with
            :func:`kinema.sample.cfg_combine`.
        shape: full-resolution ``(B, C, H, W)``; ``H, W`` multiples of ``2^(K-1)``.
        schedule: the stages, their sigmas and the timestep map.
        steps: Euler steps per stage, e.g. ``[20, 20, 20]``.
        noise: full-resolution unit noise ``shape``; drawn from ``generator`` when None.
        generator: source of the initial and jump-point noise.
        device: where to sample (default: that of ``noise``, else CPU).

    Returns:
        ``(B, C, H, W)`` float32.

    Inside stage ``k`` the local sigma runs ``linspace(1, 0, steps[k] + 1)``;
    ``x <- x + (sigma_next - sigma) * v`` in fp32 moves from the stage start to its end (the
    model predicts ``start - end``, see :meth:`PyramidSchedule.training_target`). The state
    starts as the full-resolution noise taken down to stage 0 with the noise pyramid (still
    unit variance) and at each jump becomes ``a * Up(x) + b * block_noise``.
    """
    shape = tuple(int(s) for s in shape)
    k_stages = schedule.stages
    if len(shape) != 4:
        raise KinemaError(f"shape must be (B, C, H, W), got {shape}")
    check_pyramid_size(shape[-2], shape[-1], k_stages)
    steps = [int(n) for n in steps]
    if len(steps) != k_stages or min(steps) < 1:
        raise KinemaError(f"steps must be {k_stages} integers >= 1 (one per stage), got {steps}")
    if noise is None:
        noise = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    elif tuple(noise.shape) != shape:
        raise KinemaError(f"noise shape {tuple(noise.shape)} must equal shape {shape}")
    device = noise.device

    x = noise_pyramid(noise.float(), k_stages)[0]
    for stage, n in enumerate(steps):
        if stage > 0:
            a, b = schedule.jump(stage)
            up = upsample2x(x)
            noise_k = block_noise(
                up.shape, gamma=schedule.gamma, generator=generator, device=device
            )
            x = a * up + b * noise_k
        # float64 grid cast to fp32, as numpy-based schedulers build it
        sigmas = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)
        timesteps = schedule.timestep(stage, sigmas).float().tolist()
        sigmas = sigmas.float().tolist()
        for i in range(n):
            t = torch.full((shape[0],), timesteps[i], device=device, dtype=torch.float32)
            v = velocity(x, t, stage).float()
            x = x + (sigmas[i + 1] - sigmas[i]) * v
    return x
