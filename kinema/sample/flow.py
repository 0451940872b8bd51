"""Pyramid-flow sampling: the Euler sampler of one latent frame (:func:`sample_pyramid`) and
the temporal loop that generates a video one latent frame at a time (:func:`generate_latents`).

``K = 1`` is plain rectified-flow Euler sampling through the same code. Text-to-image,
text-to-video and image-to-video are one loop: given frames are simply history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from kinema.errors import KinemaError
from kinema.flow.dit import PyramidDiT
from kinema.flow.noise import block_noise
from kinema.flow.pyramid import (
    PyramidSchedule,
    check_pyramid_size,
    compress_history,
    noise_pyramid,
    upsample2x,
)
from kinema.nn.packed import packed_linears
from kinema.sample.decode import cast_parameters_
from kinema.sample.guidance import cfg_combine

logger = logging.getLogger(__name__)

Velocity = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
# progress(done, total): units of work (Euler steps, decoded blocks) done so far of all
Progress = Callable[[int, int], None]


def check_steps(steps: Sequence[int], stages: int, name: str = "steps") -> list[int]:
    """Euler steps per stage as a list of ``stages`` integers >= 1 (else a one-line error)."""
    steps = [int(n) for n in steps]
    if len(steps) != stages or min(steps, default=0) < 1:
        raise KinemaError(f"{name} must be {stages} integers >= 1 (one per stage), got {steps}")
    return steps


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
    on_step: Callable[[], None] | None = None,
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
        on_step: called after each Euler step (progress reporting).

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
    steps = check_steps(steps, k_stages)
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
            if on_step is not None:
                on_step()
    return x


@torch.inference_mode()
def generate_latents(
    model: PyramidDiT,
    n: int = 1,
    *,
    frames: int | None = None,
    text: torch.Tensor | None = None,
    text_mask: torch.Tensor | None = None,
    cond_latents: torch.Tensor | None = None,
    steps_first: Sequence[int] | None = None,
    steps_later: Sequence[int] | None = None,
    guidance_scale: float | None = None,
    video_guidance_scale: float | None = None,
    width: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Generate ``n`` latent videos one latent frame at a time, each through all K stages.

    Frame ``i`` is sampled by :func:`sample_pyramid` conditioned on frames ``< i`` (given
    or generated), compressed by distance for each stage (:func:`compress_history`).
    Text and history do not change during a stage, so with ``use_cache`` their keys/values
    are written once per stage (:meth:`PyramidDiT.encode_context`, exact) and each Euler
    step runs only the current frame's tokens.

    Args:
        model: the DiT (put in eval mode for the call; its KV caches are freed afterwards).
        n: ``B``, videos to generate.
        frames: latent frames of the result, given ones included (default and maximum: the
            model's training length ``config.frames``).
        text, text_mask: ``(B, L, text_dim)`` / ``(B, L)`` text-encoder states; None = the
            null text.
        cond_latents: ``(B, C, t0, H, W)`` normalised latents of given first frames
            (image-to-video: ``t0 = 1``; continuation: more); returned unchanged as the first
            ``t0`` frames.
        steps_first, steps_later: Euler steps per stage for frame 0 and for later frames
            (default ``[20] * K`` and ``[10] * K``).
        guidance_scale: classifier-free guidance of frame 0 (None = none); conditional and
            null-text rows run in one ``2B`` batch mixed by :func:`cfg_combine`.
        video_guidance_scale: the same for later frames (default: ``guidance_scale``).
        width: full-resolution latent width (default: that of ``cond_latents``, else
            ``config.resolution``); the height is always ``config.resolution``.
        seed: seeds a fresh generator (same seed -> same latents); else ``generator``; neither
            = torch's global RNG.
        dtype: cast the model's parameters to this dtype in place first (e.g. bf16); the
            sampler state stays fp32.
        use_cache: False recomputes text and history at every Euler step (for tests).
        progress: called as ``progress(done, total)`` after each Euler step of the video.

    Returns:
        ``(B, C, frames, H, W)`` float32 latents.
    """
    c = model.config
    device = model.patch_embed.weight.device
    steps_first = check_steps(steps_first or [20] * c.stages, c.stages, "steps_first")
    steps_later = check_steps(steps_later or [10] * c.stages, c.stages, "steps_later")
    if video_guidance_scale is None:
        video_guidance_scale = guidance_scale
    if n < 1:
        raise KinemaError(f"n must be >= 1, got {n}")
    given: list[torch.Tensor] = []
    if cond_latents is not None:
        shape = tuple(cond_latents.shape)
        ok = len(shape) == 5 and shape[:2] == (n, c.latent_channels) and shape[2] >= 1
        if not ok or shape[3] != c.resolution:
            raise KinemaError(
                f"cond_latents must be (B={n}, C={c.latent_channels}, t0, H={c.resolution}, W), "
                f"got {shape}"
            )
        width = width or shape[4]
        if shape[4] != width:
            raise KinemaError(f"cond_latents are {shape[4]} latents wide, width is {width}")
        given = list(cond_latents.float().to(device).unbind(2))
    width = width or c.resolution
    if width % c.min_divisor:
        raise KinemaError(
            f"width must be a multiple of patch_size * 2^(stages-1) = {c.min_divisor}, got {width}"
        )
    frames = c.frames if frames is None else int(frames)
    if not len(given) < frames <= c.frames:
        raise KinemaError(
            f"frames must be in [{len(given) + 1}, {c.frames}] ({len(given)} given, the model "
            f"was trained on {c.frames} latent frames), got {frames}"
        )
    guided = guidance_scale is not None or video_guidance_scale is not None
    if guided and (text is None or not c.text_dim):
        raise KinemaError("guidance needs a text-conditioned model and text (a prompt)")
    if dtype is not None:
        cast_parameters_(model, dtype)
    if seed is not None:
        generator = torch.Generator(device).manual_seed(seed)

    history = given
    total = sum(sum(steps_first if i == 0 else steps_later) for i in range(len(given), frames))
    done = 0

    def on_step() -> None:
        nonlocal done
        done += 1
        progress(done, total)

    was_training = model.training
    try:
        model.eval()
        # bf16 CPU weights: packed once for oneDNN instead of re-laid out per call
        with packed_linears(model, rows_hint=n * (c.resolution // c.patch_size) ** 2):
            for i in range(len(given), frames):
                scale = guidance_scale if i == 0 else video_guidance_scale
                steps = steps_first if i == 0 else steps_later
                velocity = _FrameVelocity(
                    model, n, history, i, text, text_mask, scale, width, use_cache
                )
                shape = (n, c.latent_channels, c.resolution, width)
                x = sample_pyramid(
                    velocity,
                    shape,
                    model.schedule,
                    steps,
                    generator=generator,
                    device=device,
                    on_step=None if progress is None else on_step,
                )
                history = [*history, x]
                logger.debug("latent frame %d of %d done", i + 1, frames)
    finally:
        model.clear_caches()
        model.train(was_training)
    return torch.stack(history, dim=2)


class _FrameVelocity:
    """The velocity of one latent frame for :func:`sample_pyramid`: conditioned on text and
    on the history compressed for the current stage (re-encoded when the stage changes);
    with a guidance ``scale`` every row runs twice, conditional rows first, then the same
    rows with the null text, mixed by :func:`cfg_combine`."""

    def __init__(
        self,
        model: PyramidDiT,
        n: int,
        history: list[torch.Tensor],
        frame_index: int,
        text: torch.Tensor | None,
        text_mask: torch.Tensor | None,
        scale: float | None,
        width: int,
        use_cache: bool,
    ) -> None:
        self.model, self.history, self.frame_index = model, history, frame_index
        self.scale, self.width, self.use_cache = scale, width, use_cache
        device = model.patch_embed.weight.device
        self.batch = n if scale is None else 2 * n
        self.drop = None if scale is None else torch.arange(self.batch, device=device) >= n
        self.text = self._rows(None if text is None else text.to(device))
        self.text_mask = self._rows(None if text_mask is None else text_mask.to(device))
        self.stage: int | None = None
        self.cond: dict = {}

    def _rows(self, x: torch.Tensor | None) -> torch.Tensor | None:
        return x if x is None or self.scale is None else torch.cat([x, x])

    def _condition(self, stage: int) -> dict:
        """Keyword arguments of the model for every Euler step of ``stage``."""
        hist = compress_history(self.history, stage, self.model.config.stages)
        cond = dict(
            history=[(self._rows(h), j) for h, j in hist],
            frame_index=self.frame_index,
            text=self.text,
            text_mask=self.text_mask,
            drop=self.drop,
        )
        if not self.use_cache:
            return cond
        return {"context": self.model.encode_context(self.batch, width=self.width, **cond)}

    def __call__(self, x: torch.Tensor, t: torch.Tensor, stage: int) -> torch.Tensor:
        if stage != self.stage:
            self.stage, self.cond = stage, self._condition(stage)
        v = self.model(self._rows(x), self._rows(t), **self.cond)
        return v if self.scale is None else cfg_combine(v, self.scale)
