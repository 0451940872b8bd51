"""The transformer core shared by the token LM (NTP/NBP) and the pyramidal-flow DiT.

It maps embeddings to hidden states; token embeddings, patch embeddings and output heads
belong to the models built on top of it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from kinema.errors import KinemaError
from kinema.modeling import ModelMixin
from kinema.nn.block import Block, modulation
from kinema.nn.kv_cache import KVCache
from kinema.nn.mlp import llama_hidden_dim
from kinema.nn.norm import RMSNorm
from kinema.nn.rotary import RotaryEmbedding, default_axes_dim

logger = logging.getLogger(__name__)


@dataclass
class CoreFields:
    """The transformer-core fields every model config carries (meaning as in
    :class:`TransformerConfig`, which adds the fields a model sets itself); a model config
    subclasses this, redeclaring only the defaults it changes, and :func:`core_config` turns
    it into the core's config."""

    dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None
    head_dim: int | None = None
    mlp_hidden: int | None = None
    multiple_of: int = 256
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_axes_dim: tuple[int, int, int] | None = None
    qk_norm: bool = False
    init_std: float = 0.02


@dataclass
class TransformerConfig(CoreFields):
    """Size and options of a :class:`Transformer`.

    Attributes:
        dim: model width ``D``.
        n_layers: number of blocks.
        n_heads: query heads.
        n_kv_heads: key/value heads (GQA); ``None`` = ``n_heads``.
        head_dim: channels per head; ``None`` = ``dim // n_heads``.
        mlp_hidden: SwiGLU inner width; ``None`` = LLaMA rule ``2/3*4*dim`` rounded up to
            ``multiple_of``.
        multiple_of: rounding of the default ``mlp_hidden``.
        norm_eps: RMSNorm eps.
        rope: ``"1d"`` (positions ``(B, N)``) or ``"3d"`` (positions ``(B, N, 3)`` = t, h, w).
        rope_theta: rotary frequency base.
        rope_axes_dim: 3D split ``(dt, dh, dw)`` of ``head_dim`` (each even); ``None`` =
            :func:`~kinema.nn.rotary.default_axes_dim`. Ignored for ``"1d"``.
        adaln_cond_dim: width ``D_c`` of the DiT conditioning vector; ``None`` = no adaLN.
        qk_norm: RMS-normalise queries and keys per head.
        max_seq_len: default KV-cache length of :meth:`Transformer.setup_caches`.
        init_std: std of the normal init of linear weights (residual projections are scaled
            by ``1/sqrt(2*n_layers)``).
    """

    rope: str = "1d"
    adaln_cond_dim: int | None = None
    max_seq_len: int = 2048

    def __post_init__(self) -> None:
        if self.rope not in ("1d", "3d"):
            raise KinemaError(f"rope must be '1d' or '3d', got {self.rope!r}")
        if self.head_dim is None and self.dim % self.n_heads:
            raise KinemaError(
                f"dim {self.dim} is not divisible by n_heads {self.n_heads}; set head_dim"
            )
        kv = self.n_kv_heads or self.n_heads
        if self.n_heads % kv:
            raise KinemaError(f"n_kv_heads ({kv}) must divide n_heads ({self.n_heads})")
        if self.resolved_head_dim % 2:
            raise KinemaError(f"head_dim must be even for rotary, got {self.resolved_head_dim}")
        if self.rope_axes_dim is not None:
            self.rope_axes_dim = tuple(int(d) for d in self.rope_axes_dim)
            if self.rope == "3d" and (
                len(self.rope_axes_dim) != 3
                or sum(self.rope_axes_dim) != self.resolved_head_dim
                or any(d <= 0 or d % 2 for d in self.rope_axes_dim)
            ):
                raise KinemaError(
                    f"rope_axes_dim {self.rope_axes_dim} must be 3 positive even sizes summing "
                    f"to head_dim {self.resolved_head_dim}, e.g. "
                    f"{default_axes_dim(self.resolved_head_dim)}"
                )

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim or self.dim // self.n_heads

    @property
    def resolved_axes_dim(self) -> tuple[int, int, int] | None:
        if self.rope == "1d":
            return None
        return self.rope_axes_dim or default_axes_dim(self.resolved_head_dim)

    @property
    def resolved_mlp_hidden(self) -> int:
        return self.mlp_hidden or llama_hidden_dim(self.dim, self.multiple_of)


def core_config(model_config: CoreFields, **overrides) -> TransformerConfig:
    """The :class:`TransformerConfig` of a model config: its :class:`CoreFields` plus
    ``overrides`` (e.g. ``rope="3d"``, ``max_seq_len``)."""
    values = {f.name: getattr(model_config, f.name) for f in dataclasses.fields(CoreFields)}
    return TransformerConfig(**{**values, **overrides})


