"""Pyramidal flow matching: stage sigmas, jump points, the timestep map, training targets.

Rectified flow with noise level ``sigma`` in [0, 1]: ``x_sigma = sigma*n + (1 - sigma)*x``
(``sigma = 1`` pure noise). ``K`` stages; stage ``k`` works at ``2^(K-1-k)`` times less
resolution per side than full (stage 0 lowest). Originally stage ``k`` covers the noise
levels ``[1 - k/K, 1 - (k+1)/K]``; its start is corrected so that the jump from stage
``k-1`` (nearest upsample + block-noise renoise) lands exactly on the stage-``k`` start
distribution. Inside a stage a *local* sigma ``r`` runs from 1 (start) to 0 (end):
``x_t = r*start + (1 - r)*end``, velocity ``start - end``. With ``K = 1`` this is plain
rectified flow (start = noise, end = data, ``r = sigma``).

Temporal pyramid: a frame generated at stage ``k`` sees its history at reduced resolution
(:func:`compress_history`), the most recent frame at stage ``k``, older ones lower.

All pyramid ops act on the last two dims, so images ``(B, C, H, W)`` and videos
``(B, C, T, H, W)`` share them. A 2x bilinear downsample (``align_corners=False``, no
antialias) of an even-sized map is exactly the mean of each 2x2 block, which is how it is
computed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import reduce, repeat

from kinema.errors import KinemaError


def check_pyramid_size(height: int, width: int, stages: int) -> None:
    """Raise unless ``height x width`` halves cleanly ``stages - 1`` times."""
    step = 2 ** (stages - 1)
    if height < step or width < step or height % step or width % step:
        raise KinemaError(
            f"latent size {height}x{width} cannot form a {stages}-stage pyramid; "
            f"height and width must be multiples of {step}"
        )


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x bilinear downsample = mean of each 2x2 block: ``(..., H, W) -> (..., H/2, W/2)``."""
    return reduce(x, "... (h p) (w q) -> ... h w", "mean", p=2, q=2)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest 2x upsample: ``(..., h, w) -> (..., 2h, 2w)``."""
    return repeat(x, "... h w -> ... (h p) (w q)", p=2, q=2)


def latent_pyramid(x: torch.Tensor, stages: int) -> list[torch.Tensor]:
    """Clean pyramid of ``x (..., H, W)``: ``stages`` levels, lowest resolution first, the
    last one ``x`` itself; level ``k`` is ``(..., H / 2^(K-1-k), W / 2^(K-1-k))``."""
    check_pyramid_size(x.shape[-2], x.shape[-1], stages)
    levels = [x]
    for _ in range(stages - 1):
        levels.append(downsample2x(levels[-1]))
    return levels[::-1]


def noise_pyramid(noise: torch.Tensor, stages: int) -> list[torch.Tensor]:
    """Noise pyramid of unit noise ``(..., H, W)``, lowest resolution first: each level is
    the 2x downsample of the next times 2 (the mean of 4 iid unit values has variance 1/4),
    so every level is again iid unit-variance noise."""
    return [level * 2 ** (stages - 1 - k) for k, level in enumerate(latent_pyramid(noise, stages))]


@dataclass
class PyramidSchedule:
    """Noise levels of a ``K``-stage pyramid and the one stage-to-global timestep map shared
    by training and sampling.

    Attributes:
        stages: ``K``, number of resolutions (1 = plain rectified flow).
        gamma: within-block correlation magnitude ``g`` of the jump-point block noise, in
            ``(0, 1/3]``; ``1/3`` makes each block's noise sum exactly zero.
        stage_weights: relative frequency of each stage in training; ``None`` = the official
            ``(1, 2, 1)`` for ``K = 3``, uniform otherwise.
        num_train_timesteps: the global timestep runs from this value (pure noise, start of
            stage 0) down to 0 (clean, end of the last stage).
    """

    stages: int = 3
    gamma: float = 1.0 / 3.0
    stage_weights: tuple[float, ...] | None = None
    num_train_timesteps: int = 1000

    def __post_init__(self) -> None:
        if not isinstance(self.stages, int) or self.stages < 1:
            raise KinemaError(f"stages must be an integer >= 1, got {self.stages!r}")
        if not 0.0 < self.gamma <= 1.0 / 3.0 + 1e-12:
            raise KinemaError(f"gamma must be in (0, 1/3], got {self.gamma}")
        if self.stage_weights is not None:
            self.stage_weights = tuple(float(w) for w in self.stage_weights)
            w = self.stage_weights
            if len(w) != self.stages or min(w) < 0 or sum(w) <= 0:
                raise KinemaError(
                    f"stage_weights must be {self.stages} non-negative numbers with a positive "
                    f"sum (or None), got {w}"
                )
        if self.num_train_timesteps < 1:
            raise KinemaError(f"num_train_timesteps must be >= 1, got {self.num_train_timesteps}")

    @property
    def weights(self) -> tuple[float, ...]:
        """Resolved ``stage_weights`` (kept as given in the field so ``replace`` works)."""
        if self.stage_weights is not None:
            return self.stage_weights
        return (1.0, 2.0, 1.0) if self.stages == 3 else (1.0,) * self.stages

    @property
    def original_start_sigmas(self) -> tuple[float, ...]:
        """Even split of the noise levels: stage ``k`` starts at ``1 - k/K``."""
        return tuple(1.0 - k / self.stages for k in range(self.stages))

    @property
    def end_sigmas(self) -> tuple[float, ...]:
        """Stage ``k`` ends at ``1 - (k+1)/K``; the last one exactly at 0 (``end = x``)."""
        return tuple(1.0 - (k + 1) / self.stages for k in range(self.stages - 1)) + (0.0,)

    @property
    def start_sigmas(self) -> tuple[float, ...]:
        """Corrected starts: 1 for stage 0, else ``s' = 1 - s / (sqrt(1 + 1/g)(1 - s) + s)``
        with ``s = 1 - s0`` (``s0`` the original start). K = 3: 1.0 / 0.8 / 0.5."""
        starts = [1.0]
        for k in range(1, self.stages):
            a, _ = self.jump(k)
            starts.append(1.0 - a * (1.0 - self.original_start_sigmas[k]))
        return tuple(starts)

    def jump(self, stage: int) -> tuple[float, float]:
        """Renoise coefficients ``(a, b)`` for the jump into ``stage`` (>= 1):
        ``x = a * Up(x) + b * block_noise``.

        Why these values: stage ``k-1`` ends at noise level ``s0`` (the original start of
        stage ``k``), ``Up(end) = s0*Up(n) + (1 - s0)*Up(x_{k-1})`` with ``Up(n)`` constant on
        each 2x2 block. With ``s = 1 - s0``, ``a = 1 / (sqrt(1 + 1/g) s0 + s)`` and
        ``b = a s0 / sqrt(g)``:
        - the signal becomes ``a (1 - s0) Up(x_{k-1}) = (1 - s') Up(x_{k-1})``;
        - the noise covariance per block is ``a^2 s0^2 11^T + b^2 ((1+g) I - g 11^T)``; the
          ``11^T`` terms cancel (``b^2 g = a^2 s0^2``), leaving white noise of variance
          ``b^2 (1 + g) = (a s0 sqrt(1 + 1/g))^2 = s'^2``.
        So the result is distributed as the training start ``s' n_k + (1 - s') Up(x_{k-1})``.
        With ``g = 1/3``: ``a = 1/(1 + s0)``, ``b = sqrt(3) s0/(1 + s0)``; K = 3 gives
        (0.600, 0.693) then (0.750, 0.433).
        """
        if not 1 <= stage < self.stages:
            raise KinemaError(f"jump stage must be in [1, {self.stages - 1}], got {stage}")
        s0 = self.original_start_sigmas[stage]
        a = 1.0 / (math.sqrt(1.0 + 1.0 / self.gamma) * s0 + (1.0 - s0))
        return a, a * s0 / math.sqrt(self.gamma)

    def downscale(self, stage: int) -> int:
        """Per-side downsampling factor of ``stage`` relative to full resolution."""
        return 2 ** (self.stages - 1 - self._check_stage(stage))

    def timestep(self, stage: int, sigma: float | torch.Tensor) -> float | torch.Tensor:
        """Global timestep of local sigma ``sigma`` (1 = stage start, 0 = stage end).

        Each stage gets a share of ``[0, num_train_timesteps]`` proportional to its flow
        distance ``start_sigma - end_sigma``, linear in ``sigma`` inside it. Continuous and
        decreasing across stages; ``K = 1`` gives ``num_train_timesteps * sigma``. For K = 3
        (distances 1/3, 0.467, 0.5) the borders are 1000 / 743.6 / 384.6 / 0; the official
        code's discrete grid gives 1000 / 744 / 386 / 1.
        """
        stage = self._check_stage(stage)
        dist = [s - e for s, e in zip(self.start_sigmas, self.end_sigmas, strict=True)]
        # sequential sums so the end of stage k equals the start of stage k+1 bit for bit
        before = sum(dist[:stage])
        progress = (before + (1.0 - sigma) * dist[stage]) / sum(dist)
        return self.num_train_timesteps * (1.0 - progress)

    def sample_stage(self, generator: torch.Generator | None = None) -> int:
        """Draw a training stage with probabilities ``weights / sum(weights)``."""
        probs = torch.tensor(self.weights, dtype=torch.float64)
        return int(torch.multinomial(probs, 1, generator=generator))

    def training_target(
        self, x: torch.Tensor, noise: torch.Tensor, stage: int, r: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noisy input, velocity target and global timestep for one stage of a batch.

        Args:
            x: clean full-resolution latents ``(B, C, H, W)`` or ``(B, C, T, H, W)``.
            noise: unit Gaussian noise, same shape as ``x``.
            stage: the stage ``k`` of the whole batch (resolutions differ across stages).
            r: ``(B,)`` local sigmas in [0, 1].

        Returns:
            ``x_t`` and ``target``, both ``(B, C, [T,] H/f, W/f)`` with ``f = downscale(k)``,
            and ``timestep (B,)`` float32. ``end = e*n_k + (1 - e)*x_k`` (``e`` the end sigma,
            0 for the last stage so ``end = x``); ``start = n_0`` for stage 0, else
            ``s'*n_k + (1 - s')*Up(x_{k-1})``; ``x_t = r*start + (1 - r)*end``,
            ``target = start - end``.
        """
        stage = self._check_stage(stage)
        if noise.shape != x.shape:
            raise KinemaError(
                f"noise shape {tuple(noise.shape)} must equal latent shape {tuple(x.shape)}"
            )
        if r.shape != (x.shape[0],):
            raise KinemaError(f"r must have shape ({x.shape[0]},), got {tuple(r.shape)}")
        clean = latent_pyramid(x, self.stages)
        n_k = noise_pyramid(noise, self.stages)[stage]
        e = self.end_sigmas[stage]
        end = e * n_k + (1.0 - e) * clean[stage]
        if stage == 0:
            start = n_k
        else:
            s = self.start_sigmas[stage]
            start = s * n_k + (1.0 - s) * upsample2x(clean[stage - 1])
        rb = r.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        x_t = rb * start + (1.0 - rb) * end
        return x_t, start - end, self.timestep(stage, r.float())

    def _check_stage(self, stage: int) -> int:
        stage = int(stage)
        if not 0 <= stage < self.stages:
            raise KinemaError(f"stage must be in [0, {self.stages - 1}], got {stage}")
        return stage


