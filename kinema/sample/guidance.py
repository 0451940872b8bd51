"""Classifier-free guidance: conditional and unconditional rows in one batch."""

from __future__ import annotations

import torch


def cfg_combine(out: torch.Tensor, scale: float) -> torch.Tensor:
    """Mix a guided batch ``(2B, ...)`` (conditional rows first, then unconditional) into
    ``(B, ...)``: ``uncond + scale * (cond - uncond)``. ``scale = 1`` is conditional,
    ``0`` unconditional."""
    cond, uncond = out.chunk(2, dim=0)
    return uncond + scale * (cond - uncond)
