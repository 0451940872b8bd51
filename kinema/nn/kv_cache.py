"""Static key/value cache (gpt-fast style): preallocated once, written by index."""

from __future__ import annotations

import torch
from torch import nn


def decode_cache_dtype(dtype: torch.dtype, device: torch.device | str) -> torch.dtype:
    """The KV cache dtype for decoding with ``dtype`` weights on ``device``.

    bf16 weights on a CPU get an fp32 cache (attention over it runs in fp32): PyTorch's CPU
    SDPA in bf16 is several times slower than in fp32 at the few query rows of a decode step
    (1 query over 520-1280 keys, 6 heads of 64: 383-923 us against 62-122 us on a 2-core
    AVX-512 bf16 EPYC). The cache is small next to the weights (``2 * L * S * D`` floats).
    Anything else keeps ``dtype``.
    """
    if dtype == torch.bfloat16 and torch.device(device).type == "cpu":
        return torch.float32
    return dtype


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
