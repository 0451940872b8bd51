"""Static key/value cache (gpt-fast style): preallocated once, written by index."""

from __future__ import annotations

import torch
from torch import nn


class KVCache(nn.Module):
    """Preallocated ``(B, n_kv_heads, max_len, head_dim)`` key and value buffers.

    :meth:`update` writes the new keys/values at cache slots ``input_pos`` in place (no
    reallocation, no concatenation) and returns the whole buffers; which slots a query may
    read is decided by the attention mask, so stale or unwritten slots are harmless as long
    as the mask excludes them. Buffers are non-persistent: they never enter a state dict.
    """

    def __init__(
        self,
        batch_size: int,
        n_kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def update(
        self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k, v (B, n_kv_heads, N, head_dim)`` at slots ``input_pos (N,)`` (long).

        Any ``N`` works (1 token, a block, a frame). Inputs are cast to the cache dtype (a
        no-op normally; needed under autocast). Returns the full ``(B, n_kv_heads, max_len,
        head_dim)`` buffers.
        """
        self.k.index_copy_(2, input_pos, k.to(self.k.dtype))
        self.v.index_copy_(2, input_pos, v.to(self.v.dtype))
        return self.k, self.v

    def reset(self) -> None:
        """Zero both buffers in place (stale values could otherwise be NaN/inf from a bad run)."""
        self.k.zero_()
        self.v.zero_()

    def extra_repr(self) -> str:
        return f"shape={tuple(self.k.shape)}, dtype={self.k.dtype}"
