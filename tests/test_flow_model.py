"""The pyramid-flow training objective (PyramidDiT.loss), the latent-shard dataset and
train_flow: targets against a direct computation, history corruption, text dropout,
learning, per-stage logging and the exported folder."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kinema.errors import KinemaError
from kinema.flow import PyramidDiT, preset
from kinema.flow.data import LatentClipDataset
from kinema.flow.pyramid import compress_history
from kinema.flow.training import train_flow
from kinema.lm.text import ByteTextEncoder
from kinema.train import TrainConfig

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from flow_testing import physics_shards, randomized, tiny_tokenizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

B, C, T, RES = 3, 4, 3, 16  # tiny preset: 4 channels, stages of 4, 8, 16 latents


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(seed: int = 0, text: bool = True) -> dict:
    g = gen(seed)
    out = {"latents": torch.randn(B, C, T, RES, RES, generator=g)}
    if text:
        out["text"] = torch.randn(B, 5, 16, generator=g)
        out["text_mask"] = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] * 5])
    return out


def forward_kwargs(model: PyramidDiT, fn) -> list[dict]:
    """Run ``fn()``; return the keyword arguments of every ``model(...)`` call in it."""
    seen = []
    handle = model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append({"args": args, **kwargs}), with_kwargs=True
    )
    try:
        fn()
    finally:
        handle.remove()
    return seen


def pool(x: torch.Tensor, f: int) -> torch.Tensor:
    return F.avg_pool2d(x, f) if f > 1 else x


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_training_inputs_match_a_direct_computation(stage):
    """x_t, target and timestep of ALGORITHMS.md section 3 written out with torch ops, from
    the same draws (in the documented order) as flow_inputs."""
    model = randomized().train()
    data, frame = batch(), 2
    inp = model.flow_inputs(data, stage=stage, frame=frame, generator=gen(7))
    g = gen(7)
    r = torch.rand(B, generator=g)
    noise = torch.randn(B, C, RES, RES, generator=g)
    sigma = float(torch.rand((), generator=g)) / 3
    f = 2 ** (2 - stage)  # downscale of the stage
    x = data["latents"][:, :, frame]
    starts, ends = [1.0, 0.8, 0.5], [2 / 3, 1 / 3, 0.0]
    n_k = pool(noise, f) * f  # unit-variance noise at the stage resolution
    end = ends[stage] * n_k + (1 - ends[stage]) * pool(x, f)
    if stage == 0:
        start = n_k
    else:
        up = F.interpolate(pool(x, 2 * f), scale_factor=2, mode="nearest")
        start = starts[stage] * n_k + (1 - starts[stage]) * up
    rb = r[:, None, None, None]
    torch.testing.assert_close(inp.x_t, rb * start + (1 - rb) * end, atol=1e-5, rtol=0)
    torch.testing.assert_close(inp.target, start - end, atol=1e-5, rtol=0)
    dist = [s - e for s, e in zip(starts, ends, strict=True)]
    t = 1000 * (1 - (sum(dist[:stage]) + (1 - r) * dist[stage]) / sum(dist))
    torch.testing.assert_close(inp.timestep, t, atol=1e-3, rtol=0)
    assert (inp.stage, inp.frame) == (stage, frame)
    # history: frames 0, 1 (the most recent at the current stage), one shared sigma
    assert inp.history_sigma == pytest.approx(sigma)
    assert [j for _, j in inp.history] == [0, 1]
    for (h, _), stage_j in zip(inp.history, [max(stage - 1, 0), stage], strict=True):
        n_j = torch.randn(h.shape, generator=g)
        clean = pool(data["latents"][:, :, _], 2 ** (2 - stage_j))
        torch.testing.assert_close(h, sigma * n_j + (1 - sigma) * clean, atol=1e-6, rtol=0)
    drop = torch.rand(B, generator=g) < model.config.text_dropout
    assert torch.equal(inp.drop, drop)
    assert inp.text is data["text"] and inp.text_mask is data["text_mask"]


def test_loss_is_the_mse_of_the_model_on_those_inputs():
    model = randomized().train()
    data = batch()
    torch.manual_seed(3)
    out = model.loss(data)
    torch.manual_seed(3)
    inp = model.flow_inputs(data)
    v = model(
        inp.x_t,
        inp.timestep,
        history=inp.history,
        frame_index=inp.frame,
        history_sigma=inp.history_sigma,
        text=inp.text,
        text_mask=inp.text_mask,
        drop=inp.drop,
    )
    torch.testing.assert_close(out["loss"], F.mse_loss(v, inp.target), rtol=0, atol=1e-6)
    # the trained stage reports its loss, the others None (the trainer skips them)
    assert set(out) == {"loss", "loss_s0", "loss_s1", "loss_s2"}
    assert [k for k in ("loss_s0", "loss_s1", "loss_s2") if out[k] is not None] == [
        f"loss_s{inp.stage}"
    ]
    assert model.num_tokens(data) == B * T * 8 * 8  # patch 2


def test_history_sigma_is_shared_passed_to_the_model_and_zero_keeps_history():
    model = randomized().train()
    data = batch(text=False)
    calls = forward_kwargs(model, lambda: model.loss(data))
    assert len(calls) == 1 and isinstance(calls[0]["history_sigma"], float)
    frames = list(data["latents"][:, :, :2].unbind(2))
    inp = model.flow_inputs(data, stage=2, frame=2, generator=gen(1))
    # h = s*n + (1 - s)*x with ONE s: the implied noise is unit Gaussian in every frame
    for (h, _), (x, _) in zip(inp.history, compress_history(frames, 2, 3), strict=True):
        assert not torch.allclose(h, x)
        noise = (h - (1 - inp.history_sigma) * x) / inp.history_sigma
        assert abs(float(noise.std()) - 1) < 0.2 and abs(float(noise.mean())) < 0.2
    model = randomized(history_noise_max=0.0).train()
    inp = model.flow_inputs(data, stage=1, frame=2, generator=gen(1))
    assert inp.history_sigma == 0.0
    for (h, j), (x, k) in zip(inp.history, compress_history(frames, 1, 3), strict=True):
        assert j == k and torch.equal(h, x)
    assert model.flow_inputs(data, stage=1, frame=0, generator=gen(1)).history == []


def test_text_dropout_rows_get_the_null_text():
    model = randomized(text_dropout=0.5).train()
    data = {**batch(), "latents": torch.randn(64, C, 1, RES, RES, generator=gen(2))}
    data["text"] = torch.randn(64, 5, 16, generator=gen(3))
    data["text_mask"] = None
    inp = model.flow_inputs(data, generator=gen(4))
    assert inp.drop.shape == (64,) and 16 < int(inp.drop.sum()) < 48
    calls = forward_kwargs(model, lambda: model.loss(data))
    assert calls[0]["drop"] is not None and calls[0]["text"] is data["text"]
    with torch.no_grad():
        x, t = inp.x_t, inp.timestep
        v = model(x, t, text=data["text"], drop=inp.drop)
        null = model(x, t)  # no text: the null text
        cond = model(x, t, text=data["text"])
    d = inp.drop
    torch.testing.assert_close(v[d], null[d], atol=1e-6, rtol=0)
    torch.testing.assert_close(v[~d], cond[~d], atol=1e-6, rtol=0)
    assert not torch.allclose(cond[d], null[d], atol=1e-3)
    # no dropout outside training, nor with text_dropout 0
    assert model.eval().flow_inputs(data, generator=gen(4)).drop is None
    assert randomized(text_dropout=0.0).train().flow_inputs(data).drop is None


def test_loss_decreases_on_fixed_data():
    torch.manual_seed(0)
    model = PyramidDiT(preset("tiny", text_dim=0)).train()
    # smooth latents (4x4 blocks): learnable structure at every stage
    base = torch.randn(4, C, T, 4, 4, generator=gen(1))
    data = {"latents": base.repeat_interleave(4, -1).repeat_interleave(4, -2)}

    def held_out() -> float:
        with torch.no_grad():
            losses = []
            for s in range(12):
                inp = model.flow_inputs(data, generator=gen(100 + s))
                v = model(inp.x_t, inp.timestep, history=inp.history, frame_index=inp.frame)
                losses.append(F.mse_loss(v, inp.target).item())
        return sum(losses) / len(losses)

    before = held_out()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss = model.loss(data)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out()
    assert after < 0.7 * before, (before, after)


def test_bad_batches_are_one_line_errors():
    model = randomized()
    with pytest.raises(KinemaError, match=r"latents must be \(B, C=4, T, H, W\)"):
        model.loss({"latents": torch.randn(2, 3, 2, 16, 16)})
    with pytest.raises(KinemaError, match=r"frame must be in \[0, 2\]"):
        model.flow_inputs(batch(), frame=3)
    with pytest.raises(KinemaError, match="stage must be in"):
        model.flow_inputs(batch(), stage=3)
    with pytest.raises(KinemaError, match="no text"):
        randomized(text_dim=0).loss(batch())


def test_schedule_comes_from_the_config():
    model = PyramidDiT(preset("tiny", stages=2))
    assert model.schedule == model.config.schedule()
    assert model.schedule.stages == 2 and model.schedule.num_train_timesteps == 1000


# ---------------------------------------------------------------------------- data, training


@pytest.fixture(scope="module")
def kl_shards(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("flow")
    tok = tiny_tokenizer(root / "tok", quantizer="kl", kl_channels=4)
    return tok, physics_shards(tok, root / "shards")


def test_latent_dataset_items_and_captions(kl_shards, tmp_path):
    _, shards = kl_shards
    encoder = ByteTextEncoder(dim=16, max_length=8, n_layers=0)
    ds = LatentClipDataset(str(shards), encoder)
    assert len(ds) == 6 and ds.latent_shape == (4, 2, 8, 8)
    item = ds[1]
    assert item["latents"].shape == (4, 2, 8, 8) and item["latents"].dtype == torch.float32
    assert item["text"].shape == (8, 16) and item["text_mask"].shape == (8,)
    assert item["text_mask"].any() and item["text"] is ds[1]["text"]  # encoded once
    assert "text" not in LatentClipDataset(str(shards))[0]
    fsq = tiny_tokenizer(tmp_path / "fsq", fsq_levels=(5, 5, 5))
    with pytest.raises(KinemaError, match="holds discrete tokens; a flow model needs"):
        LatentClipDataset(physics_shards(fsq, tmp_path / "tokens", n=2))


def test_train_flow_logs_stage_losses_and_exports_with_tokenizer(kl_shards, tmp_path):
    tok, shards = kl_shards
    data = LatentClipDataset(str(shards), ByteTextEncoder(dim=16, max_length=8, n_layers=0))
    config = preset("tiny", latent_channels=4, frames=2, resolution=8)
    train = TrainConfig(
        steps=6,
        batch_size=3,
        lr=1e-3,
        warmup_steps=1,
        log_every=6,
        save_every=0,
        out_dir=str(tmp_path / "run"),
        tensorboard=False,
        progress=False,
    )
    out = train_flow(config, data, train, tokenizer=str(tok))
    assert out == tmp_path / "run" / "model"
    model = PyramidDiT.from_pretrained(out)
    assert model.config == config
    assert (out / "tokenizer" / "config.json").is_file()
    with open(tmp_path / "run" / "metrics.csv") as f:
        row = {k: float(v) for k, v in list(csv.DictReader(f))[-1].items()}
    stage_losses = [row[f"loss_s{k}"] for k in range(3)]
    # each stage loss is averaged over the steps that trained it (NaN: no such step), so
    # the overall loss lies between the stage losses that were measured
    seen = [v for v in stage_losses if not math.isnan(v)]
    assert seen and min(seen) <= row["loss"] + 1e-9 and row["loss"] <= max(seen) + 1e-9
    with pytest.raises(KinemaError, match="does not match the data"):
        train_flow(config.replace(frames=3), data, train)
    with pytest.raises(KinemaError, match="text encoder gives 8 x 16 states"):
        train_flow(config.replace(text_dim=32), data, train)
