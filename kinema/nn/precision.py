"""Which precision is fast where: bf16 only on hardware that computes it natively.

bf16 autocast / bf16 weights are kinema's fast path on GPUs and on CPUs with AMX or
AVX512-BF16 (e.g. recent Xeons: bf16 matmuls ~6x faster than fp32). On other CPUs (most
laptops, AMD EPYC before Zen 4) PyTorch emulates bf16: a bf16 matmul measured ~65x *slower*
than fp32 on a 2-core AVX2 EPYC. "auto" therefore means bf16 where native and fp32
elsewhere; ``KINEMA_PRECISION=fp32|bf16`` overrides the choice for a whole process.
"""

from __future__ import annotations

import functools
import logging
import os
from contextlib import AbstractContextManager

import torch

from kinema.errors import KinemaError

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
ENV = "KINEMA_PRECISION"


def _device(device: torch.device | str | None) -> torch.device:
    return torch.device("cpu" if device is None else device)


@functools.cache
def _cpu_bf16_native() -> bool:
    cpu = torch.cpu
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def bf16_native(device: torch.device | str | None = None) -> bool:
    """Whether ``device`` computes bf16 matmuls natively (so bf16 is faster than fp32)."""
    device = _device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return _cpu_bf16_native()
    return False


def resolve_precision(precision: str = "auto", device: torch.device | str | None = None) -> str:
    """``"auto"`` -> ``"bf16"`` where native on ``device``, else ``"fp32"``; ``"fp32"`` and
    ``"bf16"`` are returned as given (an explicit emulated bf16 is warned about once).
    ``KINEMA_PRECISION`` replaces ``"auto"``."""
    if precision not in PRECISIONS:
        raise KinemaError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = os.environ.get(ENV, "auto")
        if precision not in PRECISIONS:
            raise KinemaError(f"{ENV}={precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    if precision == "bf16" and not bf16_native(device):
        _warn_emulated(_device(device).type)
    return precision


@functools.cache
def _warn_emulated(device_type: str) -> None:
    logger.warning(
        "bf16 is emulated on this %s (no AMX / AVX512-BF16): it runs far slower than fp32; "
        "use precision 'auto' or 'fp32'",
        device_type,
    )


def fast_dtype(device: torch.device | str | None = None, precision: str = "auto") -> torch.dtype:
    """The compute dtype for inference on ``device``: bf16 where native, else fp32."""
    bf16 = resolve_precision(precision, device) == "bf16"
    return torch.bfloat16 if bf16 else torch.float32


def autocast(
    device: torch.device | str | None = None, precision: str = "auto"
) -> AbstractContextManager:
    """bf16 autocast on ``device`` when ``precision`` resolves to bf16, else a no-op."""
    device = _device(device)
    enabled = resolve_precision(precision, device) == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
