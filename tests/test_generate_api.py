"""`kinema.generate`: shapes, seeding, progress, image-to-video, the method check, bounds
and the default (shipped) model, on tiny random model folders."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import kinema
from kinema import hub
from kinema.errors import KinemaError

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from model_folders import flow_folder, lm_folder  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = dict(steps=1, video_steps=1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "flow": flow_folder(root / "flow", text=True),
        "nbp": lm_folder(root / "nbp"),
        "ntp": lm_folder(root / "ntp", block=(1, 1, 1)),
    }


def test_generate_is_exported_lazily():
    assert "generate" in dir(kinema) and kinema.generate.__module__ == "kinema.api"


def test_flow_shape_seed_and_progress(folders):
    reports = []
    a = kinema.generate(
        "a red ball", model=folders["flow"], n=2, seed=1, progress=lambda *r: reports.append(r)
    )
    assert a.shape == (2, 5, 32, 32, 3) and a.dtype == np.uint8
    # 1 generated latent frame after the first: 20 + 10 Euler steps per stage by default
    assert reports[-1] == (90, 90) and len(reports) == 90
    b = kinema.generate("a red ball", model=folders["flow"], n=2, seed=1)
    c = kinema.generate("a red ball", model=folders["flow"], n=2, seed=2, **FAST)
    assert np.array_equal(a, b) and not np.array_equal(a[:, 1:], c[:, 1:])
    first = kinema.generate(model=folders["flow"], frames=1, steps=[1, 2, 1])
    assert first.shape == (1, 1, 32, 32, 3)


def test_flow_prompt_defaults_to_flow_guidance(folders):
    """A prompt without a scale samples with FLOW_GUIDANCE (first, later frames): the same
    videos as those scales given explicitly, other videos than guidance 0."""
    from kinema.api import FLOW_GUIDANCE

    kw = dict(model=folders["flow"], seed=3, **FAST)
    default = kinema.generate("a red ball", **kw)
    explicit = kinema.generate(
        "a red ball", guidance=FLOW_GUIDANCE[0], video_guidance_scale=FLOW_GUIDANCE[1], **kw
    )
    unguided = kinema.generate("a red ball", guidance=0.0, video_guidance_scale=0.0, **kw)
    assert np.array_equal(default, explicit) and not np.array_equal(default, unguided)


def test_token_lm_image_to_video(folders, tmp_path):
    from PIL import Image

    still = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    png = tmp_path / "first.png"
    Image.fromarray(still).save(png)  # read as a file, resized like the array
    reports = []
    a = kinema.generate(
        model=folders["nbp"], method="nbp", image=png, seed=3, progress=lambda *r: reports.append(r)
    )
    b = kinema.generate(model=folders["nbp"], image=still, seed=3)
    assert a.shape == (1, 5, 32, 32, 3) and np.array_equal(a, b)
    assert reports[-1] == (8, 8)  # 64 tokens in blocks of 8
    ntp = kinema.generate(model=folders["ntp"], method="ntp", n=2, seed=0, temperature=0.5)
    assert ntp.shape == (2, 1, 32, 32, 3)  # no given frame: the generated latent frame


@pytest.mark.parametrize(
    ("model", "kw", "message"),
    [
        ("ntp", {"method": "nbp"}, "holds a next-token (ntp, 1x1x1 block) token-LM model, not nbp"),
        ("nbp", {"method": "pyramid-flow"}, "not pyramid-flow; use --method nbp or auto"),
        ("flow", {"method": "token-lm"}, "holds a pyramid-flow model, not token-lm"),
        ("flow", {"method": "mystery"}, "unknown method 'mystery'"),
        ("flow", {"frames": 999}, r"frames must be in [1, 257], got 999"),
        ("flow", {"n": 17}, "n must be in [1, 16], got 17"),
        ("flow", {"seed": -1}, "seed must be in"),
        ("flow", {"guidance": float("nan")}, "guidance must be in [0.0, 20.0], got nan"),
        ("flow", {"steps": 0}, "steps must be integers in [1, 200] (per stage), got 0"),
        ("flow", {"video_steps": [1, 500, 1]}, "video_steps must be integers in [1, 200]"),
        ("flow", {"frames": 2.5}, "frames must be an integer, got 2.5"),
        ("flow", {"image": np.zeros((4, 4, 3), np.uint8), "video": "x.mp4"}, "not both"),
        ("flow", {"temperature": 1.0}, "pyramid-flow models take no temperature"),
        ("nbp", {"steps": 4}, "token-LM models decode one block per step"),
        ("nbp", {"frames": 5}, "this token LM makes 1 frames here"),
        ("nbp", {"prompt": "x" * 1001}, "prompt has 1001 characters; at most 1000"),
    ],
)
def test_bad_options_are_one_line_errors(folders, model, kw, message):
    with pytest.raises(KinemaError) as err:
        kinema.generate(model=folders[model], **kw)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_default_model_is_the_shipped_one(folders, tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "SHIPPED", tmp_path)
    with pytest.raises(KinemaError) as err:
        kinema.generate("a red ball")
    message = str(err.value)
    assert "ships none of flow-small, lm-physics-nbp, lm-physics-ntp yet" in message
    assert "recipes/" in message and "\n" not in message
    with pytest.raises(KinemaError, match="none of lm-physics-ntp yet"):
        kinema.generate(method="ntp")
    # a shipped model is a folder in SHIPPED; auto prefers pyramid-flow, then nbp
    (tmp_path / "lm-physics-nbp").symlink_to(folders["nbp"])
    assert hub.default_model() == "lm-physics-nbp"
    assert kinema.generate(seed=0).shape == (1, 1, 32, 32, 3)
    (tmp_path / "flow-small").symlink_to(folders["flow"])
    assert hub.default_model() == "flow-small" and hub.default_model("nbp") == "lm-physics-nbp"
    assert kinema.generate("a red ball", frames=1, steps=1).shape == (1, 1, 32, 32, 3)


def test_shipped_model_may_name_a_shipped_tokenizer(folders, tmp_path, monkeypatch):
    """tokenizer.json {"shipped": NAME} stands in for a tokenizer/ copy; a bad one is a
    one-line error naming the file and the shipped tokenizers."""
    import shutil

    monkeypatch.setattr(hub, "SHIPPED", tmp_path)
    shutil.copytree(folders["nbp"] / "tokenizer", tmp_path / "tok-a")
    model = tmp_path / "lm-physics-nbp"
    shutil.copytree(folders["nbp"], model, ignore=shutil.ignore_patterns("tokenizer"))
    (model / "tokenizer.json").write_text('{"shipped": "tok-a"}')
    assert hub.tokenizer_folder("lm-physics-nbp") == tmp_path / "tok-a"
    reference = kinema.generate(model=folders["nbp"], seed=1)
    assert np.array_equal(kinema.generate(seed=1), reference)
    (model / "tokenizer.json").write_text('{"shipped": "tok-b"}')
    with pytest.raises(KinemaError) as err:
        kinema.generate(seed=1)
    assert "tokenizer.json' must be" in str(err.value) and "tok-a" in str(err.value)
    assert "\n" not in str(err.value)


def test_the_shipped_models_load_with_their_tokenizers():
    for name in ("flow-small", "lm-physics-nbp"):
        assert hub.tokenizer_folder(name).parent == hub.SHIPPED
        assert hub.model_kind(hub.tokenizer_folder(name)) == "tokenizer"


def test_the_shipped_multitask_model_runs_a_masked_task():
    """lm-physics-multitask: its tasks, its codec, and inpainting that keeps the visible
    tokens of a physics clip."""
    from kinema.api import generate_media, load_audio_codec
    from kinema.data import build_dataset
    from kinema.io import to_tensor, to_uint8
    from kinema.sample.video import load_lm

    net, tok = load_lm("lm-physics-multitask")
    assert set(net.config.vocabulary.tasks) == {
        "t2v", "i2v", "continuation", "inpaint", "outpaint", "stylize:edges", "v2a",
    }  # fmt: skip
    assert net.config.block_shape == (1, 1, 1)  # next-token, fine-tuned from next-block
    assert hub.tokenizer_folder("lm-physics-multitask") == hub.SHIPPED / "tokenizer-cpu-fsq"
    assert load_audio_codec("lm-physics-multitask").config.levels == 4
    clip = to_uint8(build_dataset("physics", length=1, resolution=64, num_frames=17)[0]["video"])
    out = generate_media(
        model="lm-physics-multitask", task="inpaint", mask="box:4,4,12,12", video=clip, seed=0
    )
    given = tok.encode(to_tensor(clip)[None])[0].numpy()
    hidden = np.zeros((5, 16, 16), dtype=bool)
    hidden[:, 4:12, 4:12] = True
    assert out.video.shape == (1, 17, 64, 64, 3)
    assert (out.tokens[0][~hidden] == given[~hidden]).all()
