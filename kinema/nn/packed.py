"""Pre-packed linear layers for CPU inference (oneDNN), fp32 and bf16.

A CPU ``nn.Linear`` at decode sizes (a few rows) is far from what the hardware can do: a
bf16 one re-lays out its weight for oneDNN's (AMX) kernels on every call, and an fp32 one
goes through a GEMM tuned for large products. With the weight packed once for oneDNN, the
64K-row output head of a token LM at batch 1 runs ~3x faster in bf16 on this project's Xeon
(BENCHMARKS.md, decode rows), and 16 rows of it ~2.3x faster in fp32 on an AVX2 EPYC. This is
what ``torch.compile``'s CPU backend does under "freezing"; here it is a context manager with
no compilation. bf16 results equal ``F.linear``'s (same kernels, same rounding); fp32 ones
agree to float rounding (another summation order).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

logger = logging.getLogger(__name__)


def gemv_rows(capability: str) -> int:
    """fp32 layers packed for at most this many rows keep a contiguous transposed weight
    instead of a oneDNN-packed one, on a CPU of this ``torch.backends.cpu`` capability.

    One or two rows (a next-token step) make a matrix-vector product bound by reading the
    weight. On an AVX2 EPYC a plain ``x @ W^T`` over a contiguous ``W^T`` streamed it fastest
    (next-token decoding of the 10M bench model 20.5 s vs 24.5 s packed); on an AVX-512 EPYC
    (Zen 5) oneDNN's packed product is as fast on one thread and uses the second one, where
    ``x @ W^T`` stays on one (the 64K head from DRAM on 2 threads: 3.5 ms vs 6.8 ms).
    """
    return 2 if capability == "AVX2" else 0


GEMV_ROWS = gemv_rows(torch.backends.cpu.get_cpu_capability())


def packing_available(weight: torch.Tensor) -> bool:
    """Whether ``weight`` can be packed: an fp32 CPU tensor with oneDNN, or a bf16 one with
    oneDNN bf16 support."""
    if weight.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if weight.dtype == torch.float32:
        return True
    return weight.dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported()


class _PackedForward:
    """``forward`` of one packed ``nn.Linear``: ``(..., in) -> (..., out)`` in its dtype."""

    def __init__(self, linear: nn.Linear, rows_hint: int) -> None:
        self.linear = linear
        self.key = _key(linear, rows_hint)
        self.dtype = linear.weight.dtype
        weight = linear.weight.detach()
        self.bias = None if linear.bias is None else linear.bias.detach()
        # fp32 at one or two rows on an AVX2 CPU: a contiguous (in, out) copy (gemv_rows)
        self.transposed = self.dtype == torch.float32 and rows_hint <= GEMV_ROWS
        if self.transposed:
            self.weight = weight.t().contiguous()
        else:
            self.weight = torch.ops.mkldnn._reorder_linear_weight(weight, rows_hint)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        grad = torch.is_grad_enabled() and (x.requires_grad or self.linear.weight.requires_grad)
        if grad or x.dtype != self.dtype or torch.is_autocast_enabled("cpu"):
            # not what was packed for (gradients, another dtype, autocast): the plain layer
            return type(self.linear).forward(self.linear, x)
        if self.transposed:
            out = x @ self.weight
            return out if self.bias is None else out + self.bias
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


def _key(linear: nn.Linear, rows_hint: int) -> tuple | None:
    """What a packed copy was made from: the weight's storage and version (an in-place
    update, e.g. an optimizer step or ``load_state_dict``, bumps it), dtype and rows.
    ``None`` (never reused) for inference tensors, which keep no version counter."""
    w, b = linear.weight, linear.bias
    if w.is_inference() or (b is not None and b.is_inference()):
        return None
    bias = None if b is None else (b.data_ptr(), b._version)
    return (w.data_ptr(), w._version, w.dtype, tuple(w.shape), bias, rows_hint)


_KEPT = "_kinema_packed"  # attribute of a linear holding its kept packed copy


@contextmanager
def packed_linears(model: nn.Module, rows_hint: int = 1, keep: bool = False) -> Iterator[int]:
    """Inside the block, every fp32 / bf16 CPU ``nn.Linear`` of ``model`` uses a pre-packed
    weight.

    For inference (the packed copies take as much memory again as the layers' weights);
    the layers are restored on exit. ``rows_hint``: the typical number of input rows
    (batch x positions) per call. ``keep``: leave the packed copies on the layers after
    the block, so the next call with the same ``rows_hint`` and unchanged weights skips
    the packing (the 64K-row head of a token LM takes ~0.03-0.1 s to pack on a 2-core CPU);
    they stay in memory until :func:`release_packed` or the weights change.
    Yields the number of layers packed (0 where packing is unavailable, e.g. a GPU, a build
    without oneDNN, or bf16 weights on a CPU without bf16 support: then nothing changes).
    A call the packing does not fit (other input dtype, autocast, gradients) runs the plain
    layer.
    """
    layers = [
        m for m in model.modules() if isinstance(m, nn.Linear) and packing_available(m.weight)
    ]
    for m in layers:
        kept = getattr(m, _KEPT, None)
        if kept is None or kept.key != _key(m, rows_hint):  # only non-None keys are kept
            kept = _PackedForward(m, rows_hint)
        m.forward = kept  # instance attribute shadows the class's
        if keep and kept.key is not None:
            setattr(m, _KEPT, kept)
        elif hasattr(m, _KEPT):
            delattr(m, _KEPT)
    try:
        yield len(layers)
    finally:
        for m in layers:
            del m.forward


def release_packed(model: nn.Module) -> int:
    """Drop the packed copies kept by ``packed_linears(..., keep=True)``; returns how many."""
    layers = [m for m in model.modules() if hasattr(m, _KEPT)]
    for m in layers:
        delattr(m, _KEPT)
    return len(layers)
