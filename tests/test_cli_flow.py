"""`kinema train flow` and `kinema generate` on a pyramid-flow model end to end (tiny KL
tokenizer, tiny DiT), one-line errors with exit code 2, and `kinema bench pyramid`."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kinema.bench import BENCHMARKS
from kinema.cli import app, main
from kinema.flow import PyramidDiT
from kinema.io import probe, read_video
from kinema.tokenizer import Tokenizer

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from flow_testing import tiny_tokenizer  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """`kinema train flow` for 3 steps on 8 physics + 8 shapes clips (5 x 32 x 32 -> 2 x 8 x 8
    KL latents), conditioned on their captions."""
    root = tmp_path_factory.mktemp("flowcli")
    tok = tiny_tokenizer(root / "tok", quantizer="kl", kl_channels=4)
    out = root / "run"
    res = runner.invoke(
        app,
        [
            "train",
            "flow",
            "--data",
            "physics",
            "--data",
            "shapes",
            "--n",
            "8",
            "--tokenizer",
            str(tok),
            "--preset",
            "tiny",
            "--resolution",
            "32",
            "--frames",
            "5",
            "--steps",
            "3",
            "--batch-size",
            "4",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    return out / "model"


def test_train_flow_writes_a_loadable_folder_with_its_tokenizer(trained):
    model = PyramidDiT.from_pretrained(trained)
    c = model.config
    assert (c.latent_channels, c.frames, c.resolution) == (4, 2, 8)
    assert c.text_dim == 384  # all-MiniLM-L6-v2 states of the captions
    tok = Tokenizer.from_pretrained(trained / "tokenizer")
    assert not tok.is_discrete
    from kinema.tokenizer.shards import ShardDataset

    parts = [ShardDataset(trained.parent / "shards" / d) for d in ("0-physics", "1-shapes")]
    assert [len(p) for p in parts] == [8, 8]
    assert "ball" in parts[0][0]["caption"] and "ball" not in parts[1][0]["caption"]


def test_generate_writes_a_real_video(trained, tmp_path, real_videos):
    video = tmp_path / "gen.mp4"
    args = ["generate", "--model", str(trained), "--out", str(video), "--threads", "1"]
    fast = ["--steps", "2,1,1", "--video-steps", "1,1,1"]
    res = runner.invoke(app, [*args, *fast, "--prompt", "a red ball", "--guidance", "3"])
    assert res.exit_code == 0, res.output
    info = probe(video, count=True)
    assert (info.frames, info.width, info.height) == (5, 32, 32)
    frames = read_video(video)
    assert frames.shape == (5, 32, 32, 3) and frames.std() > 0
    # image-to-video: the first frame of a real clip, explicit method
    i2v = tmp_path / "i2v.mp4"
    res = runner.invoke(
        app,
        [*args[:4], str(i2v), *fast, "--video", str(real_videos[2]), "--method", "pyramid-flow"],
    )
    assert res.exit_code == 0, res.output
    assert probe(i2v, count=True).frames == 5
    one = tmp_path / "one.mp4"
    res = runner.invoke(app, [*args[:4], str(one), *fast, "--frames", "1", "--n", "2"])
    assert res.exit_code == 0, res.output
    assert probe(one, count=True).frames == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--steps", "2,2"], "steps must be 3 integers >= 1 (one per stage), got [2, 2]"),
        (["--steps", "a,b"], "--steps must be step counts per stage like 20,20,20"),
        (["--frames", "9"], "--frames must be 1 + 4k and at most 5"),
        (["--top-k", "5"], "--top-k: not an option of pyramid-flow models"),
        (["--method", "token-lm"], "holds a pyramid-flow model, not token-lm"),
        (["--class", "1"], "not class-conditional"),
    ],
)
def test_bad_generate_options_exit_2_with_one_line(
    trained, tmp_path, monkeypatch, capsys, extra, message
):
    argv = ["kinema", "generate", "--model", str(trained), "--out", str(tmp_path / "x.mp4")]
    monkeypatch.setattr(sys, "argv", [*argv, *extra])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_train_flow_refuses_token_shards(tmp_path):
    tok = tiny_tokenizer(tmp_path / "fsq", fsq_levels=(5, 5, 5))
    res = runner.invoke(
        app,
        ["train", "flow", "--data", "physics", "--n", "2", "--tokenizer", str(tok)]
        + ["--resolution", "32", "--frames", "5", "--out", str(tmp_path / "run")],
    )
    assert res.exit_code != 0 and "holds discrete tokens" in str(res.exception)


def test_bench_pyramid_runs(capsys, one_thread):
    assert BENCHMARKS["pyramid"] == "kinema.bench.pyramid"
    from kinema.bench.pyramid import main as bench

    bench(["--n", "1", "--repeats", "1", "--dtypes", "fp32", "--threads", "1"])
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if line.startswith("| fp32 |")]
    assert len(row) == 1 and row[0].rstrip().endswith("x |")
    speedup = float(row[0].split("|")[-2].strip().rstrip("x"))
    assert np.isfinite(speedup) and speedup > 0
