"""Transformer core: config checks, init, masks, checkpointing, save/load round trip."""

from __future__ import annotations

import math

import pytest
import torch

from kinema.errors import KinemaError
from kinema.nn import Attention, RotaryEmbedding, Transformer, TransformerConfig

TINY = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, mlp_hidden=96)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def build(seed: int = 0, **kw) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(TransformerConfig(**{**TINY, **kw}))


def test_config_validation():
    with pytest.raises(KinemaError, match="divisible"):
        TransformerConfig(dim=30, n_heads=4)
    with pytest.raises(KinemaError, match="must divide"):
        TransformerConfig(dim=64, n_heads=4, n_kv_heads=3)
    with pytest.raises(KinemaError, match="'1d' or '3d'"):
        TransformerConfig(rope="2d")
    with pytest.raises(KinemaError, match="rope_axes_dim"):
        TransformerConfig(dim=64, n_heads=4, rope="3d", rope_axes_dim=(4, 4, 4))
    cfg = TransformerConfig(dim=64, n_heads=4, rope="3d", rope_axes_dim=[4, 6, 6])
    assert cfg.rope_axes_dim == (4, 6, 6) and cfg.resolved_axes_dim == (4, 6, 6)
    assert TransformerConfig(dim=64, n_heads=4, rope="3d").resolved_axes_dim == (4, 6, 6)


def test_init_is_seeded_and_scaled():
    a, b, c = build(0), build(0), build(1)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.layers[0].attn.wqkv.weight, c.layers[0].attn.wqkv.weight)
    big = build(0, dim=256, n_heads=4, n_kv_heads=None, n_layers=8, mlp_hidden=512)
    std = big.layers[3].attn.wqkv.weight.std().item()
    assert abs(std - 0.02) < 0.001
    for w in (big.layers[3].attn.wo.weight, big.layers[3].mlp.w2.weight):
        assert abs(w.std().item() - 0.02 / math.sqrt(16)) < 0.0005
    assert torch.equal(big.norm.weight, torch.ones(256))


def test_mask_is_true_means_attend_and_causality_holds():
    model = build()
    n = 10
    x, pos = rand(2, n, 64), torch.arange(n)
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    out = model(x, pos, causal)
    y = x.clone()
    y[:, 6:] = rand(2, n - 6, 64, seed=1)  # change the future
    out2 = model(y, pos, causal)
    torch.testing.assert_close(out2[:, :6], out[:, :6])
    assert (out2[:, 6:] - out[:, 6:]).abs().max() > 1e-3
    torch.testing.assert_close(model(x, pos, torch.ones(n, n, dtype=torch.bool)), model(x, pos))


def test_gqa_equals_mha_with_repeated_kv_heads():
    torch.manual_seed(0)
    gqa = Attention(64, 4, n_kv_heads=2)
    mha = Attention(64, 4)
    q, k, v = gqa.wqkv.weight.split([64, 32, 32])
    rep = lambda w: w.view(2, 16, 64).repeat_interleave(2, dim=0).reshape(64, 64)  # noqa: E731
    with torch.no_grad():
        mha.wqkv.weight.copy_(torch.cat([q, rep(k), rep(v)]))
        mha.wo.weight.copy_(gqa.wo.weight)
    x, rope = rand(2, 7, 64), RotaryEmbedding(16)(torch.arange(7))
    torch.testing.assert_close(gqa(x, rope), mha(x, rope))
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    torch.testing.assert_close(gqa(x, rope, causal), mha(x, rope, causal))
    per_head = torch.rand(2, 4, 7, 7, generator=torch.Generator().manual_seed(1)) < 0.7
    per_head |= torch.eye(7, dtype=torch.bool)  # every row attends somewhere
    torch.testing.assert_close(gqa(x, rope, per_head), mha(x, rope, per_head))
    assert (gqa(x, rope, per_head) - gqa(x, rope, causal)).abs().max() > 1e-3


def test_gradient_checkpointing_gives_same_gradients():
    x, pos = rand(2, 8, 64), torch.arange(8)
    grads = []
    for ckpt in (False, True):
        model = build(0, qk_norm=True).train()
        model.gradient_checkpointing = ckpt
        model(x, pos).square().mean().backward()
        grads.append([p.grad for p in model.parameters()])
    for g0, g1 in zip(*grads, strict=True):
        torch.testing.assert_close(g0, g1)


def test_save_load_round_trip(tmp_path):
    model = build(0, rope="3d", rope_axes_dim=(4, 6, 6), adaln_cond_dim=8, qk_norm=True).eval()
    with torch.no_grad():
        model.final_adaln.weight.normal_()  # non-trivial weights must survive
    model.setup_caches(1, 16)  # caches are not weights and must not be saved
    model.save_pretrained(tmp_path / "core")
    loaded = Transformer.from_pretrained(tmp_path / "core").eval()
    assert loaded.config == model.config
    assert loaded.layers[0].attn.kv_cache is None
    x, pos, cond = rand(2, 5, 64), torch.rand(5, 3), rand(2, 8, seed=1)
    torch.testing.assert_close(loaded(x, pos, cond=cond), model(x, pos, cond=cond), atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_rms_norm_equals_the_definition(dtype):
    from kinema.nn.norm import RMSNorm, reference_rms_norm

    norm = RMSNorm(96).to(dtype)
    with torch.no_grad():
        norm.weight.normal_(generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 17, 96, generator=torch.Generator().manual_seed(1)).to(dtype)
    out = norm(x)  # the fused path: same dtype as the weight
    ref = reference_rms_norm(x, norm.weight, norm.eps)
    assert out.dtype == dtype
    if dtype == torch.float32:
        assert torch.equal(out, ref)
    else:  # at most one bf16 rounding step apart
        torch.testing.assert_close(out, ref)