def history_stages(num_history: int, stage: int) -> list[int]:
    """Stage (resolution) of each history frame, oldest first, for a current frame at
    ``stage``: the most recent at ``stage``, the one before at ``stage - 1``, ..., all older
    at stage 0."""
    return [max(stage - (num_history - 1 - j), 0) for j in range(num_history)]


def compress_history(
    frames: Sequence[torch.Tensor], stage: int, stages: int, *, first_index: int = 0
) -> list[tuple[torch.Tensor, int]]:
    """Temporal pyramid: full-resolution history latents -> the history input of the DiT.

    Args:
        frames: latent frames ``first_index, first_index + 1, ...`` (oldest first), each
            ``(B, C, H, W)`` at full resolution.
        stage: stage ``k`` of the current frame; frame ``j`` steps back is kept at stage
            ``max(k - j, 0)`` (:func:`history_stages`), i.e. ``2^(K-1-stage)`` times smaller
            per side by repeated :func:`downsample2x`.
        stages: ``K``.

    Returns:
        ``[(latent (B, C, h_j, w_j), frame_index), ...]`` oldest first.
    """
    if not 0 <= stage < stages:
        raise KinemaError(f"stage must be in [0, {stages - 1}] for {stages} stages, got {stage}")
    shapes = {tuple(f.shape) for f in frames}
    if len(shapes) > 1 or any(len(s) != 4 for s in shapes):
        raise KinemaError(
            f"history frames must all be (B, C, H, W) at full resolution, got {sorted(shapes)}"
        )
    target = history_stages(len(frames), stage)
    out = list(frames)
    # One downsampling call per level for all frames that go lower (not one per frame).
    for level in range(stages - 1, 0, -1):
        lower = [j for j, s in enumerate(target) if s < level]
        if not lower:
            break
        down = downsample2x(torch.cat([out[j] for j in lower])).chunk(len(lower))
        for j, d in zip(lower, down, strict=True):
            out[j] = d
    return [(x, first_index + j) for j, x in enumerate(out)]
