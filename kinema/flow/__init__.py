"""Pyramidal flow matching: the DiT, pyramids, stage schedule, block noise, token budget.

>>> from kinema.flow import PyramidSchedule
>>> schedule = PyramidSchedule(stages=3)
>>> k = schedule.sample_stage()
>>> x_t, target, t = schedule.training_target(latents, torch.randn_like(latents), k, r)
>>> from kinema.sample.flow import sample_pyramid
>>> latent = sample_pyramid(velocity, (B, C, H, W), schedule, [20, 20, 20])
>>> model = PyramidDiT(preset("tiny"))
>>> loss = model.loss({"latents": latents})["loss"]   # latents (B, C, T, H, W)
>>> from kinema.sample.flow import generate_latents
>>> video_latents = generate_latents(model, 2, seed=0)  # (B, C, T, H, W)
"""

from kinema.flow.config import PRESETS, FlowConfig, preset
from kinema.flow.dit import FlowContext, PyramidDiT
from kinema.flow.noise import block_noise, block_noise_factor
from kinema.flow.pyramid import (
    PyramidSchedule,
    check_pyramid_size,
    compress_history,
    downsample2x,
    history_stages,
    latent_pyramid,
    noise_pyramid,
    upsample2x,
)
from kinema.flow.tokens import token_count

__all__ = [
    "PRESETS",
    "FlowConfig",
    "FlowContext",
    "PyramidDiT",
    "compress_history",
    "preset",
    "PyramidSchedule",
    "block_noise",
    "block_noise_factor",
    "check_pyramid_size",
    "downsample2x",
    "history_stages",
    "latent_pyramid",
    "noise_pyramid",
    "token_count",
    "upsample2x",
]
