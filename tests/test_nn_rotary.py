"""Rotary embedding: exact formula, relative-position property, 3D split, fractional positions."""

from __future__ import annotations

import pytest
import torch

from kinema.errors import KinemaError
from kinema.nn import RotaryEmbedding, apply_rotary, default_axes_dim, grid_positions


def reference_rotary(x: torch.Tensor, pos: torch.Tensor, theta: float) -> torch.Tensor:
    """Brute force in float64 complex numbers: channel i pairs with i + d/2 (HF rotate_half),
    the pair ``x_i + j x_{i+d/2}`` is multiplied by ``exp(j pos theta^(-2i/d))``.
    ``x (B, H, N, d)``, ``pos (N,)``."""
    d = x.shape[-1]
    x = x.double()
    z = torch.complex(x[..., : d // 2], x[..., d // 2 :])
    freq = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = z * torch.polar(torch.ones(()).double(), pos.double()[:, None] * freq)
    return torch.cat([z.real, z.imag], dim=-1)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_1d_matches_complex_formula_at_fractional_positions():
    rope = RotaryEmbedding(32, theta=500.0)
    x = rand(2, 3, 20, 32)
    pos = torch.rand(20, generator=torch.Generator().manual_seed(1)) * 50
    out = apply_rotary(x, rope(pos))
    torch.testing.assert_close(out.double(), reference_rotary(x, pos, 500.0), atol=1e-5, rtol=0)


def test_1d_scores_depend_only_on_relative_position():
    rope = RotaryEmbedding(64)
    q, k = rand(1, 2, 12, 64, seed=1), rand(1, 2, 12, 64, seed=2)
    pos = torch.arange(12, dtype=torch.float32) * 3.0

    def scores(shift: float) -> torch.Tensor:
        r = rope(pos + shift)
        return apply_rotary(q, r) @ apply_rotary(k, r).transpose(-1, -2)

    base = scores(0.0)
    for shift in (1.0, 13.25, 100.0):
        torch.testing.assert_close(scores(shift), base, atol=2e-4, rtol=1e-4)
    # ... and they do depend on the relative position.
    r0, r1 = rope(pos), rope(pos * 2)
    moved = apply_rotary(q, r0) @ apply_rotary(k, r1).transpose(-1, -2)
    assert (moved - base).abs().max() > 0.1


def test_fractional_positions_compose():
    """Rotations compose: rotating by 0.5 twice equals rotating by 1 (and 0.3 + 1.45)."""
    rope = RotaryEmbedding(16)
    x = rand(1, 1, 4, 16)
    half = torch.full((4,), 0.5)
    torch.testing.assert_close(
        apply_rotary(apply_rotary(x, rope(half)), rope(half)),
        apply_rotary(x, rope(torch.ones(4))),
        atol=1e-6,
        rtol=0,
    )
    a, b = torch.full((4,), 0.3), torch.full((4,), 1.45)
    torch.testing.assert_close(
        apply_rotary(apply_rotary(x, rope(a)), rope(b)),
        apply_rotary(x, rope(a + b)),
        atol=1e-6,
        rtol=0,
    )
    assert (apply_rotary(x, rope(half)) - apply_rotary(x, rope(torch.ones(4)))).abs().max() > 1e-2


@pytest.mark.parametrize("axes_dim", [None, (4, 6, 6), (2, 8, 6)])
def test_3d_equals_1d_per_axis_on_head_dim_slices(axes_dim):
    head_dim = 16
    dims = axes_dim or default_axes_dim(head_dim)
    rope3 = RotaryEmbedding(head_dim, theta=100.0, axes_dim=dims)
    x = rand(2, 3, 10, head_dim)
    pos = torch.rand(2, 10, 3, generator=torch.Generator().manual_seed(3)) * 20  # (B, N, 3)
    out = apply_rotary(x, rope3(pos))
    expected, start = [], 0
    for axis, d in enumerate(dims):
        rope1 = RotaryEmbedding(d, theta=100.0)
        expected.append(apply_rotary(x[..., start : start + d], rope1(pos[..., axis])))
        start += d
    torch.testing.assert_close(out, torch.cat(expected, dim=-1), atol=1e-6, rtol=0)


def test_3d_relative_per_axis_and_unbatched_positions():
    rope = RotaryEmbedding(24, axes_dim=(8, 8, 8))
    q, k = rand(1, 1, 8, 24, seed=4), rand(1, 1, 8, 24, seed=5)
    pos = grid_positions(2, 2, 2).float()

    def scores(p):
        r = rope(p)
        return apply_rotary(q, r) @ apply_rotary(k, r).transpose(-1, -2)

    torch.testing.assert_close(
        scores(pos + torch.tensor([3.0, -2.0, 7.5])), scores(pos), atol=1e-5, rtol=0
    )
    # (N, 3) and (1, N, 3) give the same tables.
    torch.testing.assert_close(rope(pos).cos, rope(pos[None]).cos)


def test_default_axes_dim_and_invalid_splits():
    assert default_axes_dim(64) == (16, 24, 24)
    assert default_axes_dim(128) == (32, 48, 48)
    assert default_axes_dim(16) == (4, 6, 6)
    for hd in range(6, 258, 2):
        dims = default_axes_dim(hd)
        assert sum(dims) == hd and all(d > 0 and d % 2 == 0 for d in dims)
    for bad in [(5, 5, 6), (4, 6, 8), (0, 8, 8)]:
        with pytest.raises(KinemaError, match="rotary split"):
            RotaryEmbedding(16, axes_dim=bad)
    with pytest.raises(KinemaError, match=r"\(B, N, 3\)"):
        RotaryEmbedding(16, axes_dim=(4, 6, 6))(torch.zeros(5))
    with pytest.raises(KinemaError, match=r"\(B, N\)"):
        RotaryEmbedding(16)(torch.zeros(1, 2, 3))


def test_grid_positions_raster_order_offset_and_scale():
    g = grid_positions(2, 3, 4)
    assert g.shape == (24, 3) and g.dtype == torch.float32
    for r in range(24):  # w fastest, then h, then t
        assert g[r].tolist() == [r // 12, (r // 4) % 3, r % 4]
    low = grid_positions(1, 2, 2, offset=(5, 0, 0), scale=(1, 2, 2))
    assert low.tolist() == [[5, 0, 0], [5, 0, 2], [5, 2, 0], [5, 2, 2]]
    assert grid_positions(1, 1, 2, scale=0.5).tolist() == [[0, 0, 0], [0, 0, 0.5]]


def test_tables_stay_fp32_when_the_model_is_cast_to_bf16():
    rope = RotaryEmbedding(16, axes_dim=(4, 6, 6))
    ref = rope(torch.tensor([[1000.0, 7.0, 3.0]]))
    rope = rope.to(torch.bfloat16)
    assert rope.inv_freq.dtype == torch.float32 and rope.sign.dtype == torch.float32
    out = rope(torch.tensor([[1000.0, 7.0, 3.0]]))
    torch.testing.assert_close(out.cos, ref.cos)
    torch.testing.assert_close(out.sin, ref.sin)
