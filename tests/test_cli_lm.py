"""`kinema train lm` and `kinema generate` end to end on a tiny tokenizer and LM."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kinema.cli import app
from kinema.io import probe
from kinema.lm import TokenLM
from kinema.sample.video import generate_video

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from flow_testing import tiny_tokenizer  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Path:
    return tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tok", fsq_levels=(5, 5, 5))


@pytest.mark.parametrize("block", ["1x1x8", "1x1x1"])
def test_train_lm_then_generate(tokenizer, tmp_path, real_videos, block):
    out = tmp_path / "lm"
    res = runner.invoke(
        app,
        [
            "train",
            "lm",
            "--data",
            "physics",
            "--n",
            "8",
            "--tokenizer",
            str(tokenizer),
            "--preset",
            "tiny",
            "--block",
            block,
            "--resolution",
            "32",
            "--frames",
            "5",
            "--cond-frames",
            "1",
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
    # 5 x 32 x 32 physics clips through a 4x4x4 tokenizer: 2 x 8 x 8 tokens, 1 of them given
    lm = TokenLM.from_pretrained(out / "model")
    assert lm.config.latent_shape == (1, 8, 8) and lm.config.vocab_size == 125
    assert lm.config.block_shape == tuple(int(x) for x in block.split("x"))
    assert (out / "model" / "tokenizer" / "config.json").is_file()
    video = out / "gen.mp4"
    res = runner.invoke(
        app,
        [
            "generate",
            "--model",
            str(out / "model"),
            "--video",
            str(real_videos[2]),
            "--out",
            str(video),
            "--n",
            "2",
            "--top-k",
            "5",
        ],
    )
    assert res.exit_code == 0, res.output
    info = probe(video, count=True)
    assert info.frames == 5  # 1 given latent frame (1 frame) + 1 generated (4 frames)
    a = generate_video(out / "model", 2, video=real_videos[2], seed=3)
    b = generate_video(out / "model", 2, video=real_videos[2], seed=3)
    assert a.shape == (2, 5, 32, 32, 3) and np.array_equal(a, b)  # seeded


def test_init_next_token_from_a_next_block_model(tokenizer, tmp_path):
    """--init with another --block: a next-token model fine-tuned from a next-block one (one
    step at a negligible lr keeps the weights; the start block is the source's row 0)."""
    import torch

    common = ["--data", "physics", "--n", "4", "--tokenizer", str(tokenizer), "--preset",
              "tiny", "--resolution", "32", "--frames", "5", "--cond-frames", "1",
              "--batch-size", "2", "--warmup", "1", "--threads", "1"]  # fmt: skip
    nbp, ntp = tmp_path / "nbp", tmp_path / "ntp"
    res = runner.invoke(app, ["train", "lm", *common, "--block", "1x1x8", "--steps", "1",
                              "--out", str(nbp)])  # fmt: skip
    assert res.exit_code == 0, res.output
    tune = ["--lr", "1e-12", "--init", str(nbp / "model"), "--out", str(ntp)]
    res = runner.invoke(app, ["train", "lm", *common, "--block", "1x1x1", "--steps", "1", *tune])
    assert res.exit_code == 0, res.output
    src, dst = (TokenLM.from_pretrained(d / "model") for d in (nbp, ntp))
    assert dst.config.block_shape == (1, 1, 1) and src.config.block_shape == (1, 1, 8)
    assert torch.allclose(dst.start, src.start[:1], atol=1e-6)
    assert torch.allclose(dst.tok_embed.weight, src.tok_embed.weight, atol=1e-6)


def test_generate_errors(tokenizer, tmp_path):
    p = tmp_path / "m"
    from kinema.lm import preset

    TokenLM(preset("tiny", latent_shape=(1, 4, 4))).save_pretrained(p)
    res = runner.invoke(app, ["generate", "--model", str(p), "--out", str(tmp_path / "x.mp4")])
    assert res.exit_code != 0 and "tokenizer/" in str(res.exception)
    res = runner.invoke(app, ["train", "lm", "--data", "physics", "--block", "2by3"])
    assert res.exit_code != 0 and "1x1x16" in str(res.exception)
