"""The one attention-mask builder of the token LM: prefix-LM + block-causal.

Sequence layout ``[prefix (P) | block 0 (L) | block 1 (L) | ...]``. Every slot gets a group
id: 0 for the prefix, ``1 + b`` for block ``b``; slot ``i`` may attend slot ``j`` iff
``group(j) <= group(i)``. Hence the prefix is bidirectional among itself (and never sees the
video), and a block sees the prefix, every earlier block and all of itself. With
``block_len = 1`` this is a plain causal mask after a bidirectional prefix (VideoPoet's
prefix LM); with ``block_len = L`` it is NBP's block-causal mask.
"""

from __future__ import annotations

import torch

from kinema.errors import KinemaError


def block_causal_mask(
    prefix_len: int,
    num_blocks: int,
    block_len: int,
    *,
    prefix_valid: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boolean attention mask, True = may attend (row = query slot, column = key slot).

    Args:
        prefix_len: ``P``, number of prefix slots (may be 0).
        num_blocks: ``n``, number of blocks after the prefix.
        block_len: ``L``, slots per block.
        prefix_valid: optional ``(B, P)`` bool, False = padding (e.g. unused text slots).
            No slot attends a padding key, except a padding slot attends itself so that no
            row is empty (an all-False row makes SDPA return NaN, which would leak through
            ``0 * NaN`` in later layers).
        device: device of the result (default: that of ``prefix_valid``, else CPU).

    Returns:
        ``(N, N)`` with ``N = P + n * L``; ``(B, 1, N, N)`` when ``prefix_valid`` is given.
    """
    if prefix_len < 0 or num_blocks < 0 or block_len < 1:
        raise KinemaError(
            f"mask needs prefix_len >= 0, num_blocks >= 0, block_len >= 1; got "
            f"{prefix_len}, {num_blocks}, {block_len}"
        )
    if prefix_valid is not None:
        device = prefix_valid.device
        if prefix_valid.ndim != 2 or prefix_valid.shape[1] != prefix_len:
            raise KinemaError(
                f"prefix_valid must be (B, {prefix_len}), got {tuple(prefix_valid.shape)}"
            )
    n = prefix_len + num_blocks * block_len
    slots = torch.arange(n, device=device)
    block = (slots - prefix_len).div(block_len, rounding_mode="floor")
    group = torch.where(slots < prefix_len, 0, 1 + block)  # 0 = prefix, 1 + b = block b
    mask = group[None, :] <= group[:, None]  # (N, N)
    if prefix_valid is None:
        return mask
    valid = torch.ones(prefix_valid.shape[0], n, dtype=torch.bool, device=device)
    valid[:, :prefix_len] = prefix_valid.bool()
    eye = torch.eye(n, dtype=torch.bool, device=device)
    return (mask & (valid[:, None, :] | eye))[:, None]  # (B, 1, N, N)
