"""Pyramid Euler sampler: parity with diffusers at K = 1, exact Gaussian flows, jumps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from einops import rearrange

from kinema.errors import KinemaError
from kinema.flow import PyramidSchedule, latent_pyramid, upsample2x
from kinema.sample.flow import sample_pyramid


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def bcast(t):
    return t[:, None, None, None]


def toy_velocity(x, t, stage):
    """Deterministic, nonlinear in x and t."""
    return torch.tanh(x) * bcast(t / 1000) - 0.3 * x + 0.1


def test_single_stage_matches_diffusers_flow_match_euler():
    """K = 1 against diffusers' FlowMatchEulerDiscreteScheduler (shift 1, 1000 train steps).

    diffusers' default ``set_timesteps(n)`` spaces timesteps ``linspace(1000, 1, n)`` (its
    sigma_min is 1/1000) and then appends sigma 0, so its last step is shorter than the
    others. Our local sigmas are ``linspace(1, 0, n + 1)``; passing those n sigmas to
    ``set_timesteps`` makes diffusers use the same grid (shift 1 leaves them unchanged, the
    appended terminal sigma is 0), and its timesteps are ``1000 * sigma`` like our K = 1 map.
    """
    n, shape = 10, (2, 4, 8, 8)
    noise = torch.randn(shape, generator=gen(1))
    seen = []

    def velocity(x, t, stage):
        assert stage == 0 and x.dtype == torch.float32 and t.shape == (2,)
        seen.append(t[0].item())
        return toy_velocity(x, t, stage)

    ours = sample_pyramid(velocity, shape, PyramidSchedule(stages=1), [n], noise=noise)

    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    sched.set_timesteps(sigmas=np.linspace(1.0, 0.0, n + 1)[:-1].tolist())
    torch.testing.assert_close(sched.sigmas, torch.linspace(1, 0, n + 1), atol=1e-7, rtol=0)
    x = noise.clone()
    for t in sched.timesteps:
        x = sched.step(toy_velocity(x, t.expand(2), 0), t, x).prev_sample
    torch.testing.assert_close(torch.tensor(seen), sched.timesteps, atol=1e-4, rtol=0)
    torch.testing.assert_close(ours, x, atol=1e-5, rtol=0)
    assert not torch.allclose(ours, noise, atol=0.1)  # it moved


def gaussian_velocity(mu, s):
    """Exact rectified-flow velocity E[n - x | x_sigma] for data x ~ N(mu, s^2) (per
    element) and x_sigma = sigma*n + (1 - sigma)*x: with V = sigma^2 + (1 - sigma)^2 s^2,
    v = -mu + (sigma - (1 - sigma) s^2) / V * (x_sigma - (1 - sigma) mu)."""

    def velocity(x, t, stage):
        sigma = bcast(t / 1000).double()
        var = sigma**2 + (1 - sigma) ** 2 * s**2
        return (-mu + (sigma - (1 - sigma) * s**2) / var * (x - (1 - sigma) * mu)).float()

    return velocity


def test_single_stage_samples_a_gaussian():
    mu, s, n = 1.5, 0.5, 200  # Euler is first order: the std comes out ~0.7/n too small
    shape = (8000, 1, 2, 2)
    noise = torch.randn(shape, generator=gen(2))
    out = sample_pyramid(
        gaussian_velocity(mu, s), shape, PyramidSchedule(stages=1), [n], noise=noise
    )
    assert abs(float(out.mean()) - mu) < 0.01
    assert abs(float(out.std()) - s) < 0.01
    # the same Euler recursion written out: sample by sample to float precision
    x = noise.double()
    sig = np.linspace(1.0, 0.0, n + 1)
    for a, b in zip(sig[:-1], sig[1:], strict=True):
        var = a**2 + (1 - a) ** 2 * s**2
        x = x + (b - a) * (-mu + (a - (1 - a) * s**2) / var * (x - (1 - a) * mu))
    torch.testing.assert_close(out, x.float(), atol=1e-4, rtol=0)


def test_three_stages_jump_to_the_training_start_distribution():
    """Point-mass data x = mu (a fixed field): the exact velocity of stage k is known in
    closed form, and Euler follows the straight path exactly. So the state at each stage
    start must have the training-start statistics (mean (1 - s') Up(mu_{k-1}), white noise of
    std s'), the timesteps must follow the schedule and the result must be mu."""
    sched = PyramidSchedule()
    shape = (16_000, 1, 8, 8)
    mu = torch.randn(1, 1, 8, 8, generator=gen(3))
    mus = latent_pyramid(mu, 3)
    starts, ends = sched.start_sigmas, sched.end_sigmas
    first_states, calls = {}, []

    def velocity(x, t, stage):
        calls.append((stage, t[0].item(), x.shape[-1]))
        first_states.setdefault(stage, x.clone())
        sp, e = starts[stage], ends[stage]
        up = upsample2x(mus[stage - 1]) if stage else torch.zeros_like(mus[0])
        sigma_local = (t - sched.timestep(stage, 0.0)) / (
            sched.timestep(stage, 1.0) - sched.timestep(stage, 0.0)
        )
        r = bcast(sigma_local)
        mean = r * (1 - sp) * up + (1 - r) * (1 - e) * mus[stage]
        level = r * sp + (1 - r) * e  # noise std of the current state
        n = (x - mean) / level
        return (sp - e) * n + (1 - sp) * up - (1 - e) * mus[stage]  # start - end

    steps = [3, 4, 2]
    out = sample_pyramid(velocity, shape, sched, steps, generator=gen(4))
    assert out.shape == shape and out.dtype == torch.float32
    torch.testing.assert_close(out, mu.expand(shape), atol=1e-5, rtol=0)

    expected_calls = [
        (k, sched.timestep(k, float(sig)), 8 // sched.downscale(k))
        for k, n in enumerate(steps)
        for sig in np.linspace(1.0, 0.0, n + 1)[:-1]
    ]
    assert [(k, w) for k, _, w in calls] == [(k, w) for k, _, w in expected_calls]
    np.testing.assert_allclose(
        [t for _, t, _ in calls], [t for _, t, _ in expected_calls], atol=1e-3
    )

    for k in range(3):
        x = first_states[k]
        sp = starts[k]
        signal = (1 - sp) * upsample2x(mus[k - 1]) if k else torch.zeros_like(x[:1])
        assert (x.mean(0, keepdim=True) - signal).abs().max() < 5 * sp / shape[0] ** 0.5
        resid = rearrange(x - signal, "b c (h p) (w q) -> (b c h w) (p q)", p=2, q=2)
        cov = resid.T.cov()
        tol = 5 * sp**2 * (2 / resid.shape[0]) ** 0.5  # 5 standard errors
        assert (cov - sp**2 * torch.eye(4)).abs().max() < tol, (k, cov)


def test_sampler_is_seeded_and_keeps_fp32_state():
    shape = (2, 3, 8, 8)
    sched = PyramidSchedule()

    def low_precision(x, t, stage):
        assert x.dtype == torch.float32
        return toy_velocity(x, t, stage).bfloat16()

    a = sample_pyramid(low_precision, shape, sched, [2, 2, 2], generator=gen(5))
    b = sample_pyramid(low_precision, shape, sched, [2, 2, 2], generator=gen(5))
    c = sample_pyramid(low_precision, shape, sched, [2, 2, 2], generator=gen(6))
    assert a.dtype == torch.float32 and torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    ("shape", "steps", "noise", "match"),
    [
        ((2, 3, 8, 8), [2, 2], None, "steps must be 3"),
        ((2, 3, 8, 8), [2, 0, 2], None, "steps must be 3"),
        ((2, 3, 6, 8), [2, 2, 2], None, "multiples of 4"),
        ((3, 8, 8), [2, 2, 2], None, "shape must be"),
        ((2, 3, 8, 8), [2, 2, 2], torch.zeros(2, 3, 8, 4), "noise shape"),
    ],
)
def test_sampler_errors(shape, steps, noise, match):
    with pytest.raises(KinemaError, match=match):
        sample_pyramid(toy_velocity, shape, PyramidSchedule(), steps, noise=noise)
