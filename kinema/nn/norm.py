"""RMSNorm (LLaMA): normalise by the root mean square of the last dimension."""

from __future__ import annotations

import torch
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
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
