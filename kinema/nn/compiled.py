"""``torch.compile`` for inference: fused elementwise kernels and frozen, pre-packed weights.

Eager PyTorch launches every elementwise op of a transformer block (norms, adaLN
modulation, rotary, gates) as its own kernel. At the low-resolution stages of a pyramid
that launch cost, not arithmetic, dominates a step, so a 16x smaller stage is far less
than 16x cheaper. Inductor fuses those ops, and with ``freezing`` it treats the weights as
constants and pre-packs them for oneDNN (what :func:`kinema.nn.packed.packed_linears` does
in eager mode). On this project's CPU the small pyramid DiT's steps run ~1.8x faster
(BENCHMARKS.md, pyramid rows).

Costs: each new input shape compiles once (tens of seconds on a CPU), and the weights are
baked in: after changing them (training, a dtype cast) compile again.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch._inductor.config as inductor_config
from torch import nn


class InferenceCompiled:
    """``module`` compiled for inference with static shapes and Inductor freezing.

    Call it like the module, under ``torch.inference_mode()`` or ``torch.no_grad()``
    (freezing needs a graph without autograd). Outputs equal the eager module's up to
    floating-point reassociation.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._fn: Callable = torch.compile(module, dynamic=False)

    def __call__(self, *args, **kwargs):
        # freezing is read when a graph is compiled, i.e. lazily inside the first call of
        # each input shape; patching it per call keeps it out of the process-wide config
        with inductor_config.patch(freezing=True):
            return self._fn(*args, **kwargs)
