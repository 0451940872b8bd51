"""Long videos: chunked encode/decode equals one-shot; tiled decode/encode is close.

Chunking streams the causal convs with their caches, so it is exact up to float summation
order (fp32 tolerance 1e-5). Tiling is approximate: tiles see zero padding instead of
their neighbours, and GroupNorm statistics are per tile. The tiled tolerances below are
for *untrained* networks on random input in [-1, 1], the worst case (trained decoders are
smoother); they are loose enough to be stable and tight enough to catch a blending bug
(a wrong weight normalisation is off by ~the signal itself, mean |x| ~ 0.25).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kinema.tokenizer import Tokenizer, TokenizerConfig, blend_tiles
from kinema.tokenizer.chunked import chunk_bounds, tile_starts


def make(quantizer: str = "fsq", norm: str = "group", ft: int = 4) -> Tokenizer:
    cfg = TokenizerConfig(
        spatial_compression=4,
        temporal_compression=ft,
        num_frames=1 + ft,
        base_channels=8,
        channel_mult=(1, 1, 2),
        norm_groups=4,
        norm=norm,
        quantizer=quantizer,
        kl_channels=4,
        vq_dim=4,
        vq_codebook_size=64,
        lfq_bits=8,
    )
    return Tokenizer(cfg).eval()


def test_chunk_bounds():
    assert chunk_bounds(17, 8, first=5) == [(0, 5), (5, 13), (13, 17)]
    assert chunk_bounds(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert tile_starts(16, 8, 2) == [0, 6, 8]
    assert tile_starts(16, 16, 2) == [0]


@pytest.mark.parametrize("quantizer", ["fsq", "lfq", "kl"])
@torch.no_grad()
def test_chunked_encode_and_decode_equal_one_shot(quantizer):
    tok = make(quantizer)
    video = torch.rand(1, 3, 1 + 4 * 4, 8, 8) * 2 - 1  # 17 frames -> 5 latent frames
    one_shot = tok.encode(video)
    for chunk in (1, 2):
        got = tok.encode(video, chunk=chunk)
        if quantizer == "kl":
            torch.testing.assert_close(got, one_shot, rtol=0, atol=1e-5)
        else:
            assert torch.equal(got, one_shot)
    frames = tok.decode(one_shot)
    assert frames.shape == video.shape
    for chunk in (1, 3):
        torch.testing.assert_close(tok.decode(one_shot, chunk=chunk), frames, rtol=0, atol=1e-5)


@torch.no_grad()
def test_blend_tiles_is_exact_for_a_pointwise_function():
    # a purely local map (nearest 4x upsampling): tiling + ramps must reproduce it exactly
    x = torch.randn(1, 2, 3, 10, 13)

    def run(rows: slice, cols: slice) -> torch.Tensor:
        tile = x[..., rows, cols]
        return F.interpolate(tile, scale_factor=(1, 4, 4), mode="nearest")

    expected = run(slice(0, 10), slice(0, 13))
    for tile, overlap in [(4, 1), (4, 3), (6, 2), (5, 0)]:
        got = blend_tiles(run, (10, 13), tile, overlap, 4)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@torch.no_grad()
def test_tiled_decode_close_to_one_shot():
    video = torch.rand(1, 3, 5, 48, 48) * 2 - 1  # latent grid 12 x 12
    # measured mean |error|: channel 0.028, group 0.096 (mean |output| 0.34 / 0.23)
    for norm, mean_tol in [("channel", 0.06), ("group", 0.2)]:
        tok = make(norm=norm)
        tokens = tok.encode(video)
        full = tok.decode(tokens)
        # one tile covering the grid is the one-shot decode
        torch.testing.assert_close(tok.decode(tokens, tile=12), full, rtol=0, atol=1e-6)
        tiled = tok.decode(tokens, tile=8, tile_overlap=4)
        assert tiled.shape == full.shape
        err = (tiled - full).abs()
        assert err.mean() < mean_tol, (norm, err.mean())
        if norm == "channel":  # tiles + chunks: chunking inside each tile stays exact
            both = tok.decode(tokens, tile=8, tile_overlap=4, chunk=1)
            torch.testing.assert_close(both, tiled, rtol=0, atol=1e-5)


@torch.no_grad()
def test_tiled_encode_close_to_one_shot():
    tok = make("kl", norm="channel")
    video = torch.rand(1, 3, 5, 48, 48) * 2 - 1
    full = tok.encode(video)
    torch.testing.assert_close(tok.encode(video, tile=12), full, rtol=0, atol=1e-6)
    tiled = tok.encode(video, tile=8, tile_overlap=4)
    assert tiled.shape == full.shape
    # measured: mean |error| 0.053 for mean |latent| 0.23
    assert (tiled - full).abs().mean() < 0.4 * full.abs().mean()
