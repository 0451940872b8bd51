"""Multi-head attention (optional GQA, optional qk-norm) on top of PyTorch SDPA."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from kinema.errors import KinemaError
from kinema.nn.kv_cache import KVCache
from kinema.nn.norm import RMSNorm
from kinema.nn.rotary import Rope, apply_rotary


class Attention(nn.Module):
    """Self-attention with rotary positions and an optional static KV cache.

    Args:
        dim: model width.
        n_heads: query heads.
        n_kv_heads: key/value heads (GQA); default ``n_heads``. Must divide ``n_heads``.
        head_dim: channels per head; default ``dim // n_heads``.
        qk_norm: RMS-normalise queries and keys per head before rotary (stabilises DiTs).
        norm_eps: eps of the qk norms.

    Query, key and value projections are fused into one matmul (``wqkv``, rows ordered
    q | k | v); ``wo`` projects back. No biases.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        head_dim: int | None = None,
        qk_norm: bool = False,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        n_kv_heads = n_kv_heads or n_heads
        if n_heads % n_kv_heads:
            raise KinemaError(f"n_kv_heads ({n_kv_heads}) must divide n_heads ({n_heads})")
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = head_dim or dim // n_heads
        q_dim, kv_dim = n_heads * self.head_dim, n_kv_heads * self.head_dim
        self.wqkv = nn.Linear(dim, q_dim + 2 * kv_dim, bias=False)
        self.wo = nn.Linear(q_dim, dim, bias=False)
        self.q_norm = RMSNorm(self.head_dim, norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, norm_eps) if qk_norm else None
        self.kv_cache: KVCache | None = None

    def forward(
        self,
        x: torch.Tensor,
        rope: Rope,
        mask: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend ``x (B, N, dim)`` -> ``(B, N, dim)``.

        Args:
            rope: tables for the ``N`` tokens of ``x``.
            mask: boolean, True = may attend, ``(N, S)`` or ``(B|1, 1|n_heads, N, S)``:
                the rows of the ``N`` queries over ``S`` keys. Without a cache ``S = N``;
                ``None`` means every token sees every token. With a cache the keys are cache
                slots ``0 .. S-1`` (``S <= max_len``) and a mask is required.
            input_pos: ``(N,)`` long cache slots of the new tokens; enables the cache.
        """
        cache = None
        if input_pos is not None:
            cache = self.kv_cache
            if cache is None:
                raise KinemaError("input_pos given but no KV cache: call setup_caches() first")
            if mask is None:
                raise KinemaError("cached attention needs a mask (which cache slots to read)")
        # attention runs in the cache's dtype: fp32 for bf16 weights when decoding on a CPU
        # (decode_cache_dtype); rotary computes in fp32 and returns that dtype directly
        qkv = rearrange(self.wqkv(x), "b n (h d) -> b h n d", d=self.head_dim)
        act = qkv.dtype  # the projections' (bf16 under autocast)
        dtype = act if cache is None else cache.k.dtype
        hq, hk = self.n_heads, self.n_kv_heads
        if self.q_norm is None:  # q and k rotated in one call (fewer small ops per step)
            q, k = apply_rotary(qkv[:, : hq + hk], rope, dtype).split((hq, hk), dim=1)
        else:
            q, k = self.q_norm(qkv[:, :hq]), self.k_norm(qkv[:, hq : hq + hk])
            q, k = apply_rotary(q, rope, dtype), apply_rotary(k, rope, dtype)
        v = qkv[:, hq + hk :]
        if cache is not None:
            k, v = cache.update(input_pos, k, v)
            # Read only the slots the mask covers: a view, and fewer keys when S < max_len.
            k, v = k[:, :, : mask.shape[-1]], v[:, :, : mask.shape[-1]]
        r = self.n_heads // self.n_kv_heads
        if r == 1:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).to(act)
            return self.wo(rearrange(out, "b h n d -> b n (h d)"))
        # GQA without copying K/V (the whole cache when decoding): the r query heads that
        # share a K/V head become r times as many query rows of that head. (SDPA's own
        # enable_gqa is not supported by every fused kernel; with a mask it can fall back
        # to the math kernel, which materialises all scores.)
        q = rearrange(q, "b (hk r) n d -> b hk (r n) d", r=r)
        if mask is not None:
            mask = fold_mask(mask, r)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).to(act)
        return self.wo(rearrange(out, "b hk (r n) d -> b n (hk r d)", r=r))


def fold_mask(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Mask ``(N, S)`` or ``(B|1, 1|H, N, S)`` -> ``(B|1, 1|H/r, r*N, S)`` for GQA query folding."""
    if mask.ndim == 2:
        mask = mask[None, None]
    if mask.shape[1] == 1:
        return repeat(mask, "b 1 n s -> b 1 (r n) s", r=r)
    return rearrange(mask, "b (hk r) n s -> b hk (r n) s", r=r)
