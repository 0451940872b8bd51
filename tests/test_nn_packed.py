"""Pre-packed linears (kinema.nn.packed): nn.Linear's outputs, restored on exit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kinema.nn import packed
from kinema.nn.packed import gemv_rows, packed_linears, packing_available, release_packed


def _model(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(48, 96), nn.SiLU(), nn.Linear(96, 40, bias=False))
    return model.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_linears_equal_plain_linears_and_are_restored(dtype):
    model = _model(dtype)
    x = torch.randn(3, 5, 48, dtype=dtype)
    with torch.inference_mode():
        ref = model(x)
        with packed_linears(model, rows_hint=15) as n:
            out = model(x)
            if n:  # the packed path ran: the linears' forward is the packed one
                assert all("forward" in vars(m) for m in model if isinstance(m, nn.Linear))
        after = model(x)
    if not packing_available(model[0].weight):
        pytest.skip(f"oneDNN {dtype} packing is not available on this CPU")
    assert n == 2
    if dtype == torch.bfloat16:
        assert torch.equal(out, ref)  # same kernels, same rounding
    else:  # oneDNN's fp32 kernel sums in another order than the default GEMM
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert not any("forward" in vars(m) for m in model)  # restored
    assert torch.equal(after, ref)


def test_the_transposed_matrix_vector_path_is_for_avx2_cpus():
    assert gemv_rows("AVX2") == 2
    assert gemv_rows("AVX512") == 0 and gemv_rows("DEFAULT") == 0


@pytest.mark.parametrize("rows_hint", [1, 2])
def test_fp32_matrix_vector_layers_keep_a_transposed_copy(rows_hint, monkeypatch):
    model = _model(torch.float32)
    if not packing_available(model[0].weight):
        pytest.skip("oneDNN is not available")
    monkeypatch.setattr(packed, "GEMV_ROWS", 2)  # what an AVX2 CPU gets
    model[0].bias.data.normal_()
    x = torch.randn(rows_hint, 48)
    with torch.inference_mode():
        ref = model(x)
        with packed_linears(model, rows_hint=rows_hint) as n:
            layers = [vars(m)["forward"] for m in model if isinstance(m, nn.Linear)]
            out = model(x)
    assert n == 2 and all(f.transposed for f in layers)
    assert layers[0].weight.shape == (48, 96) and layers[0].weight.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(packed, "GEMV_ROWS", 0)  # an AVX-512 CPU: packed by oneDNN
    with torch.inference_mode(), packed_linears(model, rows_hint=rows_hint):
        layers = [vars(m)["forward"] for m in model if isinstance(m, nn.Linear)]
        out = model(x)
    assert not any(f.transposed for f in layers)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_calls_the_packing_does_not_fit_run_the_plain_layer():
    model = _model(torch.float32)
    x = torch.randn(4, 48)
    with packed_linears(model) as n:
        if not n:
            pytest.skip("oneDNN is not available")
        out = model(x)  # gradients enabled: the plain layers, so weights get gradients
        out.sum().backward()
        assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
            assert model(x).dtype == torch.bfloat16  # autocast still applies
        with torch.no_grad():
            y = model(x)  # the packed path
    torch.testing.assert_close(y, out.detach(), rtol=1e-5, atol=1e-5)


def test_integer_and_half_layers_are_left_alone():
    model = nn.Linear(8, 8).to(torch.float16)
    with packed_linears(model) as n:
        assert n == 0 and "forward" not in vars(model)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kept_packing_is_reused_until_the_weights_change(dtype):
    model = _model(dtype)
    if not packing_available(model[0].weight):
        pytest.skip(f"oneDNN {dtype} packing is not available on this CPU")
    x = torch.randn(4, 48, dtype=dtype)

    def packed_call(rows_hint=4, keep=True):
        with torch.inference_mode(), packed_linears(model, rows_hint=rows_hint, keep=keep):
            return vars(model[0])["forward"], model(x)

    first, _ = packed_call()
    assert not any("forward" in vars(m) for m in model)  # restored, copy kept aside
    again, out = packed_call()
    assert again is first  # not packed again
    with torch.no_grad():
        model[0].weight.mul_(-2.0)  # in place: the kept copy is stale now
    fresh, out = packed_call()
    assert fresh is not first
    with torch.inference_mode():
        ref = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    other, _ = packed_call(rows_hint=1)
    assert other is not fresh  # packed for another row count
    assert release_packed(model) == 2 and release_packed(model) == 0
    assert packed_call()[0] is not other
    packed_call(keep=False)  # a call without keep drops what was kept
    assert release_packed(model) == 0


def test_layers_made_under_inference_mode_are_packed_but_never_kept():
    with torch.inference_mode():  # inference tensors keep no version counter
        model = _model(torch.float32)
        x = torch.randn(2, 48)
        ref = model(x)
        with packed_linears(model, rows_hint=2, keep=True) as n:
            out = model(x)
    if not n:
        pytest.skip("oneDNN is not available")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert release_packed(model) == 0
