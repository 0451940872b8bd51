"""Vectorised token sampling: greedy limits, filters, the sampled distribution, seeding."""

from __future__ import annotations

import pytest
import torch

from kinema.errors import KinemaError
from kinema.sample import cfg_combine, filter_logits, sample_logits
from kinema.sample.sampling import sample_cdf


def rand_logits(*shape, seed=0, scale=3.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_greedy_limits_equal_argmax():
    logits = rand_logits(4, 16, 50)  # (B, L, V)
    best = logits.argmax(-1)
    assert torch.equal(sample_logits(logits, temperature=0.0), best)
    for seed in range(3):
        assert torch.equal(sample_logits(logits, top_k=1, generator=gen(seed)), best)
        assert torch.equal(sample_logits(logits, top_p=1e-6, generator=gen(seed)), best)
        assert torch.equal(sample_logits(logits, temperature=1e-4, generator=gen(seed)), best)
    assert not torch.equal(sample_logits(logits, generator=gen(0)), best)  # sampling samples


def test_filters_keep_the_right_sets():
    probs = torch.tensor([0.05, 0.5, 0.3, 0.15])
    logits = probs.log()
    keep = lambda x: torch.isfinite(x).nonzero().flatten().tolist()  # noqa: E731
    assert keep(filter_logits(logits, top_k=2)) == [1, 2]
    assert keep(filter_logits(logits, top_p=0.5)) == [1]  # 0.5 already reaches 0.5
    assert keep(filter_logits(logits, top_p=0.6)) == [1, 2]
    assert keep(filter_logits(logits, top_p=0.9)) == [1, 2, 3]
    assert keep(filter_logits(logits, top_p=1.0)) == [0, 1, 2, 3]
    assert keep(filter_logits(logits, top_k=2, top_p=0.99)) == [1, 2]
    assert torch.equal(filter_logits(logits), logits)
    # rows are independent: each row of a batch is filtered on its own
    out = filter_logits(torch.stack([logits, logits.roll(1)])[:, None], top_p=0.6)  # (2, 1, V)
    assert keep(out[0, 0]) == [1, 2] and keep(out[1, 0]) == [2, 3]


def test_sampled_frequencies_follow_the_filtered_softmax():
    logits = torch.tensor([1.0, 0.2, -0.5, 2.0, 0.0, -3.0])
    n = 40_000
    rows = logits.expand(n, 6)  # many independent rows in one vectorised call
    for temperature, top_k, top_p in [
        (1.0, None, None),
        (0.5, None, None),
        (1.5, 3, None),
        (1.0, None, 0.8),
    ]:
        draws = sample_logits(rows, temperature, top_k, top_p, generator=gen(1))
        freq = torch.bincount(draws, minlength=6).float() / n
        expected = filter_logits(logits / temperature, top_k, top_p).softmax(-1)
        assert (freq - expected).abs().max() < 0.012, (temperature, top_k, top_p, freq)
        assert (freq[expected == 0] == 0).all()


def test_two_level_cdf_is_the_one_level_inverse_cdf():
    # V = 700 spans three 256-id chunks (the last one padded); whole chunks and scattered ids
    # are masked. With the same uniform numbers, the two-level search must pick the id the
    # brute-force search over the full running sum picks.
    n, v = 4000, 700
    logits = rand_logits(n, v, seed=3)
    logits[:, 256:512] = float("-inf")  # a whole chunk without mass
    logits[:, ::7] = float("-inf")
    logits[:, 699] = float("-inf")  # the last real id, before the padding
    before = logits.clone()
    draws = sample_cdf(logits, gen(5))
    assert torch.equal(logits, before)  # the caller's logits are not overwritten
    u = torch.rand(n, 1, generator=gen(5))
    w = (logits - logits.amax(-1, keepdim=True)).exp().double()
    cdf = w.cumsum(-1)
    brute = torch.searchsorted(cdf, u.double() * cdf[:, -1:], right=True).squeeze(-1)
    assert torch.isfinite(logits.gather(-1, draws[:, None])).all()  # never a masked id
    assert (draws == brute).float().mean() > 0.999  # differ only at float-rounding ties
    # bf16 logits (the decode loop's): the inverse CDF of the bf16 values
    half = logits.bfloat16()
    w = (half.double() - half.double().amax(-1, keepdim=True)).exp()
    cdf = w.cumsum(-1)
    brute = torch.searchsorted(cdf, u.double() * cdf[:, -1:], right=True).squeeze(-1)
    assert (sample_cdf(half, gen(5)) == brute).float().mean() > 0.999


def test_same_seed_same_tokens():
    logits = rand_logits(3, 4, 100, scale=1.0)
    a = sample_logits(logits, 0.9, 20, 0.95, generator=gen(7))
    b = sample_logits(logits, 0.9, 20, 0.95, generator=gen(7))
    c = sample_logits(logits, 0.9, 20, 0.95, generator=gen(8))
    assert a.shape == (3, 4) and a.dtype == torch.long
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_cfg_combine():
    cond, uncond = rand_logits(2, 3, 5, seed=1), rand_logits(2, 3, 5, seed=2)
    both = torch.cat([cond, uncond])
    torch.testing.assert_close(cfg_combine(both, 1.0), cond)
    torch.testing.assert_close(cfg_combine(both, 0.0), uncond)
    torch.testing.assert_close(cfg_combine(both, 3.0), uncond + 3.0 * (cond - uncond))


def test_bad_options():
    logits = rand_logits(2, 5)
    with pytest.raises(KinemaError, match="temperature"):
        sample_logits(logits, temperature=-1.0)
    with pytest.raises(KinemaError, match="top_k"):
        sample_logits(logits, top_k=0)
    with pytest.raises(KinemaError, match="top_p"):
        sample_logits(logits, top_p=1.5)
