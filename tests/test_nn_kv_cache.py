"""Static KV cache: in-place writes, and cached decoding == the uncached full forward."""

from __future__ import annotations

import pytest
import torch

from kinema.errors import KinemaError
from kinema.nn import KVCache, Transformer, TransformerConfig, grid_positions
from kinema.nn.kv_cache import decode_cache_dtype

PREFIX = 16
N_VIDEO = 128


def block_mask(prefix: int, n: int, block: int) -> torch.Tensor:
    """Prefix-LM + block-causal mask ``(S, S)``: the prefix sees itself, each block of
    ``block`` tokens sees the prefix, earlier blocks and itself (block 1 = causal)."""
    group = torch.cat([torch.zeros(prefix), 1 + torch.arange(n) // block])
    return group[None, :] <= group[:, None]


def tiny_core(seed: int = 0, **kw) -> Transformer:
    torch.manual_seed(seed)
    cfg = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, mlp_hidden=128, init_std=0.1)
    return Transformer(TransformerConfig(**{**cfg, **kw})).eval()


def decode_in_steps(model, x, pos, mask, step, cond=None):
    """Prefill the prefix, then feed ``step`` tokens per forward; returns (B, S, D)."""
    starts = [0, *range(PREFIX, x.shape[1], step)]
    ends = [*starts[1:], x.shape[1]]
    outs = []
    for a, b in zip(starts, ends, strict=True):
        idx = torch.arange(a, b)
        c = None if cond is None else cond[:, a:b]
        outs.append(model(x[:, a:b], pos[..., a:b, :] if pos.ndim > 1 else pos[a:b], mask, idx, c))
    return torch.cat(outs, dim=1)


def test_update_writes_in_place_at_index():
    cache = KVCache(2, 3, 10, 4, dtype=torch.bfloat16)
    k_ptr, v_ptr = cache.k.data_ptr(), cache.v.data_ptr()
    k, v = torch.randn(2, 3, 2, 4), torch.randn(2, 3, 2, 4)
    k_all, v_all = cache.update(torch.tensor([7, 2]), k, v)
    assert k_all is cache.k and v_all is cache.v
    assert (cache.k.data_ptr(), cache.v.data_ptr()) == (k_ptr, v_ptr)
    assert cache.k.dtype == torch.bfloat16
    assert torch.equal(cache.k[:, :, 7], k[:, :, 0].bfloat16())
    assert torch.equal(cache.v[:, :, 2], v[:, :, 1].bfloat16())
    written = torch.zeros(10, dtype=torch.bool)
    written[[2, 7]] = True
    assert cache.k[:, :, ~written].abs().sum() == 0
    assert len(dict(cache.state_dict())) == 0  # never saved with the model
    cache.reset()
    assert cache.k.abs().sum() == 0 and cache.v.abs().sum() == 0


@pytest.mark.parametrize(
    "block, step, extra_slots",
    [(1, 1, 0), (1, 16, 8), (1, 64, 0), (16, 16, 0), (16, 64, 8), (4, 16, 0)],
    ids=["causal-1", "causal-16", "causal-64", "block16-16", "block16-64", "block4-16"],
)
def test_cached_decode_equals_full_forward_fp32(block, step, extra_slots):
    model = tiny_core()
    s = PREFIX + N_VIDEO
    x = torch.randn(2, s, 64, generator=torch.Generator().manual_seed(1))
    pos = torch.arange(s)
    mask = block_mask(PREFIX, N_VIDEO, block)
    with torch.no_grad():
        full = model(x, pos, mask)
        # extra_slots: a cache longer than the sequence; the mask says which slots to read.
        model.setup_caches(2, s + extra_slots)
        ptrs = [layer.attn.kv_cache.k.data_ptr() for layer in model.layers]
        cached = decode_in_steps(model, x, pos, mask, step)
    assert ptrs == [layer.attn.kv_cache.k.data_ptr() for layer in model.layers]
    assert (cached - full).abs().max().item() < 1e-5
    # Guard against a vacuous pass: the mask really changes the result.
    with torch.no_grad():
        assert (model(x, pos, None) - full).abs().max().item() > 1e-2


def test_decode_cache_dtype():
    assert decode_cache_dtype(torch.bfloat16, "cpu") == torch.float32
    assert decode_cache_dtype(torch.float32, "cpu") == torch.float32
    assert decode_cache_dtype(torch.bfloat16, "meta") == torch.bfloat16  # not a CPU


@pytest.mark.parametrize("cache_dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("block, step", [(1, 1), (16, 16)])
def test_cached_decode_bf16(block, step, cache_dtype):
    """bf16 weights over a bf16 cache (the default) or an fp32 one (decode_cache_dtype on a
    CPU: the attention then runs in fp32); the layer outputs stay bf16 either way."""
    model = tiny_core().to(torch.bfloat16)
    n_video = 48  # bf16 matmuls are slow on CPU
    s = PREFIX + n_video
    x = torch.randn(2, s, 64, generator=torch.Generator().manual_seed(1)).bfloat16()
    pos = torch.arange(s)
    mask = block_mask(PREFIX, n_video, block)
    with torch.no_grad():
        full = model(x, pos, mask).float()
        model.setup_caches(2, s, dtype=None if cache_dtype == torch.bfloat16 else cache_dtype)
        assert model.layers[0].attn.kv_cache.k.dtype == cache_dtype
        cached = decode_in_steps(model, x, pos, mask, step)
        # the fp32 reference: the same bf16-rounded weights and inputs, all in fp32
        ref = tiny_core().to(torch.bfloat16).float()(x.float(), pos, mask)
    assert cached.dtype == torch.bfloat16
    assert (cached.float() - full).abs().max().item() < 0.1  # outputs have unit RMS
    if cache_dtype == torch.float32:  # no further from fp32 than the all-bf16 forward is
        assert (cached.float() - ref).abs().max() <= 1.5 * (full - ref).abs().max()


def test_cached_3d_rope_fractional_positions_and_per_token_cond():
    """DiT-like use: 3D fractional positions, per-token adaLN cond, frame-causal mask."""
    model = tiny_core(rope="3d", adaln_cond_dim=8, qk_norm=True)
    with torch.no_grad():  # leave adaLN-Zero so the blocks do something
        for name, p in model.named_parameters():
            if "adaln" in name:
                p.normal_(0, 0.2)
    frames, h, w = 3, 4, 4
    low = grid_positions(1, 2, 2, scale=(1, 2, 2))  # a half-resolution history frame
    full_res = grid_positions(frames, h, w, offset=(1, 0, 0))
    pos = torch.cat([low, full_res])[None].expand(2, -1, -1)  # (B, N, 3)
    group = torch.cat([torch.zeros(4), 1 + torch.arange(frames * h * w) // (h * w)])
    mask = (group[None, :] <= group[:, None])[None, None]  # (1, 1, S, S)
    s = pos.shape[1]
    x = torch.randn(2, s, 64, generator=torch.Generator().manual_seed(5))
    cond = torch.randn(2, s, 8, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        full = model(x, pos, mask, cond=cond)
        model.setup_caches(2, s)
        outs = []
        for a, b in [(0, 4), (4, 20), (20, 36), (36, 52)]:  # history, then frame by frame
            idx = torch.arange(a, b)
            outs.append(model(x[:, a:b], pos[:, a:b], mask, idx, cond[:, a:b]))
    assert (torch.cat(outs, 1) - full).abs().max().item() < 1e-5


def test_cache_mode_errors():
    model = tiny_core()
    x, pos = torch.randn(1, 4, 64), torch.arange(4)
    mask = torch.ones(4, 4, dtype=torch.bool).tril()
    with pytest.raises(KinemaError, match="setup_caches"):
        model(x, pos, mask, torch.arange(4))
    model.setup_caches(1, 8)
    with pytest.raises(KinemaError, match="needs a mask"):
        model(x, pos, None, torch.arange(4))
    with pytest.raises(KinemaError, match=r"\(S, S\)"):
        model(x, pos, mask[None], torch.arange(4))
    with pytest.raises(KinemaError, match="bool"):
        model(x, pos, mask.float(), torch.arange(4))
    with pytest.raises(KinemaError, match="KV cache holds 8"):
        model(x, pos, torch.ones(9, 9, dtype=torch.bool), torch.arange(4))
    model.clear_caches()
    assert model.layers[0].attn.kv_cache is None
