"""Tokenizer geometry, causality, errors and preset sizes."""

from __future__ import annotations

import pytest
import torch

from kinema.errors import KinemaError
from kinema.tokenizer import PRESETS, Tokenizer, TokenizerConfig, preset


def micro(spatial: int = 4, temporal: int = 4, **kw) -> TokenizerConfig:
    """A network of a few thousand parameters with the requested geometry."""
    levels = {4: 3, 8: 4, 16: 5}[spatial]
    base = dict(
        spatial_compression=spatial,
        temporal_compression=temporal,
        num_frames=1 + temporal,
        base_channels=8,
        channel_mult=(1,) * levels,
        norm_groups=4,
        num_res_blocks=1,
        mid_res_blocks=1,
    )
    return TokenizerConfig(**{**base, **kw})


@pytest.mark.parametrize("spatial", [4, 8, 16])
@pytest.mark.parametrize("temporal", [1, 2, 4])
def test_shapes_1_plus_ft_k_frames_to_1_plus_k_latents(spatial, temporal):
    tok = Tokenizer(micro(spatial, temporal)).eval()
    k, hw = 2, 2 * spatial
    video = torch.rand(1, 3, 1 + temporal * k, hw, hw) * 2 - 1
    with torch.no_grad():
        tokens = tok.encode(video)
        assert tokens.shape == (1, 1 + k, 2, 2) and tokens.dtype == torch.long
        assert tok.decode(tokens).shape == video.shape
        image = video[:, :, :1]  # T = 1: one latent frame
        assert tok.encode(image).shape == (1, 1, 2, 2)
        assert tok.decode(tok.encode(image)).shape == image.shape
        assert tok.encode(image[:, :, 0]).shape == (1, 1, 2, 2)  # (B, 3, H, W) images too
    assert tok.latent_shape(1 + temporal * k, hw, hw) == (1 + k, 2, 2)
    assert tok.num_tokens({"video": video}) == (1 + k) * 4


def test_presets_have_the_documented_geometry():
    for name in PRESETS:
        cfg = preset(name)
        assert cfg.latent_shape(cfg.num_frames, cfg.resolution, cfg.resolution)[0] == 5
    assert preset("tiny").latent_shape(17, 64, 64) == (5, 8, 8)
    assert preset("magvit2-paper").latent_shape(17, 128, 128) == (5, 16, 16)
    assert Tokenizer(preset("tiny")).vocab_size == 64_000
    assert preset("tiny", base_channels=16).base_channels == 16
    with pytest.raises(KinemaError, match="unknown tokenizer preset"):
        preset("huge")


def _latent_of_frame(j: int, ft: int) -> int:
    return 0 if j == 0 else (j - 1) // ft + 1


def test_encoder_is_causal_by_perturbation():
    ft = 2
    tok = Tokenizer(micro(4, ft)).eval()
    video = torch.rand(1, 3, 1 + 3 * ft, 16, 16) * 2 - 1
    with torch.no_grad():
        base = tok.encoder(video)
        for j in range(video.shape[2]):
            v = video.clone()
            v[:, :, j] = torch.rand_like(v[:, :, j]) * 2 - 1
            out = tok.encoder(v)
            i = _latent_of_frame(j, ft)
            torch.testing.assert_close(out[:, :, :i], base[:, :, :i], rtol=0, atol=1e-6)
            assert (out[:, :, i] - base[:, :, i]).abs().max() > 1e-4  # the test can fail


def test_first_frame_is_encoded_like_an_image():
    tok = Tokenizer(micro(4, 4)).eval()
    video = torch.rand(2, 3, 9, 16, 16) * 2 - 1
    with torch.no_grad():
        z_video = tok.encoder(video)
        z_image = tok.encoder(video[:, :, :1])
        # equal up to fp32 rounding: one frame takes the 2D path with time-summed kernels
        torch.testing.assert_close(z_video[:, :, :1], z_image, rtol=0, atol=1e-5)
        frames = tok.decode(tok.encode(video))
        first = tok.decode(tok.encode(video[:, :, :1]))
    torch.testing.assert_close(frames[:, :, :1], first, rtol=0, atol=1e-5)


def test_decoder_is_causal_by_perturbation():
    ft = 4
    tok = Tokenizer(micro(4, ft)).eval()
    z = torch.randn(1, tok.config.latent_channels, 3, 4, 4)
    with torch.no_grad():
        base = tok.decoder(z)
        for i in range(3):
            zz = z.clone()
            zz[:, :, i] += 1.0
            out = tok.decoder(zz)
            first = 0 if i == 0 else ft * (i - 1) + 1  # first frame latent i stands for
            torch.testing.assert_close(out[:, :, :first], base[:, :, :first], rtol=0, atol=1e-6)
            assert (out[:, :, first] - base[:, :, first]).abs().max() > 1e-4


def test_bad_inputs_raise_one_line_errors():
    tok = Tokenizer(micro(4, 4))
    with pytest.raises(KinemaError, match=r"has 4 frames.*1 \+ 4\*k"):
        tok.encode(torch.zeros(1, 3, 4, 16, 16))
    with pytest.raises(KinemaError, match="multiples of 4"):
        tok.encode(torch.zeros(1, 3, 5, 18, 16))
    with pytest.raises(KinemaError, match="expected video"):
        tok.encode(torch.zeros(1, 1, 5, 16, 16))
    with pytest.raises(KinemaError, match="token ids must be in"):
        tok.decode(torch.full((1, 2, 4, 4), 64_000))
    with pytest.raises(KinemaError, match="spatial_compression"):
        TokenizerConfig(spatial_compression=32)
    with pytest.raises(KinemaError, match="unknown quantizer"):
        TokenizerConfig(quantizer="rvq")


def test_magvit2_paper_parameter_count_on_meta_device():
    with torch.device("meta"):
        tok = Tokenizer(preset("magvit2-paper"))
    assert all(p.is_meta for p in tok.parameters())

    def count(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    counts = {
        "encoder": count(tok.encoder),
        "decoder": count(tok.decoder),
        "discriminator": count(tok.discriminator),
    }
    assert counts == MAGVIT2_PAPER_COUNTS


def test_tiny_preset_is_lean():
    tok = Tokenizer(preset("tiny"))
    n = sum(p.numel() for p in tok.parameters())
    assert 1e6 < n < 10e6, n


MAGVIT2_PAPER_COUNTS = {"encoder": 116_801_426, "decoder": 122_346_499, "discriminator": 4_449_537}


def test_bf16_weights_encode_and_decode_close_to_fp32():
    """Inference with weights cast to bf16 (no autocast): tokens mostly agree with fp32."""
    from kinema.tokenizer import Tokenizer, TokenizerConfig

    cfg = TokenizerConfig(
        spatial_compression=4,
        num_frames=5,
        resolution=32,
        base_channels=16,
        channel_mult=(1, 2, 2),
        fsq_levels=(8, 5, 5, 5),
    )
    tok = Tokenizer(cfg).eval()
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    with torch.inference_mode():
        ref_tokens = tok.encode(video)
        ref = tok.decode(ref_tokens)
        half = Tokenizer(cfg).eval()
        half.load_state_dict(tok.state_dict())
        half = half.to(torch.bfloat16)
        tokens = half.encode(video.to(torch.bfloat16))
        out = half.decode(ref_tokens)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    assert (tokens == ref_tokens).float().mean() > 0.9
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.05)
