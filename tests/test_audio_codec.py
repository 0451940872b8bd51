"""Audio codec: geometry, causality, residual VQ, LM token order, training, save/load, errors."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from kinema.audio import (
    AudioCodec,
    AudioCodecConfig,
    ResidualVQ,
    codes_to_tokens,
    envelope_loss,
    preset,
    stft_loss,
    tokens_to_codes,
)
from kinema.data.physics_audio import PhysicsAudioVisualDataset
from kinema.errors import KinemaError
from kinema.train import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def codec() -> AudioCodec:
    torch.manual_seed(0)
    return AudioCodec(preset("tiny")).eval()


def test_presets_and_geometry(codec):
    counts = {
        name: sum(p.numel() for p in AudioCodec(preset(name)).parameters())
        for name in ("tiny", "cpu")
    }
    assert counts["tiny"] < 50_000 and 300_000 < counts["cpu"] < 1_000_000
    cfg = preset("soundstream-paper")
    assert (cfg.hop_length, cfg.frame_rate, cfg.levels, cfg.codebook_size) == (320, 50, 4, 1024)
    assert cfg.vocab_size == 4096
    wave = torch.randn(2, 1, 3200) * 0.1
    codes = codec.encode(wave)
    assert codes.shape == (2, 10, 2) and codes.dtype == torch.long
    assert codec.encode(torch.randn(2, 1, 3201) * 0.1).shape == (2, 11, 2)  # ceil(S / 320)
    out = codec.decode(codes)
    assert out.shape == (2, 1, 3200) and out.abs().max() <= 1
    assert codec.decode(codes, length=3000).shape == (2, 1, 3000)
    assert codec.decode(codes[..., :1]).shape == (2, 1, 3200)  # coarse: first level only
    small = AudioCodec(AudioCodecConfig(channels=2, strides=(2, 3), dilations=(1,), dim=4))
    assert small.encoder(torch.zeros(1, 1, 60)).shape == (1, 4, 10)
    assert small.decoder(torch.zeros(1, 4, 10)).shape == (1, 1, 60)


def test_encoder_and_decoder_are_causal(codec):
    wave = torch.randn(1, 1, 3200) * 0.1
    changed = wave.clone()
    changed[..., 1600:] = torch.randn(1, 1, 1600)  # samples of frames 5..9 only
    with torch.no_grad():
        z, z2 = codec.encoder(wave), codec.encoder(changed)
        assert torch.equal(z[..., :5], z2[..., :5]) and not torch.equal(z[..., 5:], z2[..., 5:])
        y, y2 = codec.decoder(z), codec.decoder(z2)
    assert torch.equal(y[..., :1600], y2[..., :1600])


def _fitted_rvq(levels: int = 4, restart: float = 0.0) -> tuple[ResidualVQ, torch.Tensor]:
    """RVQ fitted to random vectors by Lloyd steps (EMA decay 0: each step is k-means)."""
    z = torch.randn(4, 8, 256)
    rvq = ResidualVQ(8, 16, levels, decay=0.0, restart=restart).train()
    for _ in range(10):
        rvq(z)
    return rvq.eval(), z


def test_each_rvq_level_lowers_the_error():
    rvq, z = _fitted_rvq()
    codes = rvq.encode_indices(z)
    errors = [z.pow(2).mean().item()]
    for n in range(1, 5):
        errors.append((z - rvq.indices_to_embedding(codes[..., :n])).pow(2).mean().item())
    # measured 1.00 -> 0.58 -> 0.34 -> 0.20 -> 0.12
    assert all(b < 0.8 * a for a, b in zip(errors, errors[1:], strict=False)), errors


def test_rvq_indices_round_trip():
    rvq, z = _fitted_rvq()
    out = rvq(z)
    codes = rvq.encode_indices(z)
    assert codes.shape == (4, 256, 4) and torch.equal(codes, out.indices)
    emb = rvq.indices_to_embedding(codes)
    assert torch.allclose(out.z, emb) and emb.shape == z.shape
    # every code of every level maps to its vector and back
    for vq in rvq.layers:
        every = torch.arange(16)
        assert torch.equal(vq.codes_to_indices(vq.indices_to_codes(every)), every)
    # the sum is the sum of per-level vectors
    manual = sum(rvq.layers[i].codebook[codes[..., i]] for i in range(4))
    assert torch.allclose(emb, manual.permute(0, 2, 1))


def test_grouped_fsq_codes_each_group_on_the_grid():
    from kinema.audio.fsq import GroupedFSQ

    q = GroupedFSQ(3, (4, 4, 4, 4))
    assert (q.dim, q.codebook_size) == (12, 256)
    z = torch.randn(2, 12, 7, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = q(z)
    assert out.z.shape == (2, 12, 7) and out.indices.shape == (2, 7, 3)
    assert int(out.indices.min()) >= 0 and int(out.indices.max()) < 256
    # brute force: group k of frame l is channels 4k..4k+3, rounded onto the 4-level grid
    for b, frame, k in [(0, 0, 0), (1, 6, 2), (0, 3, 1)]:
        codes = out.z[b, 4 * k : 4 * k + 4, frame].detach()
        assert torch.allclose(q.fsq.indices_to_codes(out.indices[b, frame, k]), codes)
        assert set((codes * 2).round().tolist()) <= {-2.0, -1.0, 0.0, 1.0}
    # indices -> embedding is exact, fewer groups leave the rest at the grid's centre
    assert torch.equal(q.indices_to_embedding(out.indices), out.z.detach())
    assert torch.equal(q.encode_indices(z), out.indices)
    coarse = q.indices_to_embedding(out.indices[..., :1])
    assert torch.equal(coarse[:, :4], out.z[:, :4].detach()) and not coarse[:, 4:].any()
    out.z.sum().backward()  # straight-through: gradients reach the encoder output
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert 1 <= float(out.metrics["perplexity"]) <= 14  # 14 frames x 2 clips per group
    with pytest.raises(KinemaError, match="codes have 4 groups"):
        q.indices_to_embedding(torch.zeros(1, 2, 4, dtype=torch.long))


def test_fsq_codec_config_and_round_trip(tmp_path):
    with pytest.raises(KinemaError, match="codebook_size = prod"):
        preset("tiny", quantizer="fsq")  # 64 codes but a 256-code grid, dim 8 not 2 x 4
    with pytest.raises(KinemaError, match="quantizer must be"):
        preset("tiny", quantizer="pq")
    cfg = preset("tiny", quantizer="fsq", fsq_levels=(4, 4, 4), codebook_size=64, dim=6)
    torch.manual_seed(0)
    codec = AudioCodec(cfg).eval()
    wave = torch.randn(2, 1, 1600) * 0.1
    codes = codec.encode(wave)
    assert codes.shape == (2, 5, 2) and int(codes.max()) < 64
    tokens = codec.codes_to_tokens(codes)
    assert torch.equal(codec.tokens_to_codes(tokens), codes)
    assert codec.decode(codes).shape == (2, 1, 1600)
    back = AudioCodec.from_pretrained(codec.save_pretrained(tmp_path / "c"))
    assert back.config.quantizer == "fsq" and back.config.fsq_levels == (4, 4, 4)
    assert torch.equal(back.encode(wave), codes)
    loss = AudioCodec(cfg).train().loss({"audio": wave})
    assert torch.isfinite(loss["loss"]) and float(loss["vq_loss"]) == 0.0


def test_dead_codes_are_restarted():
    """Codes initialised on data that then moves away: without restarts the few nearest
    ones take everything; with them the idle codes move onto the new data."""
    narrow = 3 + torch.randn(2, 4, 128) * 0.01
    wide = torch.randn(2, 4, 128)
    used, restarts = {}, {}
    for restart in (0.0, 0.5):
        rvq = ResidualVQ(4, 32, 1, decay=0.5, restart=restart).train()
        rvq(narrow)
        outs = [rvq(wide) for _ in range(8)]
        used[restart] = outs[-1].indices.unique().numel()
        restarts[restart] = sum(o.metrics["restarts"].item() for o in outs)
    # measured: 2 codes used without restarts, all 32 with 38 restarts
    assert used[0.0] <= 8 and used[0.5] >= 28 and restarts == {0.0: 0, 0.5: restarts[0.5]}
    assert restarts[0.5] >= 31


def test_token_order_and_round_trip(codec):
    codes = torch.tensor([[[1, 2], [3, 63]]])  # (B=1, L=2, Q=2), K=64
    tokens = codec.codes_to_tokens(codes)
    assert tokens.tolist() == [[1, 64 + 2, 3, 64 + 63]]  # frame-major, level offset q * K
    assert torch.equal(codec.tokens_to_codes(tokens), codes)
    rand = torch.randint(0, 1024, (3, 7, 4))
    assert torch.equal(tokens_to_codes(codes_to_tokens(rand, 1024), 4, 1024), rand)
    with pytest.raises(KinemaError, match="out of range"):
        codec.tokens_to_codes(torch.tensor([[64 + 2, 3]]))  # level 1 token at a level-0 slot
    with pytest.raises(KinemaError, match="whole frames"):
        codec.tokens_to_codes(torch.tensor([[1, 65, 3]]))


def test_stft_loss():
    a = torch.randn(2, 1, 2048)
    assert stft_loss(a, a, (256, 64)).item() == 0
    assert stft_loss(a * 0.5, a, (256, 64)).item() > 0.1
    short = torch.randn(1, 1, 100)
    assert stft_loss(short, short * 0, (256, 64)) == stft_loss(short, short * 0, (64,)) > 0


def test_envelope_loss_against_brute_force_and_in_the_codec_loss():
    """``envelope_loss`` = mean |log E_pred - log E_true| with ``E`` the mean squared first
    difference per window (hop window/4); phase-blind; ``envelope_weight`` adds it to the
    codec loss."""
    torch.manual_seed(0)
    a, b = 0.3 * torch.randn(2, 1, 700), 0.1 * torch.randn(2, 1, 700)
    window, hop = 64, 16

    def brute_env(x):
        d = (x[..., 1:] - x[..., :-1]) ** 2
        starts = range(0, d.shape[-1] - window + 1, hop)
        return torch.stack([d[..., s : s + window].mean(-1) for s in starts], -1).clamp_min(1e-8)

    want = (brute_env(a).log() - brute_env(b).log()).abs().mean()
    torch.testing.assert_close(envelope_loss(a, b, window), want)
    # a click with its phase flipped has the same envelope; a missing click does not
    t = torch.arange(700.0)
    click = torch.where(t >= 300, torch.exp(-(t - 300) / 64) * torch.sin(1.18 * (t - 300)), 0.0)
    click = click.view(1, 1, -1)
    assert envelope_loss(-click, click, window) < 1e-5
    assert envelope_loss(0.01 * click, click, window) > 5
    assert envelope_loss(click[..., :64], click[..., :64], window) == 0  # too short
    wave = 0.3 * torch.randn(2, 1, 1600)
    losses = {}
    for w in (0.0, 2.0):
        torch.manual_seed(1)  # the same weights for both
        model = AudioCodec(preset("tiny", envelope_weight=w)).eval()
        with torch.no_grad():
            losses[w] = model.loss({"audio": wave})
            recon = model(wave)["recon"]
    torch.testing.assert_close(losses[2.0]["envelope"], envelope_loss(recon, wave, window))
    torch.testing.assert_close(
        losses[2.0]["loss"] - losses[0.0]["loss"], 2.0 * losses[0.0]["envelope"]
    )
    with pytest.raises(KinemaError, match="envelope_weight"):
        preset("tiny", envelope_weight=-1.0)


def test_l2_weight_adds_the_waveform_mse():
    wave = 0.3 * torch.randn(2, 1, 1600, generator=torch.Generator().manual_seed(0))
    losses = {}
    for w in (0.0, 3.0):
        torch.manual_seed(1)  # the same weights for both
        model = AudioCodec(preset("tiny", l2_weight=w)).eval()
        with torch.no_grad():
            losses[w] = model.loss({"audio": wave})
            recon = model(wave)["recon"]
    torch.testing.assert_close(losses[3.0]["l2"], (recon - wave).pow(2).mean())
    torch.testing.assert_close(losses[3.0]["loss"] - losses[0.0]["loss"], 3.0 * losses[0.0]["l2"])
    with pytest.raises(KinemaError, match="l2_weight"):
        preset("tiny", l2_weight=-1.0)


def test_diff_l2_weight_adds_the_pre_emphasised_mse():
    wave = 0.3 * torch.randn(2, 1, 1600, generator=torch.Generator().manual_seed(0))
    losses = {}
    for w in (0.0, 5.0):
        torch.manual_seed(1)
        model = AudioCodec(preset("tiny", diff_l2_weight=w)).eval()
        with torch.no_grad():
            losses[w] = model.loss({"audio": wave})
            recon = model(wave)["recon"]
    err = recon - wave  # brute force: e[n] - e[n - 1] over each clip
    brute = sum(
        (err[b, 0, n] - err[b, 0, n - 1]) ** 2 for b in range(2) for n in range(1, 1600)
    ) / (2 * 1599)
    torch.testing.assert_close(losses[5.0]["diff_l2"], brute)
    torch.testing.assert_close(losses[5.0]["loss"] - losses[0.0]["loss"], 5.0 * brute)
    # a 3 kHz error weighs ~30x as much as a 500 Hz one of the same size
    t = torch.arange(1600) / 16_000
    hi, lo = (torch.sin(2 * torch.pi * f * t).diff().pow(2).mean() for f in (3000.0, 500.0))
    assert 25 < hi / lo < 40
    with pytest.raises(KinemaError, match="diff_l2_weight"):
        preset("tiny", diff_l2_weight=-1.0)


def test_trains_with_the_trainer_and_reloads(tmp_path):
    torch.manual_seed(0)
    model = AudioCodec(preset("tiny"))
    data = PhysicsAudioVisualDataset(
        scenario="collision", num_frames=5, cond_frames=1, length=2, video=False
    )
    cfg = TrainConfig(
        steps=30,
        batch_size=2,
        lr=3e-3,
        warmup_steps=2,
        weight_decay=0.0,
        out_dir=str(tmp_path / "run"),
        save_every=0,
        log_every=5,
        tensorboard=False,
        progress=False,
        device="cpu",
    )
    result = Trainer(model, data, cfg).fit()
    first, last = result.history[0], result.history[-1]
    assert last["loss"] < 0.75 * first["loss"], (first, last)
    assert last["stft"] < first["stft"] and {"l1", "snr_db", "perplexity", "vq_loss"} <= set(last)
    loaded = AudioCodec.from_pretrained(result.checkpoint).eval()
    wave = data[0]["audio"][None]
    codes = model.eval().encode(wave)
    assert torch.equal(loaded.encode(wave), codes)
    assert torch.equal(loaded.decode(codes), model.decode(codes))


def test_save_pretrained_round_trip(codec, tmp_path):
    trained = AudioCodec(preset("tiny")).train()
    trained.loss({"audio": torch.randn(2, 1, 1600) * 0.1})  # initialise the codebooks
    trained.eval().save_pretrained(tmp_path / "codec")
    loaded = AudioCodec.from_pretrained(tmp_path / "codec")
    assert loaded.config == trained.config
    wave = torch.randn(1, 1, 1600) * 0.1
    assert torch.equal(loaded.encode(wave), trained.encode(wave))


def test_bad_inputs_raise_one_line_errors(codec):
    wave = torch.zeros(1, 1, 640)
    for bad, match in [
        (torch.zeros(1, 640), r"\(B, 1, S\)"),
        (torch.zeros(1, 2, 640), r"\(B, 1, S\)"),
        (torch.zeros(1, 1, 640, dtype=torch.long), "float audio"),
    ]:
        with pytest.raises(KinemaError, match=match):
            codec.encode(bad)
    with pytest.raises(KinemaError, match="22050 Hz.*16000 Hz"):
        codec.encode(wave, sample_rate=22050)
    with pytest.raises(KinemaError, match="16000 Hz"):
        codec.loss({"audio": wave, "sample_rate": torch.tensor([8000])})
    with pytest.raises(KinemaError, match=r"codes must be in \[0, 64\)"):
        codec.decode(torch.full((1, 2, 2), 64))
    with pytest.raises(KinemaError, match="integer"):
        codec.decode(torch.zeros(1, 2, 2))
    with pytest.raises(KinemaError, match="levels<=2"):
        codec.decode(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(KinemaError, match="unknown audio codec preset"):
        preset("huge")
    with pytest.raises(KinemaError, match="kernel_size"):
        AudioCodecConfig(kernel_size=4)


def test_input_gain_scales_the_encoder_input_and_the_decoder_output():
    torch.manual_seed(0)
    plain = AudioCodec(preset("tiny"))
    gained = AudioCodec(preset("tiny", input_gain=10.0))
    gained.load_state_dict(plain.state_dict())
    wave = torch.randn(2, 1, 640) * 0.05
    with torch.no_grad():
        z = gained.encoder(wave)
        torch.testing.assert_close(z, plain.encoder(10 * wave))
        torch.testing.assert_close(gained.decoder(z), plain.decoder(z) / 10)
    with pytest.raises(KinemaError, match="input_gain"):
        preset("tiny", input_gain=0.0)


def test_staged_schedule_bypasses_the_rvq_then_the_stft_loss(tmp_path):
    """Before vq_start the RVQ is bypassed (codebooks untouched, zero VQ loss); at vq_start
    the codebooks are initialised from the trained encoder's outputs; the STFT term joins
    the loss at stft_start. The trainer tells the codec the step, also after a resume."""
    torch.manual_seed(0)
    model = AudioCodec(preset("tiny", vq_start=4, stft_start=6, vq_restart=0.0))
    data = PhysicsAudioVisualDataset(
        scenario="collision", num_frames=5, cond_frames=1, length=4, video=False
    )
    cfg = TrainConfig(
        steps=8,
        batch_size=2,
        lr=1e-3,
        warmup_steps=0,
        weight_decay=0.0,
        out_dir=str(tmp_path / "run"),
        save_every=4,
        log_every=1,
        tensorboard=False,
        progress=False,
        device="cpu",
    )
    first = Trainer(model, data, cfg).fit(until_step=4).history
    vq = model.quantizer.layers[0]
    assert not bool(vq.initialized)
    assert all(row["vq_loss"] == 0 and row["perplexity"] == 0 for row in first)
    assert all(row["loss"] == pytest.approx(row["l1"], rel=1e-6) for row in first)
    model.eval()
    with torch.no_grad():
        z = model.encoder(model._padded(torch.stack([data[i]["audio"] for i in range(4)])))
    frames = rearrange(z, "b d l -> (b l) d")

    torch.manual_seed(0)
    resumed = AudioCodec(preset("tiny", vq_start=4, stft_start=6, vq_restart=0.0))
    trainer = Trainer(resumed, data, cfg.replace(resume=True))
    rest = trainer.fit(until_step=5).history
    # level 0's codebook started as encoder outputs of the first quantized batch (then one
    # EMA update at decay 0.99): every code lies by some frame of the step-4 encoder
    nearest = torch.cdist(resumed.quantizer.layers[0].codebook, frames).min(dim=1).values
    assert nearest.max() < 0.05 * frames.norm(dim=1).min()
    rest += trainer.fit().history
    assert [row["step"] for row in rest] == [5, 6, 7, 8]
    assert all(row["vq_loss"] > 0 and row["perplexity"] > 0 for row in rest)
    assert rest[0]["loss"] == pytest.approx(rest[0]["l1"] + rest[0]["vq_loss"], rel=1e-5)
    stft_rows = rest[2:]  # steps 7 and 8 start at train_step 6 and 7 >= stft_start
    assert all(
        row["loss"] == pytest.approx(row["l1"] + row["stft"] + row["vq_loss"], rel=1e-5)
        for row in stft_rows
    )
