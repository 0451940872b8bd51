"""SwiGLU feed-forward (LLaMA): ``w2(silu(w1 x) * w3 x)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def llama_hidden_dim(dim: int, multiple_of: int = 256) -> int:
    """LLaMA's SwiGLU width: ``2/3 * 4 * dim`` rounded up to a multiple of ``multiple_of``.

    The 2/3 keeps the parameter count of a 4x GELU MLP despite the third matrix
    (dim 4096 -> 11008, LLaMA-7B).
    """
    hidden = int(2 * 4 * dim / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class SwiGLU(nn.Module):
    """Gated MLP: ``w1`` gate, ``w3`` up, ``w2`` down; no biases.

    Args:
        dim: model width.
        hidden: inner width; default :func:`llama_hidden_dim` ``(dim, multiple_of)``.
        multiple_of: rounding of the default inner width.
    Shapes: ``x (..., dim) -> (..., dim)``.
    """

    def __init__(self, dim: int, hidden: int | None = None, multiple_of: int = 256) -> None:
        super().__init__()
        hidden = hidden or llama_hidden_dim(dim, multiple_of)
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
