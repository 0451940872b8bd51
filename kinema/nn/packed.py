"""Pre-packed bf16 linear layers for CPU inference (oneDNN).

A bf16 ``nn.Linear`` on CPU re-lays out its weight for oneDNN's (AMX) kernels on every call;
at decode sizes (a few rows) that costs more than the product. With the weight packed once,
the 64K-row output head of a token LM at batch 1 runs ~3x faster on this project's Xeon
(BENCHMARKS.md, decode rows). This is what ``torch.compile``'s CPU backend does under
"freezing"; here it is a context manager with no compilation. Results equal ``F.linear``'s
(same kernels, same rounding).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

logger = logging.getLogger(__name__)


def packing_available(weight: torch.Tensor) -> bool:
    """Whether ``weight`` can be packed: a bf16 CPU tensor with oneDNN bf16 support."""
    return (
        weight.device.type == "cpu"
        and weight.dtype == torch.bfloat16
        and torch.backends.mkldnn.is_available()
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


class _PackedForward:
    """``forward`` of one packed ``nn.Linear``: ``(..., in) -> (..., out)`` bf16."""

    def __init__(self, linear: nn.Linear, rows_hint: int) -> None:
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows_hint)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.bfloat16 or x.requires_grad:  # not what was packed for
            raise RuntimeError("packed bf16 linear called with a non-bf16 or grad input")
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


@contextmanager
def packed_linears(model: nn.Module, rows_hint: int = 1) -> Iterator[int]:
    """Inside the block, every bf16 CPU ``nn.Linear`` of ``model`` uses a pre-packed weight.

    For inference only (no gradients flow to the packed weights); the layers are restored
    on exit. ``rows_hint``: the typical number of input rows (batch x positions) per call.
    Yields the number of layers packed (0 where packing is unavailable, e.g. fp32 weights,
    a GPU, or a CPU without bf16 support: then nothing changes).
    """
    layers = [
        m for m in model.modules() if isinstance(m, nn.Linear) and packing_available(m.weight)
    ]
    for m in layers:
        m.forward = _PackedForward(m, rows_hint)  # instance attribute shadows the class's
    try:
        yield len(layers)
    finally:
        for m in layers:
            del m.forward
