"""Pre-packed bf16 linears (kinema.nn.packed): same outputs as nn.Linear, restored on exit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kinema.nn.packed import packed_linears, packing_available


def test_packed_linears_equal_plain_linears_and_are_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(48, 96), nn.SiLU(), nn.Linear(96, 40, bias=False))
    model = model.to(torch.bfloat16)
    x = torch.randn(3, 5, 48, dtype=torch.bfloat16)
    with torch.inference_mode():
        ref = model(x)
        with packed_linears(model, rows_hint=15) as n:
            out = model(x)
            if n:  # the packed path ran: the linears' forward is the packed one
                assert all("forward" in vars(m) for m in model if isinstance(m, nn.Linear))
        after = model(x)
    if not packing_available(model[0].weight):
        pytest.skip("oneDNN bf16 packing is not available on this CPU")
    assert n == 2
    assert torch.equal(out, ref)  # same kernels, same rounding
    assert not any("forward" in vars(m) for m in model)  # restored
    assert torch.equal(after, ref)


def test_fp32_layers_are_left_alone():
    model = nn.Linear(8, 8)
    with packed_linears(model) as n:
        assert n == 0 and "forward" not in vars(model)
