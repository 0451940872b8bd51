"""``torch.compile`` for inference: fused elementwise kernels and frozen, pre-packed weights.

Eager PyTorch launches every elementwise op of a transformer block (norms, adaLN
modulation, rotary, gates) as its own kernel. At the low-resolution stages of a pyramid
that launch cost, not arithmetic, dominates a step, so a 16x smaller stage is far less
than 16x cheaper. Inductor fuses those ops, and with ``freezing`` it treats the weights as
constants and pre-packs them for oneDNN (what :func:`kinema.nn.packed.packed_linears` does
in eager mode). On a CPU two more options pay off at these sizes: ``cpp_wrapper`` (the
compiled graph is called from C++, not through Python per kernel) and ``max_autotune``
with Inductor's C++ GEMM templates next to ATen's: each matmul shape is timed once and the
faster kernel kept. Measured on a 2-thread AMX Xeon, bf16 pyramid DiT step, template vs
oneDNN (ATen): 2.71 vs 4.11 ms at 64 tokens (where oneDNN's fixed cost per call is a large
part of a step), 10.24 vs 10.17 ms at 256 (no gain), 39.3 vs 45.2 ms at 1,024
(BENCHMARKS.md, "Pyramidal flow sampling").

Costs: each new input shape compiles once (tens of seconds on a CPU, more with
autotuning), and the weights are baked in: after changing them (training, a dtype cast)
compile again.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch._inductor.config as inductor_config
from torch import nn


def inductor_options(device_type: str, autotune: bool = True) -> dict[str, object]:
    """Inductor config for inference on ``device_type``: freezing everywhere; on a CPU also
    the C++ wrapper and (``autotune``) C++ GEMM templates timed against ATen."""
    opts: dict[str, object] = {"freezing": True}
    if device_type == "cpu":
        opts["cpp_wrapper"] = True
        if autotune:
            opts.update(max_autotune=True, max_autotune_gemm_backends="CPP,ATEN")
    return opts


class InferenceCompiled:
    """``module`` compiled for inference with static shapes and Inductor freezing.

    Call it like the module, under ``torch.inference_mode()`` or ``torch.no_grad()``
    (freezing needs a graph without autograd). Outputs equal the eager module's up to
    floating-point reassociation. ``autotune=False`` skips the GEMM timing (faster
    compilation, slower bf16 steps on a CPU).
    """

    def __init__(self, module: nn.Module, autotune: bool = True) -> None:
        self.module = module
        param = next(module.parameters(), None)
        device = "cpu" if param is None else param.device.type
        self.options = inductor_options(device, autotune)
        self._fn: Callable = torch.compile(module, dynamic=False)

    def __call__(self, *args, **kwargs):
        # the options are read when a graph is compiled, i.e. lazily inside the first call
        # of each input shape; patching them per call keeps them out of the process-wide
        # config
        with inductor_config.patch(self.options):
            return self._fn(*args, **kwargs)
