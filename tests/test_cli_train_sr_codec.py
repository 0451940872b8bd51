"""`kinema train audio-codec` and `kinema train sr` (with its paired shards): the models
that multitask (VideoPoet) shards and the super-resolution cascade need, from the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from kinema.api import load_superres
from kinema.audio import AudioCodec
from kinema.cli import app
from kinema.errors import KinemaError
from kinema.lm.superres_data import SuperResPairs
from kinema.tokenizer.shards import ShardDataset

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from flow_testing import tiny_tokenizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


def invoke(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Path:
    """4x spatial compression: 32x32 -> 8x8 tokens, 16x16 -> 4x4, 125 codes."""
    return tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tok", fsq_levels=(5, 5, 5))


def encode(tok: Path, out: Path, resolution: int, seed: int = 0, n: int = 6) -> Path:
    invoke(
        "tokenizer", "encode", "physics", "--n", n, "--tokenizer", tok, "--resolution",
        resolution, "--frames", 5, "--seed", seed, "--threads", 1, "--out", out,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def pairs(tok, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("shards")
    return encode(tok, root / "lo", 16), encode(tok, root / "hi", 32)


def test_pairs_are_the_same_clips_at_two_sizes(pairs):
    ds = SuperResPairs(*pairs)
    assert (len(ds), ds.lr_shape, ds.scale) == (6, (2, 4, 4), 2)
    lo, hi = ShardDataset(pairs[0]), ShardDataset(pairs[1])
    for i in range(6):
        item = ds[i]
        assert torch.equal(item["tokens_lr"], lo[i]["tokens"])
        assert torch.equal(item["tokens_hr"], hi[i]["tokens"])
        assert item["tokens_hr"].shape == (2, 8, 8) and item["tokens_lr"].dtype == torch.long


def test_pairs_refuse_other_clips(tok, pairs, tmp_path):
    other = encode(tok, tmp_path / "other", 32, seed=1)
    with pytest.raises(KinemaError, match="not the same clips.*seed"):
        SuperResPairs(pairs[0], other)
    with pytest.raises(KinemaError, match="integer factor"):
        SuperResPairs(pairs[0], pairs[0])


def test_train_sr_exports_a_cascade_folder(pairs, tmp_path):
    out = tmp_path / "sr"
    invoke(
        "train", "sr", "--lr-data", pairs[0], "--hr-data", pairs[1], "--preset", "tiny",
        "--steps", 40, "--batch-size", 6, "--lr", "3e-3", "--warmup", 2, "--precision",
        "fp32", "--save-every", 0, "--threads", 1, "--out", out,
    )  # fmt: skip
    model, lr_tok, hr_tok = load_superres(out / "model", upscale=2)
    c = model.config
    assert (c.lr_shape, c.scale, c.lr_vocab_size, c.hr_vocab_size) == ((2, 4, 4), 2, 125, 125)
    assert lr_tok.vocab_size == hr_tok.vocab_size == 125
    # scored on the training pairs (same masks for both): far below an untrained model's
    ds = SuperResPairs(*pairs)
    batch = {k: torch.stack([ds[i][k] for i in range(6)]) for k in ("tokens_lr", "tokens_hr")}
    fresh_model = type(model)(c)
    losses = []
    for m in (model, fresh_model):
        torch.manual_seed(0)
        with torch.no_grad():
            losses.append(m.train().loss(batch)["loss"].item())
    trained, fresh = losses
    assert trained < 0.8 * fresh, (trained, fresh)


def test_train_audio_codec_exports_a_codec(tmp_path):
    out = tmp_path / "codec"
    invoke(
        "train", "audio-codec", "--preset", "tiny", "--n", 8, "--frames", 5, "--steps", 30,
        "--click-steps", 4, "--click-vq-steps", 3, "--batch-size", 2, "--warmup", 2,
        "--save-every", 0, "--threads", 1, "--out", out,
    )  # fmt: skip
    # stage 1 on isolated clicks with the RVQ bypassed (its codebooks never initialised),
    # stage 2 on them with the RVQ, stage 3 on the sound; each a run of its own
    stage = AudioCodec.from_pretrained(out / "clicks" / "model")
    assert not bool(stage.quantizer.layers[0].initialized) and stage.config.vq_start == 4
    steps = {
        name: json.loads((out / sub / "checkpoints" / "latest.json").read_text())["step"]
        for name, sub in (("clicks", "clicks"), ("clicks-vq", "clicks-vq"), ("sound", "."))
    }
    assert steps == {"clicks": 4, "clicks-vq": 3, "sound": 30}, steps
    quantized = AudioCodec.from_pretrained(out / "clicks-vq" / "model")
    assert bool(quantized.quantizer.layers[0].initialized) and quantized.config.vq_start == 0
    codec = AudioCodec.from_pretrained(out / "model").eval()
    assert bool(codec.quantizer.layers[0].initialized) and codec.config.vq_start == 0
    # stage 3 started from stage 2's weights: its codebook moved on from there, not anew
    assert not torch.equal(
        codec.quantizer.layers[0].codebook, quantized.quantizer.layers[0].codebook
    )
    assert (codec.config.levels, codec.config.codebook_size) == (2, 64)
    wave = torch.randn(1, 1, 1600) * 0.1
    codes = codec.encode(wave)
    assert codes.shape == (1, 5, 2) and int(codes.max()) < 64
    assert codec.decode(codes).shape == (1, 1, 1600)
    # --init fine-tunes from the export: one step at a negligible lr keeps its weights
    tuned_out = tmp_path / "tuned"
    invoke(
        "train", "audio-codec", "--preset", "tiny", "--n", 8, "--frames", 5, "--steps", 1,
        "--batch-size", 2, "--lr", 1e-12, "--warmup", 0, "--save-every", 0, "--threads", 1,
        "--seed", 5, "--click-steps", 0, "--init", out / "model", "--out", tuned_out,
    )  # fmt: skip
    tuned = AudioCodec.from_pretrained(tuned_out / "model").state_dict()
    fresh = AudioCodec(codec.config).state_dict()
    for name, value in codec.state_dict().items():
        if value.is_floating_point() and "ema" not in name and "codebook" not in name:
            torch.testing.assert_close(tuned[name], value, rtol=0, atol=1e-6)
    name = "encoder.net.0.weight"
    assert (tuned[name] - fresh[name]).abs().max() > 1e-2
    res = runner.invoke(app, [
        "train", "audio-codec", "--preset", "cpu", "--steps", 1, "--click-steps", 0,
        "--click-vq-steps", 0, "--init", str(out / "model"),
        "--out", str(tmp_path / "bad"),
    ])  # fmt: skip
    assert res.exit_code != 0 and "same config needed" in str(res.exception or res.output)


def test_train_commands_refuse_bad_options(pairs, tmp_path):
    res = runner.invoke(app, ["train", "audio-codec", "--preset", "nope", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "unknown audio codec preset" in str(res.exception or res.output)
    res = runner.invoke(
        app, ["train", "sr", "--lr-data", str(pairs[0]), "--hr-data", str(tmp_path)]
    )
    assert res.exit_code != 0 and "not a shard folder" in str(res.exception or res.output)
