"""`kinema tokenizer train / eval / reconstruct / encode` end to end on a very small model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kinema.cli import app
from kinema.tokenizer import Tokenizer
from kinema.tokenizer.shards import ShardDataset

runner = CliRunner()
SMALL = ["--set", "base_channels=8", "--set", "channel_mult=[1,1,2]", "--set", "norm_groups=4"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok")
    res = runner.invoke(
        app,
        [
            "tokenizer",
            "train",
            "--preset",
            "cpu-fsq",
            *SMALL,
            "--data",
            "physics:2",
            "--data",
            "shapes",
            "--resolution",
            "32",
            "--frames",
            "5",
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--warmup",
            "1",
            "--save-every",
            "2",
            "--image-prob",
            "0.5",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    return out


def test_train_exports_a_loadable_tokenizer(trained):
    tok = Tokenizer.from_pretrained(trained / "model")
    assert tok.config.base_channels == 8 and tok.config.resolution == 32
    assert (trained / "checkpoints" / "step_000003").is_dir()
    assert (trained / "metrics.csv").read_text().count("\n") >= 2


def test_eval_reports_psnr_and_h264(trained, tmp_path, real_videos):
    js = tmp_path / "eval.json"
    res = runner.invoke(
        app,
        [
            "tokenizer",
            "eval",
            "--tokenizer",
            str(trained / "model"),
            "--videos",
            str(real_videos[1]),
            "--data",
            "physics",
            "--n",
            "2",
            "--size",
            "32",
            "--frames",
            "5",
            "--max-clips",
            "2",
            "--json",
            str(js),
        ],
    )
    assert res.exit_code == 0, res.output
    results = json.loads(js.read_text())["results"]
    phys = results["physics"]
    assert phys["clips"] == 2 and len(phys["rows"]) == 2
    # 2 x 8 x 8 tokens of log2(4375) bits over 5 x 32 x 32 pixels
    assert phys["mean"]["bpp"] == pytest.approx(2 * 8 * 8 * 12.095 / (5 * 32 * 32), rel=1e-3)
    assert phys["mean"]["h264_yuv420p_bpp"] <= phys["mean"]["bpp"]
    assert results[str(real_videos[1])]["clips"] == 2


def test_reconstruct_writes_side_by_side(trained, tmp_path, real_videos):
    out = tmp_path / "rec.mp4"
    res = runner.invoke(
        app,
        [
            "tokenizer",
            "reconstruct",
            str(real_videos[2]),
            str(out),
            "--tokenizer",
            str(trained / "model"),
            "--size",
            "32",
            "--frames",
            "9",
            "--chunk",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "PSNR" in res.output and out.stat().st_size > 0
    from kinema.io import probe

    info = probe(out, count=True)
    assert info.frames == 9 and info.width > 2 * 32


def test_encode_writes_shards(trained, tmp_path):
    out = tmp_path / "shards"
    res = runner.invoke(
        app,
        [
            "tokenizer",
            "encode",
            "physics",
            "--n",
            "6",
            "--out",
            str(out),
            "--tokenizer",
            str(trained / "model"),
            "--resolution",
            "32",
            "--frames",
            "5",
            "--shard-size",
            "4",
        ],
    )
    assert res.exit_code == 0, res.output
    ds = ShardDataset(out)
    assert len(ds) == 6 and ds[5]["tokens"].shape == (2, 8, 8) and "positions" in ds[5]


def test_tokenizer_cli_errors_are_one_line(trained, tmp_path):
    from kinema.cli import main

    cases = [
        ["tokenizer", "eval", "--tokenizer", str(trained / "model")],
        ["tokenizer", "eval", "--tokenizer", "no-such-model", "--data", "physics"],
        [
            "tokenizer",
            "encode",
            "physics",
            "--out",
            str(tmp_path / "x"),
            "--tokenizer",
            str(trained / "model"),
        ],
        ["tokenizer", "train", "--set", "nonsense", "--steps", "1"],
        ["tokenizer", "train", "--preset", "nope", "--steps", "1"],
    ]
    import subprocess
    import sys

    for args in cases:
        p = subprocess.run(
            [sys.executable, "-c", "from kinema.cli import main; main()", *args],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 2, (args, p.stderr)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, p.stderr)
    del main
