"""Pyramidal flow math: block noise, pyramids, stage sigmas, jumps, targets, timesteps, tokens."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from kinema.errors import KinemaError
from kinema.flow import (
    PyramidSchedule,
    block_noise,
    latent_pyramid,
    noise_pyramid,
    token_count,
    upsample2x,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).mean() / (a.std() * b.std()))


def blocks_of(x):
    """(..., H, W) -> (N, 4): one row per 2x2 block, pixels row-major."""
    return rearrange(x, "... (h p) (w q) -> (... h w) (p q)", p=2, q=2)


# --- block noise -------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [1 / 3, 0.2, 0.0])
def test_block_noise_covariance(gamma):
    n = block_noise((4, 128, 128), gamma=gamma, generator=gen(1))  # 16,384 blocks
    b = blocks_of(n)
    cov = b.T.cov()  # (4, 4)
    expected = (1 + gamma) * torch.eye(4) - gamma * torch.ones(4, 4)
    assert (cov - expected).abs().max() < 0.04, cov
    assert b.mean().abs() < 0.02
    # block sums have variance 4 (1 - 3 gamma); exactly zero at gamma = 1/3
    sums = b.sum(-1)
    if gamma == 1 / 3:
        assert sums.abs().max() < 1e-5
    else:
        assert abs(float(sums.var()) - 4 * (1 - 3 * gamma)) < 0.1 * 4 * (1 - 3 * gamma)


def test_block_noise_blocks_are_independent():
    n = block_noise((4, 128, 128), generator=gen(2))
    # right-hand pixel of a block vs left-hand pixel of the next block (adjacent pixels)
    assert abs(corr(n[..., 1:-1:2], n[..., 2::2])) < 0.03
    assert abs(corr(n[..., 1:-1:2, :], n[..., 2::2, :])) < 0.03
    # same position in horizontally / vertically neighbouring blocks
    assert abs(corr(n[..., 0:-2:2], n[..., 2::2])) < 0.03
    assert abs(corr(n[..., 0:-2:2, :], n[..., 2::2, :])) < 0.03
    # within a block the correlation is -1/3
    assert abs(corr(n[..., 0::2], n[..., 1::2]) + 1 / 3) < 0.03


def test_block_noise_shape_dtype_device_seed():
    for shape, dtype in [((2, 3, 4, 6), torch.float64), ((1, 2, 3, 8, 2), torch.bfloat16)]:
        n = block_noise(shape, generator=gen(0), device="cpu", dtype=dtype)
        assert n.shape == shape and n.dtype == dtype and n.device.type == "cpu"
    a = block_noise((3, 8, 8), generator=gen(5))
    assert a.dtype == torch.float32
    assert torch.equal(a, block_noise((3, 8, 8), generator=gen(5)))
    assert not torch.equal(a, block_noise((3, 8, 8), generator=gen(6)))


@pytest.mark.parametrize("shape", [(3, 5, 4), (3, 4, 7), (4,), (2, 0, 4)])
def test_block_noise_bad_shape(shape):
    with pytest.raises(KinemaError, match="H and W even"):
        block_noise(shape)


def test_block_noise_bad_gamma():
    with pytest.raises(KinemaError, match="gamma"):
        block_noise((4, 4), gamma=0.5)


# --- pyramids --------------------------------------------------------------------------


def test_noise_pyramid_unit_variance_and_white():
    noise = torch.randn(64, 4, 64, 64, generator=gen(3))
    levels = noise_pyramid(noise, 4)
    assert [lv.shape[-1] for lv in levels] == [8, 16, 32, 64]
    assert torch.equal(levels[-1], noise)
    for lv in levels:
        assert abs(float(lv.var()) - 1) < 0.03, float(lv.var())
        assert abs(float(lv.mean())) < 0.02
        assert abs(corr(lv[..., :-1], lv[..., 1:])) < 0.03  # still iid across pixels


def test_latent_pyramid_is_repeated_bilinear_downsampling():
    x = torch.randn(2, 3, 16, 24, generator=gen(4))
    levels = latent_pyramid(x, 3)
    ref = [x]
    for _ in range(2):
        ref.append(F.interpolate(ref[-1], scale_factor=0.5, mode="bilinear", align_corners=False))
    for got, want in zip(levels, ref[::-1], strict=True):
        torch.testing.assert_close(got, want)
    assert len(latent_pyramid(x, 1)) == 1
    with pytest.raises(KinemaError, match="multiples of 4"):
        latent_pyramid(torch.zeros(1, 1, 6, 8), 3)


# --- schedule --------------------------------------------------------------------------


def test_stage_sigmas_and_jump_coefficients():
    s = PyramidSchedule()
    assert s.start_sigmas == pytest.approx((1.0, 0.8, 0.5), abs=1e-12)
    assert s.end_sigmas == pytest.approx((2 / 3, 1 / 3, 0.0), abs=1e-12)
    assert s.end_sigmas[-1] == 0.0
    assert s.weights == (1.0, 2.0, 1.0)
    a1, b1 = s.jump(1)
    a2, b2 = s.jump(2)
    assert (round(a1, 3), round(b1, 3)) == (0.600, 0.693)
    assert (round(a2, 3), round(b2, 3)) == (0.750, 0.433)
    # the g = 1/3 closed forms of ALGORITHMS.md
    for k, s0 in [(1, 2 / 3), (2, 1 / 3)]:
        a, b = s.jump(k)
        assert a == pytest.approx(1 / (1 + s0)) and b == pytest.approx(math.sqrt(3) * s0 / (1 + s0))
    # K = 1 is plain rectified flow; K = 2 by the general formula
    one = PyramidSchedule(stages=1)
    assert one.start_sigmas == (1.0,) and one.end_sigmas == (0.0,) and one.weights == (1.0,)
    two = PyramidSchedule(stages=2)
    assert two.start_sigmas[1] == pytest.approx(1 - 0.5 / (2 * 0.5 + 0.5))
    assert two.weights == (1.0, 1.0)


@pytest.mark.parametrize("stage", [1, 2])
def test_jump_lands_on_the_next_stage_start(stage):
    """End of stage k-1, nearest-upsampled and renoised with (a, b) and block noise, has the
    statistics of the training start of stage k: mean (1 - s') Up(x_{k-1}), white noise of
    variance s'^2."""
    s = PyramidSchedule()
    n = 20_000
    x = torch.randn(1, 1, 8, 8, generator=gen(7))
    x_prev = latent_pyramid(x, 3)[stage - 1]  # (1, 1, h, w) at stage k-1
    noise_prev = noise_pyramid(torch.randn(n, 1, 8, 8, generator=gen(8)), 3)[stage - 1]
    e = s.end_sigmas[stage - 1]
    end = e * noise_prev + (1 - e) * x_prev  # (n, 1, h, w)
    a, b = s.jump(stage)
    up = upsample2x(end)
    out = a * up + b * block_noise(up.shape, generator=gen(9))
    sp = s.start_sigmas[stage]
    signal = (1 - sp) * upsample2x(x_prev)
    assert (out.mean(0, keepdim=True) - signal).abs().max() < 0.03
    resid = blocks_of(out - signal)  # (n * blocks, 4)
    cov = resid.T.cov()
    assert (cov - sp**2 * torch.eye(4)).abs().max() < 0.03, cov
    # without block noise the upsampled noise stays correlated inside each block
    plain = blocks_of(a * up + b * torch.randn(up.shape, generator=gen(9)) - signal)
    assert plain.T.cov()[0, 1] > 0.05


def reference_target(x, noise, stage, r, starts, ends):
    """Independent evaluation of the ALGORITHMS.md formulas for (B, C, H, W) latents."""
    k_stages = len(starts)

    def down(t, times):
        for _ in range(times):
            t = F.interpolate(t, scale_factor=0.5, mode="bilinear", align_corners=False)
        return t

    drop = k_stages - 1 - stage
    x_k, n_k = down(x, drop), down(noise, drop) * 2**drop
    end = x_k if stage == k_stages - 1 else ends[stage] * n_k + (1 - ends[stage]) * x_k
    if stage == 0:
        start = n_k
    else:
        up = F.interpolate(down(x, drop + 1), scale_factor=2, mode="nearest")
        start = starts[stage] * n_k + (1 - starts[stage]) * up
    rb = r[:, None, None, None]
    return rb * start + (1 - rb) * end, start - end


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_training_target_matches_the_formulas(stage):
    s = PyramidSchedule()
    x = torch.randn(2, 3, 16, 24, generator=gen(10))
    noise = torch.randn(2, 3, 16, 24, generator=gen(11))
    r = torch.tensor([0.3, 0.9])
    x_t, target, t = s.training_target(x, noise, stage, r)
    want_x, want_v = reference_target(x, noise, stage, r, (1.0, 0.8, 0.5), (2 / 3, 1 / 3, 0.0))
    f = 2 ** (2 - stage)
    assert x_t.shape == target.shape == (2, 3, 16 // f, 24 // f)
    torch.testing.assert_close(x_t, want_x)
    torch.testing.assert_close(target, want_v)
    borders = [1000.0, 1000 * (1 - (1 / 3) / 1.3), 1000 * (1 - (1 / 3 + 0.8 - 1 / 3) / 1.3), 0.0]
    hi, lo = borders[stage], borders[stage + 1]
    torch.testing.assert_close(t, lo + r * (hi - lo))
    assert t.dtype == torch.float32
    # videos (B, C, T, H, W): frame by frame the same as images
    xv, nv = torch.stack([x, x.flip(0)], 2), torch.stack([noise, -noise], 2)
    vx_t, v_target, _ = s.training_target(xv, nv, stage, r)
    assert vx_t.shape == (2, 3, 2, 16 // f, 24 // f)
    torch.testing.assert_close(vx_t[:, :, 0], x_t)
    torch.testing.assert_close(v_target[:, :, 1], s.training_target(x.flip(0), -noise, stage, r)[1])


def test_single_stage_is_rectified_flow():
    s = PyramidSchedule(stages=1)
    x, noise = torch.randn(3, 2, 5, 7), torch.randn(3, 2, 5, 7)  # any size works with K = 1
    r = torch.tensor([0.0, 0.25, 1.0])
    x_t, target, t = s.training_target(x, noise, 0, r)
    torch.testing.assert_close(
        x_t, r[:, None, None, None] * noise + (1 - r[:, None, None, None]) * x
    )
    torch.testing.assert_close(target, noise - x)
    torch.testing.assert_close(t, 1000 * r)


def test_training_target_errors():
    s = PyramidSchedule()
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(KinemaError, match="stage must be in"):
        s.training_target(x, x, 3, torch.zeros(2))
    with pytest.raises(KinemaError, match="noise shape"):
        s.training_target(x, torch.zeros(2, 1, 8, 4), 0, torch.zeros(2))
    with pytest.raises(KinemaError, match="r must have shape"):
        s.training_target(x, x, 0, torch.zeros(3))
    with pytest.raises(KinemaError, match="multiples of 4"):
        s.training_target(torch.zeros(2, 1, 6, 8), torch.zeros(2, 1, 6, 8), 0, torch.zeros(2))


def test_timestep_map_monotone_continuous_endpoints():
    s = PyramidSchedule()
    assert s.timestep(0, 1.0) == 1000.0 and s.timestep(2, 0.0) == 0.0
    for k in range(2):
        assert s.timestep(k, 0.0) == s.timestep(k + 1, 1.0)  # continuous, exactly
    # stage spans proportional to flow distance: 1000 -> 743.6 -> 384.6 -> 0 (official
    # discrete grid: 1000 -> 744 -> 386 -> 1)
    assert s.timestep(1, 1.0) == pytest.approx(1000 * (1 - 1 / 3.9))
    assert s.timestep(2, 1.0) == pytest.approx(1000 * 0.5 / 1.3)
    assert abs(s.timestep(1, 1.0) - 744) < 1 and abs(s.timestep(2, 1.0) - 386) < 2
    sig = torch.linspace(1, 0, 101, dtype=torch.float64)
    path = torch.cat([s.timestep(k, sig) for k in range(3)])
    assert (path.diff() <= 0).all() and (path.diff()[:100] < 0).all()
    assert PyramidSchedule(stages=1).timestep(0, 0.37) == pytest.approx(370.0)
    assert PyramidSchedule(stages=2, num_train_timesteps=10).timestep(1, 0.0) == 0.0


def test_sample_stage_follows_weights():
    s = PyramidSchedule()
    g = gen(12)
    draws = torch.tensor([s.sample_stage(g) for _ in range(4000)])
    freq = torch.bincount(draws, minlength=3).float() / 4000
    assert (freq - torch.tensor([0.25, 0.5, 0.25])).abs().max() < 0.03
    only_last = PyramidSchedule(stage_weights=(0, 0, 1))
    assert {only_last.sample_stage(g) for _ in range(20)} == {2}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"stages": 0}, "stages"),
        ({"gamma": 0.5}, "gamma"),
        ({"gamma": 0.0}, "gamma"),
        ({"stage_weights": (1, 2)}, "stage_weights"),
        ({"stage_weights": (1, -1, 1)}, "stage_weights"),
        ({"num_train_timesteps": 0}, "num_train_timesteps"),
    ],
)
def test_schedule_validation(kwargs, field):
    with pytest.raises(KinemaError, match=field) as err:
        PyramidSchedule(**kwargs)
    assert "\n" not in str(err.value)