class Transformer(ModelMixin):
    """A stack of :class:`Block` plus a final RMSNorm (adaLN-modulated when ``adaln``).

    Shapes: ``x (B, N, D) -> (B, N, D)``. See :meth:`forward` for positions, masks, the cache
    and conditioning.
    """

    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = c = config
        self.rope = RotaryEmbedding(c.resolved_head_dim, c.rope_theta, c.resolved_axes_dim)
        self.layers = nn.ModuleList(
            Block(
                c.dim,
                c.n_heads,
                n_kv_heads=c.n_kv_heads,
                head_dim=c.resolved_head_dim,
                mlp_hidden=c.resolved_mlp_hidden,
                norm_eps=c.norm_eps,
                qk_norm=c.qk_norm,
                adaln_cond_dim=c.adaln_cond_dim,
            )
            for _ in range(c.n_layers)
        )
        self.norm = RMSNorm(c.dim, c.norm_eps)
        # DiT final layer: shift/scale of the last norm from cond (zero-init = plain norm).
        self.final_adaln = nn.Linear(c.adaln_cond_dim, 2 * c.dim) if c.adaln_cond_dim else None
        self.gradient_checkpointing = False
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Normal(0, init_std) linears, residual projections (``wo``, ``w2``) scaled by
        ``1/sqrt(2*n_layers)`` (GPT-2), adaLN linears zero, norms one. Deterministic under
        ``torch.manual_seed`` (fixed module order)."""
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        for layer in self.layers:
            nn.init.normal_(layer.attn.wo.weight, 0.0, std / math.sqrt(2 * self.config.n_layers))
            nn.init.normal_(layer.mlp.w2.weight, 0.0, std / math.sqrt(2 * self.config.n_layers))
        for lin in [*(layer.adaln for layer in self.layers), self.final_adaln]:
            if lin is not None:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)

    def setup_caches(
        self,
        batch_size: int,
        max_len: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        """Allocate one static :class:`KVCache` per layer (replacing any old one).

        ``max_len`` defaults to ``config.max_seq_len``; ``dtype``/``device`` to the model's
        parameters (pass ``torch.bfloat16`` when running fp32 weights under bf16 autocast).
        """
        p = next(self.parameters())
        max_len = max_len or self.config.max_seq_len
        dtype, device = dtype or p.dtype, device or p.device
        kv_heads = self.config.n_kv_heads or self.config.n_heads
        for layer in self.layers:
            layer.attn.kv_cache = KVCache(
                batch_size, kv_heads, max_len, self.config.resolved_head_dim, dtype, device
            )
        logger.debug("KV caches: %d x %s", len(self.layers), (batch_size, kv_heads, max_len))

    def clear_caches(self) -> None:
        """Drop the KV caches (frees their memory; forward without ``input_pos`` still works)."""
        for layer in self.layers:
            layer.attn.kv_cache = None

    def reset_caches(self) -> None:
        """Zero the KV caches in place, keeping their memory."""
        for layer in self.layers:
            if layer.attn.kv_cache is not None:
                layer.attn.kv_cache.reset()

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        mask: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
        input_pos: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        cond_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the stack on ``x (B, N, D)``; returns ``(B, N, D)`` after the final norm.

        Args:
            pos: rotary positions of the ``N`` tokens (float or int): ``(B, N)`` / ``(N,)``
                for ``rope="1d"``, ``(B, N, 3)`` / ``(N, 3)`` (t, h, w) for ``"3d"``.
            mask: boolean attention mask, True = may attend, over the WHOLE sequence:
                ``(S, S)`` or ``(B|1, 1|n_heads, S, S)``, row = query slot, column = key slot.
                Without a cache ``S = N``; ``None`` = full bidirectional attention.
                With a cache (``input_pos`` given) the mask is required and is the same full
                mask at every step: rows ``input_pos`` are taken from it and keys are cache
                slots ``0 .. S-1`` (``S <= max_len``; slots beyond ``S`` are not read).
                A list of ``n_layers`` such masks gives each layer its own (e.g. windowed
                attention whose axis changes from layer to layer).
            input_pos: ``(N,)`` long cache slots of the new tokens (cache mode). Slots and
                rotary positions are independent: ``pos`` may be fractional or 3D.
            cond: adaLN conditioning (required iff ``adaln_cond_dim``): ``(B, D_c)`` per
                sample, ``(B, N, D_c)`` per token, or ``(B, G, D_c)`` per group with
                ``cond_index (N,)`` long mapping each token to its group.
        """
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask] * len(self.layers)
        if len(masks) != len(self.layers):
            raise KinemaError(f"got {len(masks)} per-layer masks for {len(self.layers)} layers")
        checked: dict[int, torch.Tensor | None] = {}  # each distinct mask is checked (and cut) once
        for m in masks:
            if id(m) not in checked:
                checked[id(m)] = self._mask(m, input_pos)
        masks = [checked[id(m)] for m in masks]
        if (cond is None) != (self.final_adaln is None):
            raise KinemaError(
                "cond is required with adaln_cond_dim and not allowed without it"
                f" (adaln_cond_dim={self.config.adaln_cond_dim})"
            )
        rope = self.rope(pos)
        for layer, mask in zip(self.layers, masks, strict=True):
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(
                    layer, x, rope, mask, input_pos, cond, cond_index, use_reentrant=False
                )
            else:
                x = layer(x, rope, mask, input_pos, cond, cond_index)
        x = self.norm(x)
        if self.final_adaln is not None:
            shift, scale = modulation(self.final_adaln, cond, cond_index, x.shape[1]).chunk(2, -1)
            x = x * (1 + scale) + shift
        return x

    def _mask(
        self, mask: torch.Tensor | None, input_pos: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Validate one attention mask; in cache mode keep only the rows of the new queries."""
        if mask is None:
            return None
        if mask.dtype != torch.bool:
            raise KinemaError(f"attention mask must be bool (True = attend), not {mask.dtype}")
        if mask.ndim not in (2, 4):
            raise KinemaError(f"mask must be (S, S) or (B, H, S, S), got {tuple(mask.shape)}")
        if input_pos is not None:
            cache = self.layers[0].attn.kv_cache
            if cache is not None and mask.shape[-1] > cache.max_len:
                raise KinemaError(
                    f"mask covers {mask.shape[-1]} keys but the KV cache holds {cache.max_len}"
                )
            mask = mask.index_select(-2, input_pos)  # rows of the new queries
        return mask
