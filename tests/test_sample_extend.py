"""Long-video extension (conditioning on the previous output's last frames) and task
chaining, for multitask and single-task token LMs."""

from __future__ import annotations

import pytest
import torch

from kinema.errors import KinemaError
from kinema.lm import TokenLM, preset
from kinema.lm.vocab import Vocabulary
from kinema.sample.extend import chain, extend, new_frames
from kinema.tokenizer import Tokenizer, TokenizerConfig

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = Vocabulary(visual_size=16, audio_levels=2, audio_codebook=8)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    """16 x 16 frames -> 4 x 4 latents, 4x time, FSQ 16 codes (untrained: tokens are what
    matter here)."""
    torch.manual_seed(0)
    cfg = TokenizerConfig(
        spatial_compression=4,
        resolution=16,
        num_frames=9,
        base_channels=8,
        channel_mult=(1, 1, 1),
        fsq_levels=(4, 4),
        norm_groups=4,
    )
    return Tokenizer(cfg).eval()


def lm(**kw) -> TokenLM:
    torch.manual_seed(0)
    opts = dict(latent_shape=(3, 4, 4), block_shape=(1, 1, 4), vocab_size=16)
    return TokenLM(preset("tiny", **{**opts, **kw})).eval()


def multitask(**kw) -> TokenLM:
    return lm(vocabulary=VOCAB, audio_frames=4, text_dim=8, max_text_len=2, **kw)


def video(frames: int = 9, b: int = 2) -> torch.Tensor:
    return torch.rand(b, 3, frames, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize(
    "build, overlap, new",
    [
        (multitask, 2, 1),  # the continuation task
        (multitask, 1, 2),
        (lambda: lm(cond_frames=1), 1, 3),  # conditioning frames in the prefix
        (lambda: lm(), 1, 2),  # given frames as a prompt of the decode loop
    ],
)
def test_extend_length_and_conditioning(tok, build, overlap, new):
    model = build()
    assert new_frames(model, overlap) == new
    x = video()
    times, ft = 3, 4
    out = extend(model, tok, x, times=times, overlap_latent_frames=overlap, seed=0)
    assert out.video.shape == (2, 3, 9 + times * ft * new, 16, 16)
    assert torch.equal(out.video[:, :, :9], x)  # the input is kept as is
    need = 1 + ft * (overlap - 1)
    assert len(out.rounds) == times
    for r, tokens in enumerate(out.rounds):
        assert tokens.shape == (2, overlap + new, 4, 4)
        end = 9 + r * ft * new  # the video before round r
        # round r conditions on the encoded last frames of the previous output...
        assert torch.equal(tokens[:, :overlap], tok.encode(out.video[:, :, end - need : end]))
        # ...and appends the decoded frames of what it generated
        decoded = tok.decode(tokens).clamp(-1, 1)[:, :, need:]
        torch.testing.assert_close(out.video[:, :, end : end + ft * new], decoded)
    again = extend(model, tok, x, times=times, overlap_latent_frames=overlap, seed=0)
    assert torch.equal(again.video, out.video)


def test_extend_errors(tok):
    with pytest.raises(KinemaError, match="exactly 1 latent frames"):
        extend(lm(cond_frames=1), tok, video(), times=1, overlap_latent_frames=2)
    with pytest.raises(KinemaError, match="T >= 5 frames"):
        extend(multitask(), tok, video(frames=1), times=1, overlap_latent_frames=2)
    with pytest.raises(KinemaError, match="times"):
        extend(multitask(), tok, video(), times=0, overlap_latent_frames=1)


def test_chain_runs_each_task_on_the_previous_output(tok):
    model = multitask()
    steps = [
        "t2v",
        "stylize:edges",
        "v2a",
        "a2v",
        ("outpaint", {"mask": 1}),
        "i2v",
        ("extend", {"overlap": 2}),
        "t2i",
    ]
    text = torch.randn(2, 2, 8)
    res = chain(model, tok, steps, batch_size=2, text=text, seed=0, temperature=0.8)
    names = [name for name, _ in res.outputs]
    assert names == [s if isinstance(s, str) else s[0] for s in steps]
    out = dict(res.outputs)
    for name in ("t2v", "stylize:edges", "a2v", "outpaint"):
        assert out[name].shape == (2, 3, 4, 4) and out[name].max() < 16
    assert out["v2a"].shape == (2, 8) and out["v2a"].max() < VOCAB.audio_size
    assert out["i2v"].shape == (2, 2, 4, 4)  # frames 1, 2 after the kept image
    assert out["extend"].shape == (2, 1, 4, 4)
    assert out["t2i"].shape == (2, 1, 4, 4)
    assert res.audio is out["v2a"]
    assert res.video.shape == (2, 3, 1, 16, 16) and torch.equal(res.tokens, out["t2i"])
    # i2v keeps the image: starting from a given video, its first frame survives
    x = video()
    res = chain(model, tok, ["i2v"], video=x, seed=1)
    assert torch.equal(res.tokens[:, :1], tok.encode(x[:, :, :1]))
    assert torch.equal(res.tokens[:, 1:], res.outputs[0][1])
    # an audio-to-video chain from given audio tokens
    audio = torch.randint(0, VOCAB.audio_size, (2, 8))
    res = chain(model, tok, ["a2v"], audio=audio, seed=2)
    assert res.video.shape == (2, 3, 9, 16, 16)


def test_chain_errors(tok):
    model = multitask()
    with pytest.raises(KinemaError, match="needs a video"):
        chain(model, tok, ["v2a"])
    with pytest.raises(KinemaError, match="needs audio"):
        chain(model, tok, ["a2v"])
    with pytest.raises(KinemaError, match="takes no option"):
        chain(model, tok, [("t2v", {"colour": "red"})])
    with pytest.raises(KinemaError, match="needs a clip of 3 latent frames"):
        chain(model, tok, ["stylize:gray"], video=video(frames=5))
    with pytest.raises(KinemaError, match="multitask model"):
        chain(lm(), tok, ["t2v"])


def test_generate_video_runs_video_tasks_of_a_multitask_model(tok):
    import numpy as np

    from kinema.sample.video import generate_video

    model = multitask()
    clip = (np.random.default_rng(0).random((9, 16, 16, 3)) * 255).astype(np.uint8)
    assert generate_video((model, tok), 2).shape == (2, 9, 16, 16, 3)  # unconditional
    out = generate_video((model, tok), 2, video=clip, task="continuation", seed=3)
    assert out.shape == (2, 9, 16, 16, 3)
    assert generate_video((model, tok), 1, task="t2i").shape == (1, 1, 16, 16, 3)
    with pytest.raises(KinemaError, match="cannot make a video here"):
        generate_video((model, tok), 1, task="v2a")
    with pytest.raises(KinemaError, match="needs --video"):
        generate_video((model, tok), 1, task="i2v")
