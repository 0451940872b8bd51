"""Training the tokenizer: overfitting with the shared Trainer (bf16), losses, GAN, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kinema.data import ShapesDataset
from kinema.tokenizer import (
    PatchDiscriminator3D,
    Tokenizer,
    TokenizerConfig,
    adaptive_gan_weight,
    hinge_d_loss,
    hinge_g_loss,
)
from kinema.tokenizer.discriminator import frozen_call
from kinema.train import TrainConfig, Trainer


def small(**kw) -> TokenizerConfig:
    """9 x 32 x 32 -> 3 x 8 x 8, ~0.4M parameters: a few ms per step."""
    base = dict(
        spatial_compression=4,
        temporal_compression=4,
        num_frames=9,
        resolution=32,
        base_channels=16,
        channel_mult=(1, 2, 2),
        norm_groups=8,
    )
    return TokenizerConfig(**{**base, **kw})


def test_overfits_one_clip_with_the_trainer_in_auto_precision(tmp_path):
    # bf16 autocast where the CPU has it natively (AMX), else fp32: emulated bf16 would take
    # ~100 s here; the bf16 modules themselves are checked by test_bf16_autocast_encode_decode
    tok = Tokenizer(small())
    data = ShapesDataset(length=1, resolution=32, num_frames=9)
    cfg = TrainConfig(
        steps=40,
        batch_size=1,
        lr=3e-3,
        warmup_steps=5,
        weight_decay=0.0,
        precision="auto",
        out_dir=str(tmp_path / "run"),
        save_every=0,
        log_every=5,
        tensorboard=False,
        progress=False,
        device="cpu",
    )
    result = Trainer(tok, data, cfg).fit()
    first, last = result.history[0], result.history[-1]
    # measured: L1 0.75 (steps 1-5) -> 0.12 (steps 36-40), PSNR 7.9 -> 14.2 dB
    assert first["recon"] > 0.4
    assert last["recon"] < 0.25 and last["recon"] < 0.4 * first["recon"]
    assert last["psnr"] > first["psnr"] + 3
    assert {"loss", "recon", "psnr", "quant_loss"} <= set(last)
    # the trainer's checkpoint is a model folder
    loaded = Tokenizer.from_pretrained(result.checkpoint).eval()
    video = data[0]["video"][None]
    with torch.no_grad():
        assert torch.equal(loaded.encode(video), tok.eval().encode(video))


def test_bf16_autocast_encode_decode():
    tok = Tokenizer(small()).eval()
    video = torch.rand(2, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        tokens = tok.encode(video)
        out = tok.decode(tokens)
    assert tokens.dtype == torch.long and tokens.shape == (2, 3, 8, 8)
    assert out.shape == video.shape and torch.isfinite(out).all()
    with torch.no_grad():
        ref = tok.decode(tokens)
    assert (out.float() - ref).abs().mean() < 0.05  # bf16 vs fp32 decode of the same tokens


@pytest.mark.parametrize("quantizer", ["lfq", "vq", "kl"])
def test_loss_of_each_bottleneck_backpropagates(quantizer):
    tok = Tokenizer(small(quantizer=quantizer, lfq_bits=8, vq_dim=4, kl_channels=4)).train()
    video = torch.rand(2, 3, 9, 32, 32) * 2 - 1
    out = tok.loss({"video": video})
    assert torch.isfinite(out["loss"])
    # loss = L1 + the bottleneck's own term (LFQ's entropy term may be negative)
    assert out["quant_loss"] != 0
    torch.testing.assert_close(out["loss"].detach(), out["recon"] + out["quant_loss"])
    expected = {"lfq": "entropy_batch", "vq": "perplexity", "kl": "kl"}[quantizer]
    assert expected in out
    out["loss"].backward()
    assert tok.encoder.conv_in.weight.grad.abs().sum() > 0  # gradients reach the encoder


def test_log_mse_term_is_the_mean_over_clips_of_log_clip_mse():
    from kinema.tokenizer.tokenizer import LOG_MSE_EPS

    torch.manual_seed(0)
    weights = dict(l1_weight=0.0, l2_weight=0.0, log_mse_weight=2.0)
    tok = Tokenizer(small(quantizer="kl", kl_channels=4, kl_weight=0.0, **weights)).eval()
    video = torch.rand(3, 3, 9, 32, 32) * 2 - 1
    video[0] = 0.9  # an easy (flat) clip next to two noisy ones
    out = tok.loss({"video": video})
    recon = tok(video)["recon"].float()  # eval mode: KL takes the mean, deterministic
    clip_mse = torch.stack([((recon[i] - video[i]) ** 2).mean() for i in range(3)])
    expected = 2.0 * torch.log(clip_mse + LOG_MSE_EPS).mean()
    torch.testing.assert_close(out["loss"].detach(), expected + out["quant_loss"])
    out["loss"].backward()
    assert tok.encoder.conv_in.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("quantizer", ["fsq", "lfq", "vq"])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, quantizer):
    tok = Tokenizer(small(quantizer=quantizer, lfq_bits=8, vq_dim=4, vq_codebook_size=64))
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    tok.train().loss({"video": video})  # VQ: initialise and EMA-update the codebook buffers
    tok.eval()
    tok.save_pretrained(tmp_path / "tok")
    loaded = Tokenizer.from_pretrained(tmp_path / "tok").eval()
    assert loaded.config == tok.config
    with torch.no_grad():
        tokens = tok.encode(video)
        assert torch.equal(loaded.encode(video), tokens)
        assert torch.equal(loaded.decode(tokens), tok.decode(tokens))


def test_save_in_fp16_halves_the_file_and_loads_back_as_fp32(tmp_path):
    from safetensors import safe_open

    tok = Tokenizer(small(quantizer="kl", kl_channels=4)).eval()
    full = tok.save_pretrained(tmp_path / "fp32") / "model.safetensors"
    half = tok.save_pretrained(tmp_path / "fp16", dtype=torch.float16) / "model.safetensors"
    with safe_open(str(half), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = Tokenizer.from_pretrained(tmp_path / "fp16")
    for (name, a), b in zip(tok.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert b.dtype == a.dtype, name  # cast back to the model's dtype
        torch.testing.assert_close(b, a.half().to(a.dtype), rtol=0, atol=0)


def test_no_weight_decay_on_codebook_and_discriminator():
    from kinema.train import split_decay_params

    tok = Tokenizer(small(quantizer="vq", vq_ema=False, gan=True, disc_channels=8))
    decay, no_decay = split_decay_params(tok)
    assert "quantizer.codebook" in no_decay
    assert not any(n.startswith("discriminator.") for n in decay)
    assert "encoder.conv_in.conv.weight" in decay


def test_lfq_tokenizer_exposes_factorized_tokens():
    tok = Tokenizer(small(quantizer="lfq", lfq_bits=10, lfq_factorize=True)).eval()
    with torch.no_grad():
        tokens = tok.encode(torch.rand(1, 3, 9, 32, 32) * 2 - 1)
    halves = tok.split_tokens(tokens)
    assert halves.shape == (*tokens.shape, 2) and int(halves.max()) < 32
    assert torch.equal(tok.merge_tokens(halves), tokens)
    assert tok.vocab_size == 1024


# ---------------------------------------------------------------------------- GAN


def test_hinge_losses_and_adaptive_weight():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.25 + 0.5)
    assert hinge_g_loss(fake).item() == pytest.approx(1.0)
    w = torch.ones(3, requires_grad=True)
    a = torch.tensor([1.0, 2.0, 3.0])
    weight = adaptive_gan_weight((w * a).sum(), (2 * w * a).sum(), w, eps=0.0)
    assert weight.item() == pytest.approx(0.5)  # |grad recon| / |grad gan|
    assert not weight.requires_grad


def test_discriminator_shapes_and_frozen_call():
    disc = PatchDiscriminator3D(3, 8, layers=3)
    assert disc(torch.randn(2, 3, 9, 32, 32)).shape == (2, 1, 3, 4, 4)  # space / 2**3
    assert disc(torch.randn(1, 3, 1, 32, 32)).shape == (1, 1, 1, 4, 4)  # images
    x = torch.randn(1, 3, 5, 16, 16, requires_grad=True)
    hinge_g_loss(frozen_call(disc, x)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in disc.parameters())  # the generator loss spares D


def test_gan_loss_trains_both_networks_on_their_own_objectives():
    tok = Tokenizer(small(gan=True, disc_channels=8, disc_layers=2, gan_start_step=1)).train()
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    warmup = tok.loss({"video": video})  # call 0 < gan_start_step: no GAN yet
    assert warmup["gan_d"].item() == 0.0 and int(tok.gan_calls) == 1
    out = tok.loss({"video": video})
    assert set(out) >= {"gan_g", "gan_d", "gan_w"} and out["gan_w"] > 0
    out["loss"].backward()
    d_grads = [p.grad.clone() for p in tok.discriminator.parameters()]
    assert all(g.abs().sum() > 0 for g in d_grads)
    # D's gradient is that of its own hinge loss alone
    tok.zero_grad()
    recon = tok(video)["recon"].detach()
    hinge_d_loss(tok.discriminator(video), tok.discriminator(recon)).backward()
    for g, p in zip(d_grads, tok.discriminator.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)


def test_joint_image_video_batch_weighs_groups_by_pixels():
    torch.manual_seed(0)
    tok = Tokenizer(small()).eval()
    clips = [torch.rand(3, 9, 32, 32) * 2 - 1 for _ in range(2)]
    image = torch.rand(3, 1, 32, 32) * 2 - 1
    joint = tok.loss({"video": [clips[0], image, clips[1]]})
    video_only = tok.loss({"video": torch.stack(clips)})
    image_only = tok.loss({"video": image[None]})
    wv, wi = 2 * 9, 1  # frames (pixels per frame are equal)
    expected = (wv * video_only["recon"] + wi * image_only["recon"]) / (wv + wi)
    torch.testing.assert_close(joint["recon"], expected)
    expected = (wv * video_only["loss"] + wi * image_only["loss"]) / (wv + wi)
    torch.testing.assert_close(joint["loss"], expected)
    assert tok.num_tokens({"video": [clips[0], image, clips[1]]}) == 2 * 3 * 8 * 8 + 1 * 8 * 8


def test_init_from_a_trainer_checkpoint_takes_its_ema_weights(tmp_path):
    from safetensors.torch import load_file

    from kinema.tokenizer.training import train_tokenizer

    torch.manual_seed(0)
    data = ShapesDataset(length=2, resolution=32, num_frames=9)

    def config(out: str, lr: float) -> TrainConfig:
        return TrainConfig(steps=2, batch_size=1, lr=lr, warmup_steps=0, ema_decay=0.5,
                           weight_decay=0.0, out_dir=str(tmp_path / out), save_every=2,
                           tensorboard=False, progress=False, device="cpu")  # fmt: skip

    ckpt = Path(Trainer(Tokenizer(small()), data, config("a", 1e-2)).fit().checkpoint)
    ema, raw = load_file(str(ckpt / "ema.safetensors")), load_file(str(ckpt / "model.safetensors"))
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)  # the two differ
    out = train_tokenizer(small(), data, config("b", 1e-30), init=ckpt)
    got = Tokenizer.from_pretrained(out).state_dict()
    for k, v in ema.items():
        assert torch.equal(got[k], v), k  # lr ~0, decay 1/2: the export is the EMA init


def test_kl_training_exports_with_fitted_latent_statistics(tmp_path):
    from kinema.tokenizer.training import train_tokenizer

    torch.manual_seed(0)
    data = ShapesDataset(length=8, resolution=32, num_frames=9)
    cfg = TrainConfig(steps=1, batch_size=1, lr=1e-3, warmup_steps=0, weight_decay=0.0,
                      out_dir=str(tmp_path / "kl"), save_every=1, tensorboard=False,
                      progress=False, device="cpu")  # fmt: skip
    out = train_tokenizer(small(quantizer="kl", kl_channels=4), data, cfg)
    tok = Tokenizer.from_pretrained(out).eval()
    assert tok.quantizer.shift.shape == (4,)
    with torch.no_grad():  # the exported statistics normalise the latents of the data
        z = torch.cat([tok.encode(data[i]["video"][None]) for i in range(8)])
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1.0) < 0.05
