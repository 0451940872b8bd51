"""RMSNorm (LLaMA): normalise by the root mean square of the last dimension."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """``x / rms(x) * weight`` over the last dimension.

    The statistics and the scaling are computed in fp32 and the result is cast back to the
    input dtype, so bf16 activations do not lose precision in the mean of squares.

    Args:
        dim: size of the last dimension.
        eps: added to the mean square before the square root.
    Shapes: ``x (..., dim) -> (..., dim)``, same dtype as ``x``.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == self.weight.dtype:  # one fused op (computes in fp32 for bf16 inputs)
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        return reference_rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def reference_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """The definition, step by step in fp32 (bf16 activations with fp32 weights under
    autocast take this path): ``x (..., dim) -> (..., dim)`` in ``x.dtype``."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * weight.float()).to(x.dtype)
