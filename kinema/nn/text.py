"""Projected text slots with a learned null text, shared by every text-conditioned model.

Text-encoder states ``(B, L, text_dim)`` are projected to ``dim`` and padded to
``max_len`` slots; ``valid (B, max_len)`` marks the real tokens. The null text (no text,
or ``drop`` True for a sample: classifier-free guidance) is one learned vector in slot 0
with the other slots invalid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kinema.errors import KinemaError


class TextSlots(nn.Module):
    """``proj``: Linear ``text_dim -> dim``; ``null``: the learned null vector ``(dim,)``.

    Shapes: ``text (B, L, text_dim)`` with ``L <= max_len``, ``text_mask (B, L)`` bool,
    ``drop (B,)`` bool; returns ``x (B, max_len, dim)`` and ``valid (B, max_len)`` bool.
    Outputs are in the projection weight's dtype and device (text is cast to it), so a
    bf16-weight model decodes from fp32 encoder states.
    """

    def __init__(self, text_dim: int, dim: int, max_len: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.max_len = max_len
        self.init_std = init_std
        self.proj = nn.Linear(text_dim, dim)
        self.null = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Projection weight and null vector ~ Normal(0, init_std), bias zero."""
        nn.init.normal_(self.proj.weight, 0.0, self.init_std)
        nn.init.zeros_(self.proj.bias)
        nn.init.normal_(self.null, 0.0, self.init_std)

    @property
    def text_dim(self) -> int:
        return self.proj.in_features

    def unconditional(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The null text: ``x (B, max_len, dim)`` with the null vector in slot 0 (zeros
        elsewhere) and ``valid (B, max_len)`` True on slot 0 only."""
        w = self.proj.weight
        x = w.new_zeros(batch_size, self.max_len, w.shape[0])
        x[:, 0] = self.null.to(w.dtype)
        valid = torch.zeros(batch_size, self.max_len, dtype=torch.bool, device=w.device)
        valid[:, 0] = True
        return x, valid

    def forward(
        self,
        batch_size: int,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Text slots ``x (B, max_len, dim)`` and ``valid (B, max_len)`` (False = padding).

        Args:
            text: ``(B, L, text_dim)`` text-encoder states, ``L <= max_len``; ``None`` = the
                null text for every sample.
            text_mask: ``(B, L)`` bool, True = real token (default all True).
            drop: ``(B,)`` bool, True = the null text for that sample.
        """
        b, s = batch_size, self.max_len
        null_x, null_valid = self.unconditional(b)
        if text is None:
            if text_mask is not None:
                raise KinemaError("text_mask given without text")
            return null_x, null_valid
        w = self.proj.weight
        if text.ndim != 3 or text.shape[0] != b or text.shape[2] != self.text_dim:
            raise KinemaError(f"text must be (B={b}, L, {self.text_dim}), got {tuple(text.shape)}")
        if text.shape[1] > s:
            raise KinemaError(f"text has {text.shape[1]} tokens; max_text_len is {s}")
        valid = torch.ones(text.shape[:2], dtype=torch.bool, device=w.device)
        if text_mask is not None:
            _check_shape(text_mask, tuple(text.shape[:2]), "text_mask")
            valid = text_mask.to(device=w.device, dtype=torch.bool)
        pad = s - text.shape[1]
        x = F.pad(self.proj(text.to(device=w.device, dtype=w.dtype)), (0, 0, 0, pad))
        valid = F.pad(valid, (0, pad), value=False)
        if drop is not None:
            _check_shape(drop, (b,), "drop")
            drop = drop.to(device=w.device, dtype=torch.bool)
            x = torch.where(drop[:, None, None], null_x, x)
            valid = torch.where(drop[:, None], null_valid, valid)
        return x, valid

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}"


def _check_shape(x: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    if tuple(x.shape) != tuple(shape):
        raise KinemaError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")
