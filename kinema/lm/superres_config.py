"""Configuration of VideoPoet's super-resolution transformer
(:class:`~kinema.lm.superres.SuperResTransformer`): the geometry of the low-res and high-res
token grids, the attention windows, the transformer core and text, with named presets.

>>> config = preset("tiny")                          # (2, 4, 4) -> (2, 8, 8) tokens
>>> config.hr_shape, config.seq_len
((2, 8, 8), 128)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from kinema.errors import KinemaError
from kinema.nn.transformer import CoreFields, TransformerConfig, core_config

Shape3 = tuple[int, int, int]

ATTENTION_MODES = ("lines", "dense")


@dataclass
class SuperResConfig(CoreFields):
    """Geometry and size of a :class:`~kinema.lm.superres.SuperResTransformer`.

    Attributes:
        lr_shape: ``(t, h, w)`` token grid of the low-res tokenizer.
        scale: spatial factor ``s``; the high-res grid is ``(t, s*h, s*w)``.
        lr_vocab_size, hr_vocab_size: vocabularies of the two tokenizers (may differ).
        factorize: embed and predict tokens as two ``sqrt(V)``-way halves (VideoPoet's
            LFQ); False = one ``V``-way softmax (FSQ, whose halves are not independent).
        windows: attention windows ``(temporal, vertical, horizontal)`` in high-res cells
            (a window >= its axis covers the whole axis).
        dim .. init_std: the transformer core (:class:`~kinema.nn.TransformerConfig`);
            ``n_layers`` is a multiple of 3 (vertical, horizontal, temporal).
        text_dim: width of the text-encoder states (0 = no text).
        max_text_len: text slots.
        cond_drop_prob: training probability of the null text (classifier-free guidance).
        attention: ``"lines"`` (line-batched windowed attention, ``O(N * (window + S))``)
            or ``"dense"`` (one ``(S+N, S+N)`` mask per layer, ``O(N^2)``): the same
            function (see :mod:`kinema.lm.superres`); a runtime choice, not a weight.
    """

    lr_shape: Shape3 = (5, 16, 16)
    scale: int = 2
    lr_vocab_size: int = 4375
    hr_vocab_size: int = 4375
    factorize: bool = True
    windows: Shape3 = (5, 8, 8)
    # transformer core (the other core fields: CoreFields defaults)
    dim: int = 256
    n_layers: int = 6
    n_heads: int = 4
    # text
    text_dim: int = 0
    max_text_len: int = 32
    cond_drop_prob: float = 0.1
    attention: str = "lines"

    def __post_init__(self) -> None:
        self.lr_shape = tuple(int(x) for x in self.lr_shape)
        self.windows = tuple(int(x) for x in self.windows)
        if self.rope_axes_dim is not None:
            self.rope_axes_dim = tuple(int(x) for x in self.rope_axes_dim)
        if len(self.lr_shape) != 3 or min(self.lr_shape) < 1:
            raise KinemaError(f"lr_shape must be 3 positive sizes (t, h, w), got {self.lr_shape}")
        if self.scale < 1:
            raise KinemaError(f"scale must be >= 1, got {self.scale}")
        if len(self.windows) != 3 or min(self.windows) < 1:
            raise KinemaError(f"windows must be 3 sizes >= 1 (t, h, w), got {self.windows}")
        for name in ("lr_vocab_size", "hr_vocab_size"):
            if getattr(self, name) < 2:
                raise KinemaError(f"{name} must be >= 2, got {getattr(self, name)}")
        if self.n_layers < 3 or self.n_layers % 3:
            raise KinemaError(
                f"n_layers must be a positive multiple of 3 (vertical, horizontal, temporal "
                f"attention), got {self.n_layers}"
            )
        if self.text_dim < 0 or (self.text_dim and self.max_text_len < 1):
            raise KinemaError(
                f"text_dim must be >= 0 and max_text_len >= 1 with text, got "
                f"{self.text_dim}, {self.max_text_len}"
            )
        if not 0.0 <= self.cond_drop_prob <= 1.0:
            raise KinemaError(f"cond_drop_prob must be in [0, 1], got {self.cond_drop_prob}")
        if self.attention not in ATTENTION_MODES:
            raise KinemaError(f"attention must be one of {ATTENTION_MODES}, got {self.attention!r}")
        self.transformer_config()  # validates dims, heads and the 3D rotary split

    @property
    def hr_shape(self) -> Shape3:
        t, h, w = self.lr_shape
        return t, self.scale * h, self.scale * w

    @property
    def num_hr_tokens(self) -> int:
        return math.prod(self.hr_shape)

    @property
    def text_len(self) -> int:
        """Leading text slots of the sequence (0 without text)."""
        return self.max_text_len if self.text_dim else 0

    @property
    def seq_len(self) -> int:
        return self.text_len + self.num_hr_tokens

    def transformer_config(self) -> TransformerConfig:
        return core_config(self, rope="3d", max_seq_len=self.seq_len)

    def replace(self, **changes) -> SuperResConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, dict] = {
    # unit tests: (2, 4, 4) -> (2, 8, 8) tokens, 64 codes (8 x 8 factors)
    "tiny": dict(
        lr_shape=(2, 4, 4),
        lr_vocab_size=64,
        hr_vocab_size=64,
        windows=(2, 4, 4),
        dim=32,
        n_layers=3,
        n_heads=2,
        mlp_hidden=64,
        max_text_len=8,
    ),
    # CPU: the cpu-fsq tokenizer (4,375 codes, 4x space) at 64x64 -> 128x128, 17 frames:
    # (5, 16, 16) -> (5, 32, 32) tokens; one 4,375-way softmax (an FSQ code's sqrt(V)
    # halves sampled apart make unrelated codes: the factorized model scored 13.99 dB)
    "small": dict(
        lr_shape=(5, 16, 16),
        lr_vocab_size=4375,
        hr_vocab_size=4375,
        factorize=False,
        windows=(5, 8, 8),
        dim=256,
        n_layers=6,
        n_heads=4,
    ),
    # VideoPoet's first SR stage: 224x128 -> 448x256, 17 frames through an 8x / 4x LFQ
    # tokenizer (18 bits, 2 x 512-way), T5-XL text states. The paper does not state widths
    # or windows; these are our choice at a comparable scale.
    "videopoet": dict(
        lr_shape=(5, 16, 28),
        lr_vocab_size=2**18,
        hr_vocab_size=2**18,
        windows=(5, 16, 16),
        dim=1024,
        n_layers=24,
        n_heads=16,
        text_dim=2048,
        max_text_len=64,
    ),
}


def preset(name: str, **overrides) -> SuperResConfig:
    """A named configuration (:data:`PRESETS`), optionally with fields replaced."""
    if name not in PRESETS:
        raise KinemaError(f"unknown super-resolution preset {name!r}; valid: {sorted(PRESETS)}")
    return SuperResConfig(**{**PRESETS[name], **overrides})
