"""Exponential moving average of a model's parameters (works on FSDP2-sharded models)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from kinema.train.distributed import full_tensor, is_dtensor, local_tensor, shard_like


class EMA:
    """fp32 shadow copy ``ema = decay * ema + (1 - decay) * param`` of every parameter.

    Under FSDP2 the shadow is sharded exactly like the parameters (each rank keeps its own
    shard), so the update is local and costs no communication. :meth:`full_state_dict` and
    :meth:`load_full_state_dict` speak full (unsharded) tensors keyed by parameter name.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        named = list(model.named_parameters())
        self.names = [n for n, _ in named]
        self._params = [p for _, p in named]
        with torch.no_grad():
            self.shadow = [p.detach().clone().float() for p in self._params]

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step towards the current parameters (call after ``optimizer.step()``)."""
        shadow = [local_tensor(s) for s in self.shadow]
        params = [local_tensor(p).float() for p in self._params]
        torch._foreach_lerp_(shadow, params, 1.0 - self.decay)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """``{name: full fp32 tensor on CPU}``; a collective call when the model is sharded."""
        return {
            n: full_tensor(s).detach().cpu() for n, s in zip(self.names, self.shadow, strict=True)
        }

    @torch.no_grad()
    def load_full_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = [n for n in self.names if n not in state]
        if missing:
            raise KeyError(f"EMA state lacks parameters {missing[:5]}")
        for name, s in zip(self.names, self.shadow, strict=True):
            value = state[name].to(dtype=s.dtype)
            if is_dtensor(s):
                local_tensor(s).copy_(local_tensor(shard_like(value, s)))
            else:
                s.copy_(value)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Temporarily load the EMA weights into the model (e.g. to evaluate or sample)."""
        with torch.no_grad():
            backup = [local_tensor(p).detach().clone() for p in self._params]
            for p, s in zip(self._params, self.shadow, strict=True):
                local_tensor(p).copy_(local_tensor(s))
        try:
            yield
        finally:
            with torch.no_grad():
                for p, b in zip(self._params, backup, strict=True):
                    local_tensor(p).copy_(b)
