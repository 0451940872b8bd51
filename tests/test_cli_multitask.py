"""Multitask (VideoPoet) from the command line: shards with control and audio tokens,
`kinema train lm --tasks`, `kinema generate --task / --mask / --extend / --chain /
--upscale`, on a tiny tokenizer, audio codec and LM."""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from kinema.api import generate_media
from kinema.audio import AudioCodec
from kinema.audio import preset as codec_preset
from kinema.cli import app, main
from kinema.data import build_dataset
from kinema.io import probe, to_tensor, to_uint8, write_video
from kinema.lm import TokenLM
from kinema.lm.controls import control_video
from kinema.lm.superres import SuperResTransformer
from kinema.lm.superres_config import preset as sr_preset
from kinema.nn.precision import autocast as precision_autocast
from kinema.tokenizer import Tokenizer
from kinema.tokenizer.shards import ShardDataset

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from flow_testing import tiny_tokenizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
TASKS = "t2v:1,i2v:1,continuation:1,inpaint:1,outpaint:1,stylize:edges:1,v2a:1"
AUDIO_FRAMES = 8  # x 2 codec levels = 16 audio tokens: two blocks of 1x2x4


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Path:
    """5 x 32 x 32 clips -> 2 x 8 x 8 tokens of 125 codes."""
    return tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tok", fsq_levels=(5, 5, 5))


