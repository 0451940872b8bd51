"""InferenceCompiled: torch.compile with Inductor freezing gives the eager module's outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from kinema.nn.compiled import InferenceCompiled

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from flow_testing import randomized  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_compiled_dit_matches_eager_at_two_stages():
    model = randomized(text_dim=0)
    compiled = InferenceCompiled(model, autotune=False)  # the autotuned path: bf16 below
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([700.0, 250.0])
    with torch.inference_mode():
        for side in (8, 16):  # two stage shapes: two graphs
            x = torch.randn(2, 4, side, side, generator=g)
            eager = model(x, t)
            assert eager.abs().mean() > 1e-3
            torch.testing.assert_close(compiled(x, t), eager, rtol=1e-4, atol=1e-5)
    # frozen weights are baked in: the module itself is not modified
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_inductor_options_per_device():
    from kinema.nn.compiled import inductor_options

    cpu = inductor_options("cpu")
    assert cpu["freezing"] and cpu["cpp_wrapper"] and cpu["max_autotune"]
    assert cpu["max_autotune_gemm_backends"] == "CPP,ATEN"
    assert inductor_options("cpu", autotune=False) == {"freezing": True, "cpp_wrapper": True}
    assert inductor_options("cuda") == {"freezing": True}


def test_compiled_bf16_dit_matches_eager():
    model = randomized(text_dim=0).to(torch.bfloat16)
    compiled = InferenceCompiled(model)
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([400.0])
    with torch.inference_mode():
        eager = model(x.bfloat16(), t).float()
        out = compiled(x.bfloat16(), t).float()
    assert eager.abs().mean() > 1e-3
    # bf16 kernels of another summation order (template GEMMs vs oneDNN)
    assert (out - eager).abs().mean() < 0.02 * eager.abs().mean()
    # the options stayed local to this compile: the process-wide config is unchanged
    import torch._inductor.config as ic

    assert not ic.freezing and not ic.max_autotune and not ic.cpp_wrapper
