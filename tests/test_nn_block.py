"""RMSNorm, SwiGLU and the block's adaLN-Zero modulation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kinema.errors import KinemaError
from kinema.nn import (
    Block,
    RMSNorm,
    RotaryEmbedding,
    SwiGLU,
    Transformer,
    TransformerConfig,
    llama_hidden_dim,
)

DIM, COND = 32, 12


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_rmsnorm_formula_and_low_precision():
    norm = RMSNorm(8, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, 9.0))
    x = rand(3, 8)
    ref = x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt() * norm.weight
    torch.testing.assert_close(norm(x), ref)
    # fp16 squares of 300 overflow (> 65504); the fp32 statistics do not.
    big = torch.full((2, 8), 300.0, dtype=torch.float16)
    out = norm(big)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), norm.weight.expand(2, 8), atol=1e-2, rtol=1e-3)
    bf = norm(x.bfloat16())
    assert bf.dtype == torch.bfloat16
    torch.testing.assert_close(bf.float(), ref, atol=0.05, rtol=0.02)


def test_swiglu_width_rule_and_formula():
    assert llama_hidden_dim(4096) == 11008  # LLaMA-7B
    assert llama_hidden_dim(64, multiple_of=32) == 192
    mlp = SwiGLU(DIM, multiple_of=32)
    assert mlp.w1.out_features == llama_hidden_dim(DIM, 32) == 96
    x = rand(2, 5, DIM)
    ref = F.silu(x @ mlp.w1.weight.T) * (x @ mlp.w3.weight.T) @ mlp.w2.weight.T
    torch.testing.assert_close(mlp(x), ref)


def make_block(seed: int = 0) -> Block:
    torch.manual_seed(seed)
    return Block(DIM, 4, n_kv_heads=2, mlp_hidden=64, adaln_cond_dim=COND)


def rope_for(n: int):
    return RotaryEmbedding(DIM // 4)(torch.arange(n))


def randomise_adaln(block: Block) -> None:
    with torch.no_grad():
        block.adaln.weight.normal_(0, 0.3)
        block.adaln.bias.normal_(0, 0.3)


def test_zero_init_adaln_block_is_identity_and_modulation_gets_gradients():
    block = make_block()
    x = rand(2, 6, DIM, seed=1).requires_grad_()
    out = block(x, rope_for(6), cond=rand(2, COND, seed=2))
    assert torch.equal(out, x)
    out.pow(2).sum().backward()
    # adaLN-Zero: only the gates' producer gets gradient at init; everything else waits.
    assert block.adaln.weight.grad.abs().sum() > 0
    assert block.adaln.bias.grad.abs().sum() > 0
    assert block.attn.wqkv.weight.grad.abs().sum() == 0


def test_nonzero_cond_changes_output():
    block = make_block()
    randomise_adaln(block)
    x, rope = rand(2, 6, DIM, seed=1), rope_for(6)
    c1, c2 = rand(2, COND, seed=2), rand(2, COND, seed=3)
    out1 = block(x, rope, cond=c1)
    assert (out1 - x).abs().max() > 1e-2
    assert (block(x, rope, cond=c2) - out1).abs().max() > 1e-2
    with pytest.raises(KinemaError, match="pass cond"):
        block(x, rope)


def test_per_token_and_grouped_cond():
    block = make_block()
    randomise_adaln(block)
    x, rope = rand(2, 6, DIM, seed=1), rope_for(6)
    c = rand(2, COND, seed=2)
    per_sample = block(x, rope, cond=c)
    torch.testing.assert_close(block(x, rope, cond=c[:, None].expand(2, 6, COND)), per_sample)
    # Groups: tokens 0-1 "history" (group 0), tokens 2-5 "current" (group 1).
    groups = rand(2, 2, COND, seed=4)
    index = torch.tensor([0, 0, 1, 1, 1, 1])
    grouped = block(x, rope, cond=groups, cond_index=index)
    torch.testing.assert_close(grouped, block(x, rope, cond=groups[:, index]))
    assert (grouped - per_sample).abs().max() > 1e-2
    with pytest.raises(KinemaError, match="cond_index"):
        block(x, rope, cond=groups)


def test_adaln_transformer_starts_as_final_norm():
    torch.manual_seed(0)
    cfg = TransformerConfig(dim=DIM, n_layers=2, n_heads=4, adaln_cond_dim=COND, rope="3d")
    model = Transformer(cfg)
    x = rand(2, 8, DIM, seed=1)
    pos = torch.rand(8, 3)
    out = model(x, pos, cond=rand(2, COND, seed=2))
    torch.testing.assert_close(out, model.norm(x), atol=0, rtol=0)
    with pytest.raises(KinemaError, match="cond is required"):
        model(x, pos)


def test_adaln_block_follows_dit_formula():
    block = make_block()
    randomise_adaln(block)
    x, rope, c = rand(2, 6, DIM, seed=1), rope_for(6), rand(2, COND, seed=2)
    shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = block.adaln(F.silu(c))[:, None].chunk(
        6, dim=-1
    )
    h = x + gate_a * block.attn(block.attn_norm(x) * (1 + scale_a) + shift_a, rope)
    expected = h + gate_m * block.mlp(block.mlp_norm(h) * (1 + scale_m) + shift_m)
    torch.testing.assert_close(block(x, rope, cond=c), expected)
