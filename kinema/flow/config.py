"""Pyramid-flow DiT configuration: one dataclass, named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kinema.errors import KinemaError
from kinema.flow.pyramid import PyramidSchedule
from kinema.nn.transformer import CoreFields, TransformerConfig, core_config


@dataclass
class FlowConfig(CoreFields):
    """Hyper-parameters of :class:`kinema.flow.dit.PyramidDiT`.

    Attributes:
        latent_channels: ``C`` of the tokenizer latents (8 for the shipped ``cpu-kl``).
        patch_size: ``p``; a ``p x p`` latent patch is one token.
        stages: ``K`` spatial pyramid stages; stage ``k`` runs at ``2^(K-1-k)`` times less
            resolution per side than full (``K = 1`` is plain rectified flow).
        frames: latent frames per training clip (``cpu-kl``: 17 video frames -> 5).
        resolution: full-resolution latent height ``H`` (and width for square video; any
            width divisible by ``patch_size * 2^(K-1)`` works). Lower-resolution frames are
            placed on this grid (interpolated rotary positions).
        dim, n_layers, n_heads, n_kv_heads, head_dim, mlp_hidden, multiple_of, norm_eps,
        rope_theta, rope_axes_dim, qk_norm, init_std: the transformer core, see
            :class:`~kinema.nn.TransformerConfig` (3D rotary and adaLN with ``D_c = dim``).
        timestep_dim: width of the sinusoidal timestep features fed to the timestep MLP.
        text_dim: width of precomputed text-encoder states (384: all-MiniLM-L6-v2);
            0 = no text. With text the model has a learned null text (classifier-free
            guidance).
        max_text_len: text slots in front of the video tokens (shorter text is padded).
        text_dropout: per-sample probability in training of the null text (CFG).
        history_noise_max: history frames are corrupted in training with one shared
            ``sigma ~ U[0, history_noise_max]``.
    """

    latent_channels: int = 8
    patch_size: int = 2
    stages: int = 3
    frames: int = 5
    resolution: int = 16
    # transformer core (the other core fields: CoreFields defaults)
    dim: int = 384
    n_layers: int = 6
    n_heads: int = 6
    norm_eps: float = 1e-6
    qk_norm: bool = True
    timestep_dim: int = 256
    # conditioning
    text_dim: int = 384
    max_text_len: int = 32
    text_dropout: float = 0.1
    history_noise_max: float = 1.0 / 3.0

    def __post_init__(self) -> None:
        if self.rope_axes_dim is not None:
            self.rope_axes_dim = tuple(int(x) for x in self.rope_axes_dim)
        for name in ("latent_channels", "patch_size", "stages", "frames", "resolution"):
            if getattr(self, name) < 1:
                raise KinemaError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.resolution % self.min_divisor:
            raise KinemaError(
                f"resolution {self.resolution} must be divisible by patch_size * 2^(stages-1)"
                f" = {self.min_divisor} (patch {self.patch_size}, {self.stages} stages)"
            )
        if self.text_dim < 0:
            raise KinemaError(f"text_dim must be >= 0 (0 = no text), got {self.text_dim}")
        if self.text_dim and self.max_text_len < 1:
            raise KinemaError(f"max_text_len must be >= 1 with text, got {self.max_text_len}")
        if self.timestep_dim < 2 or self.timestep_dim % 2:
            raise KinemaError(f"timestep_dim must be even and >= 2, got {self.timestep_dim}")
        if not 0.0 <= self.text_dropout <= 1.0:
            raise KinemaError(f"text_dropout must be in [0, 1], got {self.text_dropout}")
        if not 0.0 <= self.history_noise_max <= 1.0:
            raise KinemaError(f"history_noise_max must be in [0, 1], got {self.history_noise_max}")
        self.transformer_config()  # validates dims, heads and the 3D rotary split

    # ------------------------------------------------------------------ derived sizes
    @property
    def min_divisor(self) -> int:
        """Full-res latent sides must be multiples of this: one patch at the lowest stage."""
        return self.patch_size * 2 ** (self.stages - 1)

    @property
    def num_text_tokens(self) -> int:
        """Text slots in front of the video tokens (0 without text)."""
        return self.max_text_len if self.text_dim else 0

    def stage_size(self, stage: int) -> int:
        """Latent side (height) of stage ``stage``: ``resolution / 2^(K-1-stage)``."""
        if not 0 <= stage < self.stages:
            raise KinemaError(f"stage must be in [0, {self.stages - 1}], got {stage}")
        return self.resolution >> (self.stages - 1 - stage)

    def schedule(self) -> PyramidSchedule:
        """The stage sigmas and the timestep map shared by training and sampling (derived
        from ``stages``, so a model folder cannot disagree with itself)."""
        return PyramidSchedule(stages=self.stages)

    def transformer_config(self) -> TransformerConfig:
        """The core: 3D rotary, adaLN conditioned on a ``dim``-wide timestep vector."""
        return core_config(self, rope="3d", adaln_cond_dim=self.dim)

    def replace(self, **changes) -> FlowConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, dict] = {
    # unit tests: 4-channel 16x16 latents (stages at 4, 8, 16), ~0.3M parameters
    "tiny": dict(
        latent_channels=4,
        frames=3,
        dim=64,
        n_layers=2,
        n_heads=4,
        mlp_hidden=128,
        timestep_dim=64,
        text_dim=16,
        max_text_len=8,
    ),
    # CPU training on the shipped cpu-kl tokenizer: 17x64x64 video -> 5 x 16x16 latents
    # with 8 channels; patch 2 gives 8x8 = 64 tokens per full-res frame. ~16M parameters.
    "small": dict(dim=384, n_layers=6, n_heads=6),
    # Parameter count of the official SD3-medium-based Pyramid Flow (768p: 8x8x8 VAE with
    # 16 channels, 96x160 latents, 31 latent frames for 241 frames, T5-XXL text states).
    # Approximate: the official MM-DiT keeps separate text-stream weights (~2B parameters);
    # here text and video share every block (~1B).
    "pyramid-flow-paper": dict(
        latent_channels=16,
        patch_size=2,
        frames=31,
        resolution=96,
        dim=1536,
        n_layers=24,
        n_heads=24,
        text_dim=4096,
        max_text_len=128,
    ),
}


def preset(name: str, **overrides) -> FlowConfig:
    """A named configuration (:data:`PRESETS`), optionally with fields replaced."""
    if name not in PRESETS:
        raise KinemaError(f"unknown flow preset {name!r}; valid: {sorted(PRESETS)}")
    return FlowConfig(**{**PRESETS[name], **overrides})
