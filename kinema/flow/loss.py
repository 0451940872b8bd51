"""The pyramidal-flow training objective, a mixin of :class:`~kinema.flow.dit.PyramidDiT`.

One forward per batch trains one latent frame ``i`` at one stage ``k`` of every clip. Both
are drawn once per batch, so all samples share one sequence layout (nothing is padded);
the rest is drawn per sample:

- the current frame: ``x_t, target, t = schedule.training_target(frame_i, noise, k, r)``
  with ``r ~ U[0, 1]`` per sample;
- the history: frames ``< i`` compressed for stage ``k`` (:func:`compress_history`) and
  corrupted with one shared ``sigma ~ U[0, history_noise_max]``,
  ``h = sigma * randn + (1 - sigma) * h``; the model is told ``sigma``;
- the text: replaced by the null text with probability ``text_dropout`` (training only).

The loss is the MSE between the predicted and the target velocity.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from kinema.errors import KinemaError
from kinema.flow.config import FlowConfig
from kinema.flow.pyramid import PyramidSchedule, compress_history


class FlowInputs(NamedTuple):
    """The drawn inputs and target of one training forward (shapes for stage ``k``, whose
    latents are ``f = 2^(K-1-k)`` times smaller per side)."""

    x_t: torch.Tensor  # (B, C, H/f, W/f) noisy current frame
    target: torch.Tensor  # (B, C, H/f, W/f) velocity start - end
    timestep: torch.Tensor  # (B,) global timestep
    stage: int
    frame: int  # latent index i of the current frame
    history: list[tuple[torch.Tensor, int]]  # corrupted frames < i, oldest first
    history_sigma: float
    text: torch.Tensor | None  # (B, L, text_dim)
    text_mask: torch.Tensor | None  # (B, L) bool
    drop: torch.Tensor | None  # (B,) bool, True = the null text


class FlowLoss:
    """``loss(batch)`` and ``num_tokens(batch)`` for :class:`kinema.train.Trainer`.

    ``batch``: ``latents (B, C, T, H, W)`` normalised KL latents, optional ``text (B, L,
    text_dim)`` and ``text_mask (B, L)`` (see :class:`kinema.flow.data.LatentClipDataset`).
    """

    config: FlowConfig
    schedule: PyramidSchedule
    training: bool

    def flow_inputs(
        self,
        batch: dict[str, Any],
        *,
        stage: int | None = None,
        frame: int | None = None,
        generator: torch.Generator | None = None,
    ) -> FlowInputs:
        """Draw the random choices of one batch and build the model inputs.

        ``stage`` / ``frame``: fix the stage or the current frame instead of drawing them.
        Draws from ``generator`` (torch's global RNG when None) in this order: stage,
        frame, ``r (B,)``, the current frame's noise ``(B, C, H, W)``, the history sigma,
        one noise tensor per history frame (oldest first), the text dropout ``(B,)``.
        """
        c, sched = self.config, self.schedule
        latents = batch["latents"]
        if latents.ndim != 5 or latents.shape[1] != c.latent_channels:
            raise KinemaError(
                f"latents must be (B, C={c.latent_channels}, T, H, W), got {tuple(latents.shape)}"
            )
        b, _, t = latents.shape[:3]
        device = latents.device
        draw_on = generator.device if generator is not None else device

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator, device=draw_on).to(device)

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(shape, generator=generator, device=draw_on).to(device)

        if stage is None:
            stage = sched.sample_stage(generator)
        if frame is None:
            frame = int(torch.randint(t, (), generator=generator, device=draw_on))
        if not 0 <= frame < t:
            raise KinemaError(f"frame must be in [0, {t - 1}] for {t} latent frames, got {frame}")
        current = latents[:, :, frame]  # (B, C, H, W)
        r = rand(b)
        x_t, target, timestep = sched.training_target(current, randn(*current.shape), stage, r)
        sigma = float(rand()) * c.history_noise_max
        history = [
            (sigma * randn(*h.shape) + (1.0 - sigma) * h, j)
            for h, j in compress_history(latents[:, :, :frame].unbind(2), stage, c.stages)
        ]
        text, text_mask, drop = batch.get("text"), batch.get("text_mask"), None
        if text is not None and self.training and c.text_dropout > 0:
            drop = rand(b) < c.text_dropout
        return FlowInputs(
            x_t, target, timestep, stage, frame, history, sigma, text, text_mask, drop
        )

    def loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor | None]:
        """MSE of the predicted velocity (see the module docstring).

        Returns ``{"loss", "loss_s0", ..., "loss_s{K-1}"}``: the stage losses are None
        except for the stage this batch trained (the trainer averages each over the
        batches that report it).
        """
        inp = self.flow_inputs(batch)
        v = self(  # type: ignore[operator]
            inp.x_t,
            inp.timestep,
            history=inp.history,
            frame_index=inp.frame,
            history_sigma=inp.history_sigma,
            text=inp.text,
            text_mask=inp.text_mask,
            drop=inp.drop,
        )
        loss = F.mse_loss(v.float(), inp.target.float())
        stages: dict[str, torch.Tensor | None] = {
            f"loss_s{k}": None for k in range(self.config.stages)
        }
        stages[f"loss_s{inp.stage}"] = loss.detach()
        return {"loss": loss, **stages}

    def num_tokens(self, batch: dict[str, Any]) -> int:
        """Full-resolution latent patches of the clips in ``batch`` (the trainer's tokens/s)."""
        b, _, t, h, w = batch["latents"].shape
        return b * t * (h // self.config.patch_size) * (w // self.config.patch_size)
