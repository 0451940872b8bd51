"""LLaMA-style pre-norm transformer block with optional DiT adaLN-Zero modulation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kinema.errors import KinemaError
from kinema.nn.attention import Attention
from kinema.nn.mlp import SwiGLU
from kinema.nn.norm import RMSNorm
from kinema.nn.rotary import Rope


def modulation(
    linear: nn.Linear, cond: torch.Tensor, cond_index: torch.Tensor | None, n: int
) -> torch.Tensor:
    """AdaLN parameters ``linear(silu(cond))`` laid out to broadcast over ``(B, N, ...)``.

    ``cond``: ``(B, D_c)`` one vector per sample -> ``(B, 1, out)``; ``(B, N, D_c)`` one per
    token -> ``(B, N, out)``; ``(B, G, D_c)`` with ``cond_index (N,)`` long in ``[0, G)``:
    one vector per group (e.g. history frames vs current frame), computed once per group and
    gathered per token -> ``(B, N, out)``.
    """
    mod = linear(F.silu(cond))
    if mod.ndim == 2:
        return mod[:, None]
    if cond_index is not None:
        return mod.index_select(1, cond_index)
    if mod.shape[1] != n:
        raise KinemaError(
            f"per-token cond has {mod.shape[1]} rows for {n} tokens; pass cond_index for groups"
        )
    return mod


class Block(nn.Module):
    """``x + attn(norm(x))`` then ``x + mlp(norm(x))``; with adaLN (DiT)::

        shift, scale, gate (x2) = Linear(silu(cond))        # 6 * dim, zero-initialised
        x = x + gate_a * attn(norm(x) * (1 + scale_a) + shift_a)
        x = x + gate_m * mlp(norm(x) * (1 + scale_m) + shift_m)

    Zero-initialised gates make a fresh block the identity on the residual stream (adaLN-Zero).

    Args:
        dim, n_heads, n_kv_heads, head_dim, qk_norm: see :class:`Attention`.
        mlp_hidden, multiple_of: see :class:`SwiGLU`.
        norm_eps: RMSNorm eps.
        adaln_cond_dim: width ``D_c`` of the conditioning vector; ``None`` = no adaLN.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        *,
        n_kv_heads: int | None = None,
        head_dim: int | None = None,
        mlp_hidden: int | None = None,
        multiple_of: int = 256,
        norm_eps: float = 1e-5,
        qk_norm: bool = False,
        adaln_cond_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(dim, norm_eps)
        self.attn = Attention(dim, n_heads, n_kv_heads, head_dim, qk_norm, norm_eps)
        self.mlp_norm = RMSNorm(dim, norm_eps)
        self.mlp = SwiGLU(dim, mlp_hidden, multiple_of)
        self.adaln = nn.Linear(adaln_cond_dim, 6 * dim) if adaln_cond_dim else None
        if self.adaln is not None:
            nn.init.zeros_(self.adaln.weight)
            nn.init.zeros_(self.adaln.bias)

    def forward(
        self,
        x: torch.Tensor,
        rope: Rope,
        mask: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        cond_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x (B, N, dim) -> (B, N, dim)``; ``rope``, ``mask``, ``input_pos`` as in
        :meth:`Attention.forward`; ``cond``/``cond_index`` as in :func:`modulation`
        (required iff the block has adaLN)."""
        if self.adaln is None:
            x = x + self.attn(self.attn_norm(x), rope, mask, input_pos)
            return x + self.mlp(self.mlp_norm(x))
        if cond is None:
            raise KinemaError("this block has adaLN modulation: pass cond")
        mod = modulation(self.adaln, cond, cond_index, x.shape[1])
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mod.chunk(6, dim=-1)
        h = self.attn_norm(x) * (1 + scale_a) + shift_a
        x = x + gate_a * self.attn(h, rope, mask, input_pos)
        h = self.mlp_norm(x) * (1 + scale_m) + shift_m
        return x + gate_m * self.mlp(h)