@pytest.fixture(scope="module")
def shards(tok, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    codec = AudioCodec(codec_preset("tiny")).save_pretrained(
        tmp_path_factory.mktemp("codec") / "codec"
    )
    out = tmp_path_factory.mktemp("shards") / "shards"
    res = invoke(
        "tokenizer", "encode", "physics", "--n", 4, "--tokenizer", tok, "--resolution", 32,
        "--frames", 5, "--batch-size", 4, "--controls", "edges,gray", "--audio-codec", codec,
        "--audio-frames", AUDIO_FRAMES, "--threads", 1, "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def model(tok, shards, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    res = invoke(
        "train", "lm", "--data", shards, "--tokenizer", tok, "--preset", "tiny", "--block",
        "1x2x4", "--tasks", TASKS, "--curriculum", "--steps", 3, "--batch-size", 2,
        "--warmup", 1, "--threads", 1, "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return out / "model"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A 5-frame 32 x 32 physics clip as a file and as uint8 (T, H, W, 3)."""
    frames = to_uint8(build_dataset("physics", length=1, resolution=32, num_frames=5)[0]["video"])
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_video(path, frames, fps=10)
    return path, frames


def test_encode_stores_control_and_audio_tokens(tok, shards):
    ds = ShardDataset(shards)
    assert ds.controls == ("edges", "gray")
    assert ds.audio == {"levels": 2, "codebook_size": 64, "frames": 8, "sample_rate": 16000}
    clips = build_dataset("physics", length=4, resolution=32, num_frames=5, seed=0)
    video = torch.stack([clips[i]["video"] for i in range(4)])
    tokenizer = Tokenizer.from_pretrained(tok).eval()
    with torch.no_grad(), precision_autocast("cpu"):  # as the shard writer
        tokens = tokenizer.encode(video)
        want = {name: tokenizer.encode(control_video(video, name)) for name in ds.controls}
    assert torch.equal(torch.stack([ds[i]["tokens"] for i in range(4)]), tokens.long())
    for name in ds.controls:
        got = torch.stack([ds[i][f"control:{name}"] for i in range(4)])
        # bf16 autocast: FSQ near-ties may round apart (up to 7 of 512 seen under pytest, 0
        # in a fresh process, where the shards match exactly); the rest must be identical
        assert got.dtype == torch.long and (got != want[name]).float().mean() <= 0.02, name
    item = ds[0]
    assert item["audio_tokens"].shape == (AUDIO_FRAMES * 2,) and "audio" not in item


def test_train_tasks_writes_a_multitask_model(model):
    lm = TokenLM.from_pretrained(model)
    vocab = lm.config.vocabulary
    assert vocab is not None and vocab.visual_size == 125
    assert (vocab.audio_levels, vocab.audio_codebook) == (2, 64)
    assert set(vocab.tasks) == {t.rpartition(":")[0] for t in TASKS.split(",")}
    assert lm.config.audio_frames == AUDIO_FRAMES and lm.config.latent_shape == (2, 8, 8)
    assert lm.config.text_dim == 384  # t2v / stylize: captions through all-MiniLM-L6-v2
    assert (model / "tokenizer" / "config.json").is_file()
    assert (model / "audio_codec" / "config.json").is_file()


def test_captions_reach_the_text_tasks_only(shards):
    """`train lm --tasks` with captions: t2v / stylize items carry the clip's caption states,
    the other tasks learn with the null text."""
    from kinema.lm import preset
    from kinema.lm.data import CaptionedClips, MultitaskDataset
    from kinema.lm.text import ByteTextEncoder
    from kinema.lm.vocab import Vocabulary

    torch.manual_seed(0)
    raw = ShardDataset(shards)
    encoder = ByteTextEncoder(dim=8, max_length=16).eval()
    clips = CaptionedClips(raw, encoder)
    tasks = ("t2v", "inpaint", "stylize:edges")
    vocab = Vocabulary(visual_size=125, tasks=tasks)
    config = preset(
        "tiny", vocab_size=vocab.size, latent_shape=(2, 8, 8), block_shape=(1, 2, 4),
        cond_frames=0, vocabulary=vocab, text_dim=8, max_text_len=16,
    )  # fmt: skip
    ds = MultitaskDataset(clips, config, tasks)
    n = len(raw)
    with torch.no_grad():
        want, mask = encoder([raw[1]["caption"]])
    t2v, inpaint, stylize = ds[1], ds[n + 1], ds[2 * n + 1]
    assert t2v["text"].shape == (16, 8) and t2v["text_mask"].sum() == mask.sum()
    assert torch.allclose(t2v["text"][: want.shape[1]], want[0])
    assert torch.equal(stylize["text"], t2v["text"])
    assert "text" not in inpaint


def test_inpaint_keeps_the_visible_tokens(model, tok, clip):
    _, frames = clip
    out = generate_media(model=model, task="inpaint", mask="box:2,2,6,6", video=frames, seed=1)
    given = Tokenizer.from_pretrained(tok).eval().encode(to_tensor(frames)[None])[0].numpy()
    hidden = np.zeros((2, 8, 8), dtype=bool)
    hidden[:, 2:6, 2:6] = True
    assert out.video.shape == (1, 5, 32, 32, 3) and out.tokens.shape == (1, 2, 8, 8)
    assert (out.tokens[0][~hidden] == given[~hidden]).all()


def test_generate_v2a_writes_a_wav(model, clip, tmp_path):
    out = tmp_path / "v2a.mp4"
    res = invoke("generate", "--model", model, "--task", "v2a", "--video", clip[0], "--out", out)
    assert res.exit_code == 0, res.output
    assert probe(out, count=True).frames == 5
    with wave.open(str(out.with_suffix(".wav"))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.getnframes() == AUDIO_FRAMES * 320  # code frames x hop length


def test_generate_extend_and_chain(model, clip, tmp_path):
    out = tmp_path / "long.mp4"
    res = invoke(
        "generate", "--model", model, "--task", "i2v", "--video", clip[0], "--extend", 2,
        "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert probe(out, count=True).frames == 5 + 2 * 4  # each round: one latent frame = 4 frames
    out = tmp_path / "chain.mp4"
    res = invoke(
        "generate", "--model", model, "--chain", "i2v,stylize:edges", "--video", clip[0],
        "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert probe(out, count=True).frames == 5


def test_generate_upscale(model, tok, clip, tmp_path):
    torch.manual_seed(0)
    sr = SuperResTransformer(
        sr_preset("tiny", lr_shape=(2, 8, 8), lr_vocab_size=125, hr_vocab_size=125)
    )
    folder = sr.save_pretrained(tmp_path / "sr")
    for sub in ("lr_tokenizer", "hr_tokenizer"):
        Tokenizer.from_pretrained(tok).save_pretrained(folder / sub)
    out = tmp_path / "up.mp4"
    res = invoke(
        "generate", "--model", model, "--task", "i2v", "--video", clip[0], "--upscale", 2,
        "--sr-model", folder, "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    info = probe(out, count=True)
    assert (info.frames, info.width, info.height) == (5, 64, 64)
    out = tmp_path / "long-up.mp4"  # 13 frames: 2.6 clips of the SR model, upscaled in 3
    res = invoke(
        "generate", "--model", model, "--task", "i2v", "--video", clip[0], "--extend", 2,
        "--upscale", 2, "--sr-model", folder, "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    info = probe(out, count=True)
    assert (info.frames, info.width, info.height) == (13, 64, 64)


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "--task", "inpaint", "--mask", "box:1,2"],
        ["generate", "--task", "inpaint", "--mask", "border:0"],
        ["generate", "--extend", "99"],
        ["generate", "--chain", "i2v,nope"],
        ["generate", "--upscale", "2"],
        ["generate", "--upscale", "1", "--sr-model", "x"],
        ["generate", "--task", "t2v", "--mask", "border:1"],
        ["train", "lm", "--data", "x", "--tasks", "t2v:-1"],
        ["train", "lm", "--data", "x", "--tasks", "bogus:1"],
        ["train", "lm", "--data", "x", "--curriculum"],
        ["tokenizer", "encode", "physics", "--n", "2", "--out", "x", "--audio-frames", "0"],
    ],
)
def test_bad_options_exit_2_with_one_line(args, model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if args[0] == "generate":
        args = [*args, "--model", str(model), "--out", str(tmp_path / "x.mp4")]
    monkeypatch.setattr(sys, "argv", ["kinema", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()  # refused before any work
