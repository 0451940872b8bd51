"""Residual vector quantization (SoundStream): a stack of VQs, each coding what the previous
ones left, so ``z ~ q_0 + q_1 + ... + q_{n-1}`` and every extra level refines the estimate.

Each level is kinema's :class:`~kinema.tokenizer.quantizers.VQ` (EMA or learned codebook,
commitment loss, codebook initialised from the first training batch), applied to a
``(B, D, L)`` sequence of frame embeddings. On top, SoundStream's dead-code replacement: with
EMA codebooks, a code whose usage falls below ``restart`` times the average code's is moved
onto a random residual of the current batch, so codebooks do not collapse onto a few codes.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from kinema.errors import KinemaError
from kinema.tokenizer.quantizers import VQ, QuantizerOutput


class ResidualVQ(nn.Module):
    """``levels`` VQs of ``codebook_size`` codes in ``dim`` dimensions.

    ``forward(z (B, D, L))`` -> :class:`QuantizerOutput` with ``z`` the quantized sum
    ``(B, D, L)`` (straight-through gradients to ``z``), ``indices`` ``(B, L, levels)`` long
    (level 0 first), ``loss`` the summed level losses and ``metrics`` (mean ``perplexity``,
    summed ``commit``, ``restarts``: codes replaced in this call). Level ``i`` sees the
    residual ``z - sum_{j<i} q_j`` with the earlier codes detached, so its commitment loss
    pulls the encoder toward the running estimate.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        levels: int,
        *,
        ema: bool = True,
        decay: float = 0.99,
        commit_weight: float = 0.25,
        restart: float = 0.0,
    ) -> None:
        super().__init__()
        if levels < 1 or codebook_size < 2:
            raise KinemaError(
                f"ResidualVQ needs levels >= 1 and codebook_size >= 2, got {levels} and "
                f"{codebook_size}"
            )
        self.dim, self.codebook_size, self.levels = dim, codebook_size, levels
        self.restart = restart if ema else 0.0  # usage is only tracked by EMA codebooks
        self.layers = nn.ModuleList(
            VQ(dim, codebook_size, ema=ema, decay=decay, commit_weight=commit_weight)
            for _ in range(levels)
        )

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """``z (B, D, L)`` -> quantized ``(B, D, L)`` and ``(B, L, levels)`` indices."""
        residual = z.float()
        total = torch.zeros_like(residual)
        indices, loss = [], residual.new_zeros(())
        perplexity, commit, restarts = [], [], 0
        for vq in self.layers:
            out = vq(residual)
            if self.training and self.restart > 0:
                restarts += self._restart_dead(vq, rearrange(residual.detach(), "b d l -> (b l) d"))
            q = out.z.detach()
            total = total + q
            residual = residual - q
            indices.append(out.indices)
            loss = loss + out.loss
            if out.metrics:
                perplexity.append(out.metrics["perplexity"])
                commit.append(out.metrics["commit"])
        zq = z.float() + (total - z.float()).detach() if z.requires_grad else total
        metrics = {}
        if perplexity:
            metrics = {
                "perplexity": torch.stack(perplexity).mean(),
                "commit": torch.stack(commit).sum(),
                "restarts": z.new_tensor(float(restarts)),
            }
        return QuantizerOutput(zq, torch.stack(indices, -1), loss, metrics)

    @torch.no_grad()
    def _restart_dead(self, vq: VQ, flat: torch.Tensor) -> int:
        """Move codes used less than ``restart`` x the average onto random rows of ``flat``
        ``(N, D)``; ranks agree on which codes (EMA counts are all-reduced) and take rank
        0's vectors. Takes effect from the next batch. Returns the number replaced."""
        average = vq.ema_count.mean()
        dead = vq.ema_count < self.restart * average
        n = int(dead.sum())
        if n == 0:
            return 0
        pick = flat[torch.randint(0, flat.shape[0], (n,), device=flat.device)]
        if torch.distributed.is_initialized():
            torch.distributed.broadcast(pick, src=0)
        # a fresh code starts at average usage (not re-flagged before it had a chance), and
        # ema_sum / ema_count stays equal to the codebook
        vq.codebook[dead] = pick
        vq.ema_count[dead] = average
        vq.ema_sum[dead] = pick * average
        return n

    @torch.no_grad()
    def encode_indices(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, D, L)`` -> ``(B, L, levels)`` long; no codebook update, no gradients."""
        residual = rearrange(z.float(), "b d l -> b l d")
        indices = []
        for vq in self.layers:
            idx = vq.codes_to_indices(residual)
            residual = residual - vq.indices_to_codes(idx)
            indices.append(idx)
        return torch.stack(indices, -1)

    def indices_to_embedding(self, indices: torch.Tensor) -> torch.Tensor:
        """``(B, L, n)`` codes of the first ``n <= levels`` levels -> their sum ``(B, D, L)``
        fp32 (a coarser estimate when ``n < levels``)."""
        n = indices.shape[-1]
        if not 1 <= n <= self.levels:
            raise KinemaError(f"codes have {n} levels; this quantizer has 1 to {self.levels}")
        total = sum(self.layers[i].indices_to_codes(indices[..., i]) for i in range(n))
        return rearrange(total, "b l d -> b d l")
