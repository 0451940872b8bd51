"""FSQ / LFQ / VQ / KL bottlenecks: index order, round trips, losses, saved statistics."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from vector_quantize_pytorch import FSQ as LibFSQ

from kinema.tokenizer import FSQ, LFQ, VQ, DiagonalGaussian, Tokenizer, TokenizerConfig

# ---------------------------------------------------------------------------- FSQ


def test_fsq_default_levels_give_64000_codes_and_round_trip_all_of_them():
    fsq = FSQ()
    assert fsq.levels == (8, 8, 8, 5, 5, 5) and fsq.codebook_size == 64_000
    idx = torch.arange(64_000)
    codes = fsq.indices_to_codes(idx)
    assert codes.shape == (64_000, 6)
    assert codes.min() == -1 and codes.max() == 1
    assert torch.equal(fsq.codes_to_indices(codes), idx)
    assert len({tuple(c) for c in codes.tolist()}) == 64_000  # all codes distinct


def test_fsq_index_order_is_little_endian_mixed_radix():
    fsq = FSQ((8, 5, 5))
    # index = d0 + 8 * d1 + 40 * d2; code = (digit - L // 2) / (L // 2)
    codes = fsq.indices_to_codes(torch.tensor(1 + 8 * 2 + 40 * 4))
    torch.testing.assert_close(codes, torch.tensor([(1 - 4) / 4, (2 - 2) / 2, (4 - 2) / 2]))


def test_fsq_forward_matches_library_and_is_idempotent():
    fsq = FSQ()
    z = torch.randn(2, 6, 3, 4, 4) * 3
    out = fsq(z)
    assert out.z.shape == z.shape and out.indices.shape == (2, 3, 4, 4)
    lib_codes, lib_idx = LibFSQ(levels=[8, 8, 8, 5, 5, 5])(z)
    torch.testing.assert_close(out.z, lib_codes)
    assert torch.equal(out.indices, lib_idx.long())  # same order as vector-quantize-pytorch
    codes = fsq.indices_to_codes(out.indices)
    torch.testing.assert_close(codes.permute(0, 4, 1, 2, 3), out.z)


def test_fsq_passes_gradients_straight_through():
    z = torch.randn(1, 6, 1, 2, 2, requires_grad=True)
    FSQ()(z).z.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- LFQ


def test_lfq_bit_order_index_5_with_4_bits():
    lfq = LFQ(4)
    # 5 = 0b0101: bit i belongs to channel i (little-endian) -> (+1, -1, +1, -1)
    assert lfq.indices_to_codes(torch.tensor(5)).tolist() == [1.0, -1.0, 1.0, -1.0]
    assert lfq.codes_to_indices(torch.tensor([1.0, -1.0, 1.0, -1.0])).item() == 5
    assert lfq.indices_to_codes(torch.tensor(1)).tolist() == [1.0, -1.0, -1.0, -1.0]
    assert lfq.indices_to_codes(torch.tensor(8)).tolist() == [-1.0, -1.0, -1.0, 1.0]


def test_lfq_forward_indices_follow_the_signs():
    lfq = LFQ(4).eval()
    z = torch.tensor([0.3, -2.0, 0.1, -0.5]).reshape(1, 4, 1, 1, 1)
    out = lfq(z)
    assert out.indices.item() == 5
    assert out.z.flatten().tolist() == [1.0, -1.0, 1.0, -1.0]


@settings(max_examples=50, deadline=None, derandomize=True, database=None)
@given(st.lists(st.integers(0, 2**18 - 1), min_size=1, max_size=64))
def test_lfq_18_bit_round_trip(values):
    lfq = LFQ(18)
    idx = torch.tensor(values)
    codes = lfq.indices_to_codes(idx)
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(lfq.codes_to_indices(codes), idx)


def test_lfq_full_codebook_round_trip_and_factorized_halves():
    lfq = LFQ(10, factorize=True)
    idx = torch.arange(1024)
    assert torch.equal(lfq.codes_to_indices(lfq.indices_to_codes(idx)), idx)
    halves = lfq.split_indices(idx)
    assert halves.shape == (1024, 2) and halves.max() < 32 == lfq.factor_size
    assert torch.equal(lfq.merge_indices(halves), idx)
    # the low half is channels 0..4, the high half channels 5..9
    codes = lfq.indices_to_codes(idx)
    low = LFQ(5).indices_to_codes(halves[:, 0])
    high = LFQ(5).indices_to_codes(halves[:, 1])
    assert torch.equal(torch.cat([low, high], dim=-1), codes)


def test_lfq_18_bits_factorize_into_two_512_way_halves():
    lfq = LFQ(18, factorize=True)
    idx = torch.tensor([0, 1, 511, 512, 262_143, 123_456])
    halves = lfq.split_indices(idx)
    assert halves.tolist() == [[0, 0], [1, 0], [511, 0], [0, 1], [511, 511], [64, 241]]
    assert torch.equal(lfq.merge_indices(halves), idx)


def _all_codes(bits: int, scale: float = 1.0) -> torch.Tensor:
    return LFQ(bits).indices_to_codes(torch.arange(2**bits)) * scale


def test_lfq_entropy_uniform_usage_beats_collapse():
    lfq = LFQ(6)
    uniform = _all_codes(6).repeat(4, 1)  # every code used equally, confidently
    collapsed = _all_codes(6)[:1].repeat(256, 1)  # one code for everything
    h_s_u, h_b_u = lfq.entropies(uniform)
    h_s_c, h_b_c = lfq.entropies(collapsed)
    assert h_s_u < 1e-3 and h_s_c < 1e-3  # confident per sample
    assert h_b_u.item() == pytest.approx(6 * math.log(2), rel=1e-4)
    assert h_b_c.item() == pytest.approx(0.0, abs=1e-3)
    # uncertain tokens (z ~ 0) have high per-sample entropy: one bit = log 2
    h_s_zero, _ = lfq.entropies(torch.zeros(8, 6))
    assert h_s_zero.item() == pytest.approx(6 * math.log(2), rel=1e-4)


def test_lfq_grouped_batch_entropy_and_loss_sign():
    # 12 bits in groups of 6: the uniform batch reaches 2 * 6 log 2 = 12 log 2
    lfq = LFQ(12, entropy_group_bits=6).train()
    idx = torch.randperm(4096)[:2048]
    uniform = LFQ(12).indices_to_codes(idx)
    _, h_b = lfq.entropies(uniform)
    assert h_b.item() == pytest.approx(12 * math.log(2), rel=1e-2)
    to_video = lambda x: x.T.reshape(1, 12, 1, 32, 64)  # noqa: E731
    loss_uniform = lfq(to_video(uniform)).loss
    loss_collapsed = lfq(to_video(uniform[:1].repeat(2048, 1))).loss
    assert loss_uniform < loss_collapsed


def test_lfq_commit_loss_and_gradients():
    lfq = LFQ(4, entropy_weight=0.0, commit_weight=1.0).train()
    z = torch.full((1, 4, 1, 1, 1), 0.5, requires_grad=True)
    out = lfq(z)
    assert out.loss.item() == pytest.approx(0.25)  # (0.5 - 1)^2
    assert set(out.metrics) == {"entropy_sample", "entropy_batch", "commit"}
    out.z.sum().backward()
    assert z.grad is not None


# ---------------------------------------------------------------------------- VQ


@pytest.mark.parametrize("ema", [True, False])
def test_vq_round_trip_and_training_step(ema):
    vq = VQ(dim=4, codebook_size=32, ema=ema).train()
    z = torch.randn(2, 4, 2, 4, 4, requires_grad=True)
    out = vq(z)
    assert bool(vq.initialized)
    assert out.indices.shape == (2, 2, 4, 4) and out.z.shape == z.shape
    assert out.loss > 0 and "perplexity" in out.metrics
    out.loss.backward()
    assert z.grad is not None
    if not ema:
        assert vq.codebook.grad is not None
    vq.eval()
    idx = torch.arange(32)
    assert torch.equal(vq.codes_to_indices(vq.indices_to_codes(idx)), idx)
    ev = vq(z.detach())
    torch.testing.assert_close(
        ev.z, vq.indices_to_codes(ev.indices).permute(0, 4, 1, 2, 3), rtol=0, atol=0
    )
    assert torch.equal(vq.encode_indices(z.detach()), ev.indices)


def test_vq_ema_moves_codes_toward_assigned_vectors():
    vq = VQ(dim=2, codebook_size=2, ema=True, decay=0.5).train()
    vq(torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 1, 2))  # init from data
    target = torch.tensor([3.0, 3.0])
    before = vq.codebook.clone()
    z = target.reshape(1, 2, 1, 1, 1).expand(1, 2, 1, 1, 4)
    k = vq(z).indices.flatten()[0]
    assert (vq.codebook[k] - target).norm() < (before[k] - target).norm()


# ---------------------------------------------------------------------------- KL


def test_kl_sampling_loss_and_normalisation_inverse():
    kl = DiagonalGaussian(4, kl_weight=1.0)
    moments = torch.cat([torch.zeros(1, 4, 2, 3, 3), torch.zeros(1, 4, 2, 3, 3)], dim=1)
    out = kl.train()(moments)
    assert out.indices is None and out.loss.item() == pytest.approx(0.0, abs=1e-7)  # N(0,1)
    assert out.z.std() > 0.5  # sampled
    assert torch.equal(kl.eval()(moments).z, torch.zeros(1, 4, 2, 3, 3))  # mean in eval
    kl.set_stats(torch.tensor([1.0, -2.0, 0.5, 0.0]), torch.tensor([0.5, 2.0, 1.0, 4.0]))
    z = torch.randn(2, 4, 2, 3, 3)
    zn = kl.normalize(z)
    torch.testing.assert_close(zn[:, 1], (z[:, 1] + 2.0) * 2.0)
    torch.testing.assert_close(kl.denormalize(zn), z)


def test_kl_shift_scale_are_fit_saved_and_loaded(tmp_path):
    cfg = TokenizerConfig(
        quantizer="kl",
        kl_channels=4,
        spatial_compression=4,
        temporal_compression=2,
        num_frames=5,
        base_channels=8,
        channel_mult=(1, 1, 1),
        norm_groups=4,
    )
    tok = Tokenizer(cfg).eval()
    videos = [torch.rand(2, 3, 5, 16, 16) * 2 - 1 for _ in range(2)]
    shift, scale = tok.fit_latent_stats(videos, per_channel=True)
    assert shift.shape == scale.shape == (4,)
    lat = torch.cat([tok.encode(v) for v in videos])
    assert lat.shape == (4, 4, 3, 4, 4)
    torch.testing.assert_close(lat.mean(dim=(0, 2, 3, 4)), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(lat.std(dim=(0, 2, 3, 4), unbiased=False), torch.ones(4))
    tok.save_pretrained(tmp_path / "kl")
    loaded = Tokenizer.from_pretrained(tmp_path / "kl").eval()
    assert torch.equal(loaded.quantizer.shift, shift)
    assert torch.equal(loaded.quantizer.scale, scale)
    torch.testing.assert_close(loaded.encode(videos[0]), tok.encode(videos[0]), rtol=0, atol=0)
    # decode undoes the normalisation: same video as decoding the raw mean
    raw = tok.quantizer.mean(tok.encoder(videos[0]))
    torch.testing.assert_close(tok.decode(lat[:2]), tok.decoder(raw), rtol=1e-4, atol=1e-4)