def test_stage_range_errors():
    s = PyramidSchedule()
    with pytest.raises(KinemaError, match="jump stage"):
        s.jump(0)
    with pytest.raises(KinemaError, match="stage must be in"):
        s.timestep(3, 0.5)
    assert s.downscale(0) == 4 and s.downscale(2) == 1


# --- token budget ----------------------------------------------------------------------


def test_token_count_paper_numbers():
    assert token_count(241, 768, 1280, pyramid=False) == 119_040
    assert token_count(241, 768, 1280) == 3_840 + 3_840 + 960 + 28 * 240 == 15_360


def test_token_count_small_cases():
    # 17 frames at 128x128 with a 4x time VAE: 5 latent frames of 16x16 -> 8x8 = 64 tokens
    assert token_count(17, 128, 128, vae_temporal=4, pyramid=False) == 5 * 64
    # last frame 64 + history 64 + 16 + 4 (stage 0) + 1 older at stage 0 (4)
    assert token_count(17, 128, 128, vae_temporal=4) == 64 + 64 + 16 + 4 + 4
    assert token_count(1, 128, 128) == 64  # one image: no history
    assert token_count(9, 128, 128) == 64 + 64  # one history frame at full resolution
    assert token_count(17, 128, 128, vae_temporal=4, stages=1) == 5 * 64  # K = 1 = full


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((240, 768, 1280), {}, "1 \\+ 8\\*k, e.g. 233 or 241"),
        ((0, 768, 1280), {}, "frames must be >= 1"),
        ((241, 760, 1280), {}, "multiples of 64"),
        ((241, 32, 32), {}, "multiples of 64"),
        ((241, 40, 48), {"pyramid": False}, "multiples of 16"),
        ((241, 768, 1280), {"patch": 0}, "patch"),
        ((241, 768, 1280), {"stages": 0}, "stages"),
    ],
)
def test_token_count_errors(args, kwargs, match):
    with pytest.raises(KinemaError, match=match):
        token_count(*args, **kwargs)
