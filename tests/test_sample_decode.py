"""The block decode loop: cached logits == the teacher-forced full forward, for NTP and NBP
block shapes; guidance, prompts, seeding, bf16 weights."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from kinema.errors import KinemaError
from kinema.lm import TokenLM
from kinema.sample import generate

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from lm_testing import COND, build  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def condition(model: TokenLM, b: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    c, g = model.config, torch.Generator().manual_seed(seed)
    _, h, w = c.latent_shape
    mask = torch.ones(b, 4, dtype=torch.bool)
    mask[0, 3:] = False  # sample 0's text is padded
    return {
        "label": torch.arange(b) % c.num_classes,
        "text": torch.randn(b, 4, c.text_dim, generator=g),
        "text_mask": mask,
        "cond_tokens": torch.randint(0, c.vocab_size, (b, c.cond_frames, h, w), generator=g),
    }


def run(model, b, **kw):
    """generate() plus the (B, L, V) logits it sampled each block from, stacked (B, n*L, V)."""
    steps, logits = [], []

    def record(step, block_logits, tokens):
        steps.append(step)
        logits.append(block_logits.clone())

    tokens = generate(model, b, callback=record, **kw)
    return tokens, torch.cat(logits, dim=1), steps


# (1,1,1) = NTP, (1,1,4) = NBP row block, (1,2,2) = spatial box, (2,2,1) = 2-frame block
@pytest.mark.parametrize("block_shape", [(1, 1, 1), (1, 1, 4), (1, 2, 2), (2, 2, 1)])
def test_cached_decoding_reproduces_the_full_forward(block_shape):
    model = build(**COND, latent_shape=(4, 4, 4), block_shape=block_shape)
    cond = condition(model)
    tokens, logits, steps = run(model, 2, **cond, seed=0)
    c = model.config
    assert tokens.shape == (2, 4, 4, 4) and tokens.dtype == torch.long
    assert steps == list(range(c.num_blocks))  # one forward per block: 64 / 16 / 16 / 16
    with torch.no_grad():
        full = model.logits(tokens, **cond)  # teacher-forced on what was sampled
    torch.testing.assert_close(logits, full, rtol=1e-4, atol=1e-4)
    assert model.transformer.layers[0].attn.kv_cache is None  # freed after the call


def test_unconditional_model_decodes():
    model = build(latent_shape=(2, 4, 4), block_shape=(1, 1, 4))
    tokens, logits, steps = run(model, 3, seed=1)
    assert model.config.prefix_len == 0 and len(steps) == 8
    with torch.no_grad():
        torch.testing.assert_close(logits, model.logits(tokens), rtol=1e-4, atol=1e-4)
    with pytest.raises(KinemaError, match="no condition"):
        generate(model, 1, cfg_scale=2.0)


def test_seeded_and_deterministic():
    model = build(**COND)
    cond = condition(model)
    a = generate(model, 2, **cond, seed=3, top_k=20, top_p=0.9, temperature=0.8)
    b = generate(model, 2, **cond, seed=3, top_k=20, top_p=0.9, temperature=0.8)
    c = generate(model, 2, **cond, seed=4, top_k=20, top_p=0.9, temperature=0.8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(5)
    d = generate(model, 2, **cond)
    torch.manual_seed(5)
    assert torch.equal(d, generate(model, 2, **cond))  # global RNG without a seed


def test_cfg_scale_one_is_conditional_and_zero_is_unconditional():
    model = build(**COND, block_shape=(1, 2, 2))
    cond = condition(model)
    plain = generate(model, 2, **cond, seed=0)
    assert torch.equal(generate(model, 2, **cond, seed=0, cfg_scale=1.0), plain)
    null = generate(model, 2, seed=0)  # no condition = the null condition
    assert torch.equal(generate(model, 2, **cond, seed=0, cfg_scale=0.0), null)
    assert not torch.equal(null, plain)
    # a real guidance scale mixes exactly uncond + s * (cond - uncond)
    tokens, logits, _ = run(model, 2, **cond, seed=0, cfg_scale=3.0)
    with torch.no_grad():
        c, u = model.logits(tokens, **cond), model.logits(tokens)
    torch.testing.assert_close(logits, u + 3.0 * (c - u), rtol=1e-4, atol=1e-4)


def test_greedy_decoding_is_the_argmax_of_the_full_forward():
    model = build(**COND)
    cond = condition(model)
    tokens = generate(model, 2, **cond, temperature=0.0)
    assert torch.equal(tokens, generate(model, 2, **cond, top_k=1, seed=9))
    with torch.no_grad():
        best = model.logits(tokens, **cond).argmax(-1)
    assert torch.equal(model.to_blocks(tokens).flatten(1), best)


@pytest.mark.parametrize("block_shape, frames", [((1, 1, 4), 1), ((2, 2, 1), 2)])
def test_prompt_frames_are_kept_and_continued(block_shape, frames):
    model = build(**COND, latent_shape=(4, 4, 4), block_shape=block_shape)
    cond = condition(model)
    prompt = torch.randint(0, 64, (2, frames, 4, 4), generator=torch.Generator().manual_seed(1))
    tokens, logits, steps = run(model, 2, **cond, prompt=prompt, seed=0)
    given = frames * 4 * 4 // model.config.block_len
    assert steps == list(range(given, model.config.num_blocks))
    assert torch.equal(tokens[:, :frames], prompt)
    with torch.no_grad():
        full = model.logits(tokens, **cond)[:, given * model.config.block_len :]
    torch.testing.assert_close(logits, full, rtol=1e-4, atol=1e-4)
    with pytest.raises(KinemaError, match="multiple of 2"):
        generate(
            build(**COND, latent_shape=(4, 4, 4), block_shape=(2, 2, 1)),
            2,
            prompt=prompt[:, :1],
            **cond,
        )
    with pytest.raises(KinemaError, match="prompt must be"):
        generate(model, 2, prompt=torch.zeros(2, 4, 4, 4, dtype=torch.long), **cond)


def test_bf16_weights_decode_like_the_bf16_full_forward():
    model = build(**COND, latent_shape=(2, 4, 4), block_shape=(1, 1, 4))
    cond = condition(model)
    freq = model.transformer.rope.inv_freq.clone()
    tokens, logits, _ = run(model, 2, **cond, seed=0, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert torch.equal(model.transformer.rope.inv_freq, freq)  # positions untouched
    with torch.no_grad():
        full = model.logits(tokens, **cond)
    # bf16 cached vs bf16 full forward: same math, different accumulation order
    assert (logits - full).abs().max() < 0.1 * full.abs().max()
    assert (logits.argmax(-1) == full.argmax(-1)).float().mean() > 0.9


def test_bf16_decoding_on_cpu_keeps_the_kv_cache_in_fp32_and_reuses_the_packing():
    model = build(**COND, latent_shape=(2, 4, 4), block_shape=(1, 1, 4))
    cond = condition(model)
    seen = []

    def record(step, block_logits, tokens):
        cache = model.transformer.layers[0].attn.kv_cache
        seen.append((cache.k.dtype, block_logits.dtype))

    a = generate(model, 2, **cond, seed=0, dtype=torch.bfloat16, callback=record)
    assert seen and all(d == (torch.float32, torch.float32) for d in seen)
    assert model.transformer.layers[0].attn.kv_cache is None  # freed afterwards
    kept = [vars(m).get("_kinema_packed") for m in model.modules()]
    b = generate(model, 2, **cond, seed=0, dtype=torch.bfloat16)
    assert torch.equal(a, b)  # the second call over the kept packing draws the same tokens
    assert [vars(m).get("_kinema_packed") for m in model.modules()] == kept


def test_packed_bf16_weights_decode_exactly_like_plain_bf16(monkeypatch):
    import kinema.nn.packed as packed

    model = build(**COND, latent_shape=(2, 4, 4), block_shape=(1, 1, 4))
    cond = condition(model)
    tokens, logits, _ = run(model, 2, **cond, seed=0, dtype=torch.bfloat16)
    if not packed.packing_available(model.head.weight):
        pytest.skip("oneDNN bf16 packing is not available on this CPU")
    monkeypatch.setattr(packed, "packing_available", lambda weight: False)
    plain_tokens, plain_logits, _ = run(model, 2, **cond, seed=0, dtype=torch.bfloat16)
    assert torch.equal(tokens, plain_tokens) and torch.equal(logits, plain_logits)


def test_packed_fp32_weights_decode_like_plain_fp32(monkeypatch):
    import kinema.nn.packed as packed

    model = build(**COND, latent_shape=(2, 4, 4), block_shape=(1, 1, 4))
    cond = condition(model)
    tokens, logits, _ = run(model, 2, **cond, seed=0)
    if not packed.packing_available(model.head.weight):
        pytest.skip("oneDNN fp32 packing is not available")
    monkeypatch.setattr(packed, "packing_available", lambda weight: False)
    plain_tokens, plain_logits, _ = run(model, 2, **cond, seed=0)
    # another fp32 summation order: logits agree to rounding, so the same tokens are drawn
    torch.testing.assert_close(logits, plain_logits, rtol=1e-4, atol=1e-4)
    assert torch.equal(tokens, plain_tokens)
