"""Tokenizer configuration: one dataclass, named presets.

Geometry: a clip of ``1 + ft * k`` frames at ``H x W`` maps to ``1 + k`` latent frames at
``H / fs x W / fs`` (``ft = temporal_compression``, ``fs = spatial_compression``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from kinema.errors import KinemaError

QUANTIZERS = ("fsq", "lfq", "vq", "kl")
NORMS = ("group", "channel")
SPATIAL_FACTORS = (4, 8, 16)
TEMPORAL_FACTORS = (1, 2, 4)


@dataclass
class TokenizerConfig:
    """Hyper-parameters of :class:`kinema.tokenizer.Tokenizer`.

    The encoder has ``len(channel_mult)`` levels of ``num_res_blocks`` residual blocks at
    ``base_channels * mult`` channels; the first ``log2(spatial_compression)`` levels end
    with a stride-2 downsample, and the last ``log2(temporal_compression)`` of those also
    halve time (as in MAGVIT-v2: shallow layers still see every frame). The decoder mirrors
    it with depth-to-space upsampling.
    """

    # geometry
    spatial_compression: int = 8  # 4 | 8 | 16
    temporal_compression: int = 4  # 1 | 2 | 4
    resolution: int = 64  # training size (informational: any multiple of fs works)
    num_frames: int = 17  # training clip length, 1 + ft * k
    channels: int = 3  # RGB
    # network
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 1
    mid_res_blocks: int = 1
    norm: str = "group"  # 'group' (per-frame GroupNorm) | 'channel' (per-position LayerNorm)
    norm_groups: int = 8
    # quantizer: 'fsq' | 'lfq' | 'vq' | 'kl'
    quantizer: str = "fsq"
    fsq_levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)  # 64,000 codes
    lfq_bits: int = 18
    lfq_factorize: bool = False  # expose tokens as two halves of lfq_bits / 2 bits
    lfq_entropy_weight: float = 0.1
    lfq_diversity: float = 1.0  # weight of batch-code entropy inside the entropy loss
    lfq_temperature: float = 0.01
    lfq_entropy_group_bits: int = 9  # batch entropy over groups of <= this many bits
    commit_weight: float = 0.25  # LFQ and VQ commitment loss
    vq_codebook_size: int = 1024
    vq_dim: int = 8
    vq_ema: bool = True  # EMA codebook updates; False = learned codebook (straight-through)
    vq_decay: float = 0.99
    kl_channels: int = 16
    kl_weight: float = 1e-6  # on the KL per latent element
    # reconstruction loss
    l1_weight: float = 1.0
    l2_weight: float = 0.0
    # mean over clips of log(MSE_clip + 1e-5): each clip counts by its *relative* error, so
    # clips that are already good (white physics frames) are not drowned out by hard ones
    # (a plain MSE gradient is dominated by the clips with the largest errors)
    log_mse_weight: float = 0.0
    # adversarial loss (optional)
    gan: bool = False
    disc_channels: int = 64
    disc_layers: int = 3
    gan_weight: float = 0.1
    gan_start_step: int = 0  # counted in training loss() calls
    adaptive_gan_weight: bool = True

    def __post_init__(self) -> None:
        self.channel_mult = tuple(self.channel_mult)
        self.fsq_levels = tuple(self.fsq_levels)
        if self.spatial_compression not in SPATIAL_FACTORS:
            raise KinemaError(
                f"spatial_compression {self.spatial_compression} not supported; "
                f"valid: {SPATIAL_FACTORS}"
            )
        if self.temporal_compression not in TEMPORAL_FACTORS:
            raise KinemaError(
                f"temporal_compression {self.temporal_compression} not supported; "
                f"valid: {TEMPORAL_FACTORS}"
            )
        if len(self.channel_mult) <= self.spatial_downsamples:
            raise KinemaError(
                f"channel_mult {self.channel_mult} has {len(self.channel_mult)} levels; "
                f"spatial_compression {self.spatial_compression} needs at least "
                f"{self.spatial_downsamples + 1}"
            )
        if self.num_res_blocks < 1 or self.mid_res_blocks < 0:
            raise KinemaError(
                f"num_res_blocks must be >= 1 and mid_res_blocks >= 0, got "
                f"{self.num_res_blocks} and {self.mid_res_blocks}"
            )
        if self.norm not in NORMS:
            raise KinemaError(f"unknown norm {self.norm!r}; valid: {NORMS}")
        if self.quantizer not in QUANTIZERS:
            raise KinemaError(f"unknown quantizer {self.quantizer!r}; valid: {QUANTIZERS}")
        for c in self.stage_channels:
            if c % self.norm_groups:
                raise KinemaError(
                    f"norm_groups {self.norm_groups} must divide every stage width "
                    f"{self.stage_channels}"
                )
        if self.quantizer == "lfq" and not 1 <= self.lfq_bits <= 18:
            raise KinemaError(f"lfq_bits must be in 1..18, got {self.lfq_bits}")
        if self.quantizer == "lfq" and self.lfq_factorize and self.lfq_bits % 2:
            raise KinemaError(f"lfq_factorize needs an even lfq_bits, got {self.lfq_bits}")
        if (self.num_frames - 1) % self.temporal_compression:
            raise KinemaError(
                f"num_frames {self.num_frames} is not 1 + {self.temporal_compression} * k"
            )

    @property
    def spatial_downsamples(self) -> int:
        return int(math.log2(self.spatial_compression))

    @property
    def temporal_downsamples(self) -> int:
        return int(math.log2(self.temporal_compression))

    @property
    def stage_channels(self) -> list[int]:
        return [self.base_channels * m for m in self.channel_mult]

    @property
    def latent_channels(self) -> int:
        """Channels entering / leaving the quantizer (``C`` of ``(B, C, t, h, w)``)."""
        return {
            "fsq": len(self.fsq_levels),
            "lfq": self.lfq_bits,
            "vq": self.vq_dim,
            "kl": self.kl_channels,
        }[self.quantizer]

    @property
    def is_discrete(self) -> bool:
        return self.quantizer != "kl"

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """``(t, h, w)`` of the latents of a ``frames x height x width`` clip."""
        ft, fs = self.temporal_compression, self.spatial_compression
        return 1 + (frames - 1) // ft, height // fs, width // fs

    def replace(self, **changes) -> TokenizerConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, dict] = {
    # CPU: 17 x 64 x 64 -> 5 x 8 x 8 tokens, FSQ 64,000 codes, 4.9M parameters
    "tiny": dict(
        resolution=64,
        base_channels=32,
        channel_mult=(1, 2, 2, 4),
        num_res_blocks=1,
        mid_res_blocks=1,
        norm_groups=8,
    ),
    # CPU, VideoPoet-style bits: LFQ 10 bits (1024 codes) as two 5-bit halves
    "tiny-lfq": dict(
        resolution=64,
        base_channels=32,
        channel_mult=(1, 2, 2, 4),
        quantizer="lfq",
        lfq_bits=10,
        lfq_factorize=True,
    ),
    "tiny-vq": dict(
        resolution=64,
        base_channels=32,
        channel_mult=(1, 2, 2, 4),
        quantizer="vq",
        vq_codebook_size=1024,
        vq_dim=8,
    ),
    # CPU latent for flow models: 8 continuous channels at 8x space, 4x time
    "tiny-kl": dict(
        resolution=64,
        base_channels=32,
        channel_mult=(1, 2, 2, 4),
        quantizer="kl",
        kl_channels=8,
    ),
    # the shipped CPU tokenizers: 17 x 64 x 64 -> 5 x 16 x 16, 4.3M parameters.
    # FSQ with 4,375 codes (12 bits): a small vocabulary keeps CPU token LMs cheap.
    # L1 + L2: with L1 alone, frames that are mostly flat background (physics, shapes)
    # sit for hundreds of steps at the per-pixel median (background only, ~16 dB); the
    # L2 gradient grows with the error on the small objects and escapes in ~200 steps
    "cpu-fsq": dict(
        resolution=64,
        spatial_compression=4,
        base_channels=32,
        channel_mult=(1, 2, 4),
        fsq_levels=(7, 5, 5, 5, 5),
        l2_weight=1.0,
    ),
    # the same geometry with an 8-channel continuous latent, for the flow models
    "cpu-kl": dict(
        resolution=64,
        spatial_compression=4,
        base_channels=32,
        channel_mult=(1, 2, 4),
        quantizer="kl",
        kl_channels=8,
        l2_weight=1.0,
    ),
    # MAGVIT-v2 geometry: 17 x 128 x 128 -> 5 x 16 x 16, LFQ 18 bits (262,144 codes)
    "magvit2-paper": dict(
        resolution=128,
        base_channels=128,
        channel_mult=(1, 2, 2, 4),
        num_res_blocks=4,
        mid_res_blocks=2,
        norm_groups=32,
        quantizer="lfq",
        lfq_bits=18,
        gan=True,
        disc_channels=128,
        disc_layers=3,
    ),
}


def preset(name: str, **overrides) -> TokenizerConfig:
    """A named configuration (:data:`PRESETS`), optionally with fields replaced."""
    if name not in PRESETS:
        raise KinemaError(f"unknown tokenizer preset {name!r}; valid: {sorted(PRESETS)}")
    return TokenizerConfig(**{**PRESETS[name], **overrides})
