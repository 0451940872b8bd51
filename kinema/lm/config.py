"""Token LM configuration: one dataclass, named presets.

One config covers next-token prediction (``block_shape=(1, 1, 1)``, VideoPoet) and
next-block prediction (e.g. ``(1, 1, 16)``, NBP): only the block shape differs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kinema.errors import KinemaError
from kinema.lm.blocks import check_tiling
from kinema.lm.vocab import Vocabulary
from kinema.nn.transformer import CoreFields, TransformerConfig, core_config


@dataclass
class TokenLMConfig(CoreFields):
    """Hyper-parameters of :class:`kinema.lm.TokenLM`.

    Sequence: ``[prefix | start block | video blocks 0..n-2]`` predicting blocks ``0..n-1``,
    with ``prefix = [class (1) | text (max_text_len) | conditioning frames
    (cond_frames*h*w)]`` (each part present only when enabled).

    Attributes:
        vocab_size: video token vocabulary ``V`` (tokenizer codebook size).
        latent_shape: ``(t, h, w)`` latent grid of the generated video.
        block_shape: ``(bt, bh, bw)`` block; must tile ``latent_shape``. ``(1, 1, 1)`` = NTP.
        dim, n_layers, n_heads, n_kv_heads, head_dim, mlp_hidden, multiple_of, norm_eps,
        rope_theta, rope_axes_dim, qk_norm, init_std: the transformer core, see
            :class:`~kinema.nn.TransformerConfig` (rotary is always 3D here).
        num_classes: class-conditional when > 0 (one extra learned null class for CFG).
        text_dim: width of precomputed text-encoder embeddings; 0 = no text.
        max_text_len: text slots in the prefix (longer text is an error, shorter is padded).
        cond_frames: latent frames of given conditioning tokens in the prefix (the frames
            just before the generated ones, e.g. 2 for K600's 5 given frames); 0 = none.
        cond_drop_prob: per-sample probability in training of replacing the whole condition
            by the learned null condition (classifier-free guidance).
        loss_chunk: rows of the fused head + cross-entropy computed at once.
        vocabulary: multitask model (:mod:`kinema.lm.tasks`): the unified id space of
            specials, visual and audio tokens; ``vocab_size`` is then its size and
            ``latent_shape`` the grid of one whole clip. ``None``: video tokens only.
        audio_frames: audio code frames of one clip (length of a video-to-audio target or an
            audio-to-video prefix); 0 = no audio tasks.
    """

    vocab_size: int = 4375
    latent_shape: tuple[int, int, int] = (5, 16, 16)
    block_shape: tuple[int, int, int] = (1, 1, 16)
    # transformer core (the other core fields: CoreFields defaults)
    dim: int = 384
    n_layers: int = 6
    n_heads: int = 6
    # prefix
    num_classes: int = 0
    text_dim: int = 0
    max_text_len: int = 32
    cond_frames: int = 0
    cond_drop_prob: float = 0.1
    # training
    loss_chunk: int = 512
    # multitask (VideoPoet)
    vocabulary: Vocabulary | None = None
    audio_frames: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.vocabulary, dict):  # from config.json
            self.vocabulary = Vocabulary(**self.vocabulary)
        if self.vocabulary is not None:
            self.vocab_size = self.vocabulary.size
            if self.cond_frames:
                raise KinemaError(
                    "a multitask model (vocabulary set) takes conditioning frames through its "
                    f"tasks' prefix tokens; set cond_frames=0, got {self.cond_frames}"
                )
        if self.audio_frames < 0:
            raise KinemaError(f"audio_frames must be >= 0, got {self.audio_frames}")
        self.latent_shape = tuple(int(x) for x in self.latent_shape)
        self.block_shape = tuple(int(x) for x in self.block_shape)
        if self.rope_axes_dim is not None:
            self.rope_axes_dim = tuple(int(x) for x in self.rope_axes_dim)
        check_tiling(self.latent_shape, self.block_shape)
        if self.vocab_size < 2:
            raise KinemaError(f"vocab_size must be >= 2, got {self.vocab_size}")
        if min(self.num_classes, self.text_dim, self.cond_frames) < 0:
            raise KinemaError("num_classes, text_dim and cond_frames must be >= 0")
        if self.text_dim and self.max_text_len < 1:
            raise KinemaError(f"max_text_len must be >= 1 with text, got {self.max_text_len}")
        if not 0.0 <= self.cond_drop_prob <= 1.0:
            raise KinemaError(f"cond_drop_prob must be in [0, 1], got {self.cond_drop_prob}")
        if self.loss_chunk < 1:
            raise KinemaError(f"loss_chunk must be >= 1, got {self.loss_chunk}")
        self.transformer_config()  # validates dims, heads and the 3D rotary split

    # ------------------------------------------------------------------ derived sizes
    @property
    def block_len(self) -> int:
        """``L``: tokens per block."""
        bt, bh, bw = self.block_shape
        return bt * bh * bw

    @property
    def num_blocks(self) -> int:
        """``n``: blocks per video = decoding steps."""
        t, h, w = self.latent_shape
        return t * h * w // self.block_len

    @property
    def num_video_tokens(self) -> int:
        t, h, w = self.latent_shape
        return t * h * w

    @property
    def num_1d_prefix(self) -> int:
        """Prefix slots without a grid position: class token and text slots."""
        return int(self.num_classes > 0) + (self.max_text_len if self.text_dim else 0)

    @property
    def num_cond_tokens(self) -> int:
        _, h, w = self.latent_shape
        return self.cond_frames * h * w

    @property
    def prefix_len(self) -> int:
        """``P``: all prefix slots."""
        return self.num_1d_prefix + self.num_cond_tokens

    @property
    def has_condition(self) -> bool:
        return self.prefix_len > 0

    @property
    def seq_len(self) -> int:
        """``N = P + n * L``: prefix, start block and blocks ``0..n-2``."""
        return self.prefix_len + self.num_blocks * self.block_len

    def transformer_config(self) -> TransformerConfig:
        """The :class:`~kinema.nn.TransformerConfig` of the core (3D rotary, no adaLN)."""
        return core_config(self, rope="3d", max_seq_len=self.seq_len)

    def replace(self, **changes) -> TokenLMConfig:
        return dataclasses.replace(self, **changes)


# Paper geometry (NBP, K600 frame prediction): 17 frames at 128x128 through an 8x/4x FSQ
# tokenizer (64,000 codes); 5 given frames = 2 latent frames (512 prefix tokens), 12
# generated frames = 3 latent frames (768 tokens, 48 steps of 1x1x16). For UCF-101
# class-conditional use latent_shape=(5, 16, 16), cond_frames=0, num_classes=101.
_PAPER = dict(
    vocab_size=64_000,
    latent_shape=(3, 16, 16),
    block_shape=(1, 1, 16),
    cond_frames=2,
)

PRESETS: dict[str, dict] = {
    # unit tests: 2 x 4 x 4 latents, 64 codes, ~40K parameters
    "tiny": dict(
        vocab_size=64,
        latent_shape=(2, 4, 4),
        block_shape=(1, 1, 4),
        dim=32,
        n_layers=2,
        n_heads=2,
        mlp_hidden=64,
        max_text_len=8,
        loss_chunk=16,
    ),
    # CPU training on the shipped cpu-fsq tokenizer (17 x 64 x 64 -> 5 x 16 x 16, 4,375
    # codes), physics frame prediction: 5 given frames = 2 latent frames (512 tokens),
    # 12 predicted frames = 3 latent frames (768 tokens) in 48 steps of 1x1x16. Sized for
    # about an hour of one CPU thread (~4 s per batch of 8 with bf16): 6.8M parameters.
    "small": dict(
        vocab_size=4375,
        latent_shape=(3, 16, 16),
        block_shape=(1, 1, 16),
        cond_frames=2,
        dim=256,
        n_layers=4,
        n_heads=4,
    ),
    "nbp-700m": dict(**_PAPER, dim=1536, n_layers=24, n_heads=16),
    "nbp-1.2b": dict(**_PAPER, dim=2048, n_layers=24, n_heads=32),
    "nbp-3b": dict(**_PAPER, dim=3072, n_layers=32, n_heads=32),
}


def preset(name: str, **overrides) -> TokenLMConfig:
    """A named configuration (:data:`PRESETS`), optionally with fields replaced."""
    if name not in PRESETS:
        raise KinemaError(f"unknown token LM preset {name!r}; valid: {sorted(PRESETS)}")
    return TokenLMConfig(**{**PRESETS[name], **overrides})
