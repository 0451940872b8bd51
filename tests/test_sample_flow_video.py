"""Temporal pyramid-flow generation (generate_latents) and the model-folder -> video
convenience (generate_video on a PyramidDiT): seeding, shapes, given frames as history,
guidance, the KV-context path against the uncached path, and input errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kinema.errors import KinemaError
from kinema.flow import compress_history
from kinema.sample.flow import generate_latents
from kinema.sample.video import generate_video, load_model, model_method

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from flow_testing import randomized, tiny_tokenizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

N, C, RES = 2, 4, 16  # tiny preset: 3 latent frames of 4 x 16 x 16
FAST = dict(steps_first=[2, 1, 1], steps_later=[1, 1, 1])


def text(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(N, 5, dtype=torch.bool)
    mask[1, 3:] = False
    return {"text": torch.randn(N, 5, 16, generator=g), "text_mask": mask}


def test_seeded_shape_and_frame_count():
    model = randomized()
    a = generate_latents(model, N, seed=3, **text(), **FAST)
    b = generate_latents(model, N, seed=3, **text(), **FAST)
    c = generate_latents(model, N, seed=4, **text(), **FAST)
    assert a.shape == (N, C, 3, RES, RES) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert generate_latents(model, 1, frames=2, seed=0, **FAST).shape == (1, C, 2, RES, RES)
    wide = generate_latents(model, 1, frames=1, width=24, seed=0, **FAST)
    assert wide.shape == (1, C, 1, RES, 24)
    assert not model.training and model.transformer.layers[0].attn.kv_cache is None


def test_first_and_later_frames_use_their_own_steps():
    model, seen = randomized(), []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-1]))
    try:
        generate_latents(model, 1, frames=2, steps_first=[1, 2, 3], steps_later=[3, 1, 1])
    finally:
        handle.remove()
    assert seen == [4, 8, 8, 16, 16, 16] + [4, 4, 4, 8, 16]


def test_given_frames_are_kept_and_used_as_history():
    model = randomized()
    g = torch.Generator().manual_seed(1)
    cond = torch.randn(N, C, 2, RES, RES, generator=g)
    histories = []

    def record(m, args, kwargs):
        histories.append((args[0].shape[-1], kwargs["history"], kwargs["frame_index"]))

    handle = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        out = generate_latents(model, N, cond_latents=cond, seed=0, use_cache=False, **FAST)
    finally:
        handle.remove()
    assert out.shape == (N, C, 3, RES, RES)
    assert torch.equal(out[:, :, :2], cond)  # returned unchanged
    # the generated frame 2 sees frames 0 and 1, compressed by distance for each stage
    for side, history, frame_index in histories:
        stage = {4: 0, 8: 1, 16: 2}[side]
        want = compress_history(list(cond.unbind(2)), stage, 3)
        assert frame_index == 2 and [j for _, j in history] == [0, 1]
        for (h, _), (w, _) in zip(history, want, strict=True):
            assert torch.equal(h, w)
    other = generate_latents(model, N, cond_latents=cond.flip(0), seed=0, **FAST)
    assert not torch.allclose(other[:, :, 2], out[:, :, 2], atol=1e-3)  # same noise


def test_generated_frames_become_history():
    model, calls = randomized(), []
    handle = model.register_forward_pre_hook(
        lambda m, args, kwargs: calls.append((args[0].shape[-1], kwargs)), with_kwargs=True
    )
    try:
        out = generate_latents(model, N, seed=0, use_cache=False, **text(), **FAST)
    finally:
        handle.remove()
    last = [kw["history"] for side, kw in calls if side == RES and kw["frame_index"] == 2][-1]
    assert [j for _, j in last] == [0, 1]
    assert torch.equal(last[1][0], out[:, :, 1])  # the most recent at full resolution
    assert torch.equal(last[0][0], compress_history([out[:, :, 0]], 1, 3)[0][0])


def test_guidance_scale_one_is_the_conditional_path():
    model = randomized()
    cond = generate_latents(model, N, seed=5, **text(), **FAST)
    one = generate_latents(model, N, seed=5, guidance_scale=1.0, **text(), **FAST)
    torch.testing.assert_close(one, cond, atol=1e-5, rtol=0)
    zero = generate_latents(model, N, seed=5, guidance_scale=0.0, **text(), **FAST)
    null = generate_latents(model, N, seed=5, **FAST)  # no text: the null text
    torch.testing.assert_close(zero, null, atol=1e-5, rtol=0)
    strong = generate_latents(
        model, N, seed=5, guidance_scale=4.0, video_guidance_scale=2.0, **text(), **FAST
    )
    assert not torch.allclose(strong, cond, atol=1e-3)
    # the later frames use video_guidance_scale (default: guidance_scale)
    later = generate_latents(
        model, N, seed=5, guidance_scale=4.0, video_guidance_scale=1.0, **text(), **FAST
    )
    torch.testing.assert_close(later[:, :, 0], strong[:, :, 0], atol=1e-5, rtol=0)
    assert not torch.allclose(later[:, :, 1:], strong[:, :, 1:], atol=1e-3)


def test_kv_context_path_equals_the_uncached_path():
    model = randomized()
    cond = torch.randn(N, C, 1, RES, RES, generator=torch.Generator().manual_seed(2))
    kw = dict(seed=6, cond_latents=cond, guidance_scale=3.0, **text(), **FAST)
    cached = generate_latents(model, N, **kw)
    full = generate_latents(model, N, use_cache=False, **kw)
    torch.testing.assert_close(cached, full, atol=1e-4, rtol=0)
    assert not torch.allclose(cached[:, :, 1:], cond.expand(-1, -1, 2, -1, -1), atol=0.1)


def test_bf16_weights_keep_an_fp32_state():
    model = randomized()
    out = generate_latents(model, 1, frames=1, seed=0, dtype=torch.bfloat16, **FAST)
    assert out.dtype == torch.float32 and model.patch_embed.weight.dtype == torch.bfloat16
    assert torch.isfinite(out).all()


def test_packed_bf16_weights_sample_exactly_like_plain_bf16(monkeypatch):
    import kinema.nn.packed as packed

    model = randomized()
    kw = dict(frames=2, seed=0, dtype=torch.bfloat16, **FAST)
    out = generate_latents(model, 1, **kw)
    if not packed.packing_available(model.patch_embed.weight):
        pytest.skip("oneDNN bf16 packing is not available on this CPU")
    monkeypatch.setattr(packed, "packing_available", lambda weight: False)
    assert torch.equal(out, generate_latents(model, 1, **kw))


def test_packed_fp32_weights_sample_like_plain_fp32(monkeypatch):
    import kinema.nn.packed as packed

    model = randomized()
    kw = dict(frames=2, seed=0, **FAST)
    out = generate_latents(model, 1, **kw)
    if not packed.packing_available(model.patch_embed.weight):
        pytest.skip("oneDNN fp32 packing is not available")
    monkeypatch.setattr(packed, "packing_available", lambda weight: False)
    plain = generate_latents(model, 1, **kw)
    torch.testing.assert_close(out, plain, rtol=1e-4, atol=1e-4)  # fp32 summation order


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"frames": 4}, r"frames must be in \[1, 3\]"),
        ({"frames": 1, "cond_latents": torch.zeros(N, C, 1, RES, RES)}, r"frames must be in \[2"),
        ({"steps_first": [2, 2]}, r"steps_first must be 3 integers >= 1"),
        ({"steps_later": [1, 0, 1]}, r"steps_later must be 3 integers >= 1"),
        ({"guidance_scale": 2.0}, "guidance needs a text-conditioned model and text"),
        ({"cond_latents": torch.zeros(N, 3, 1, RES, RES)}, r"cond_latents must be \(B=2, C=4"),
        ({"cond_latents": torch.zeros(N, C, 1, 8, 8)}, r"cond_latents must be"),
        ({"width": 20}, r"width must be a multiple of patch_size \* 2\^\(stages-1\) = 8"),
    ],
)
def test_bad_arguments_are_one_line_errors(kw, match):
    with pytest.raises(KinemaError, match=match) as err:
        generate_latents(randomized(), N, **kw)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------- folder -> video


@pytest.fixture(scope="module")
def flow_folder(tmp_path_factory) -> Path:
    """A randomized tiny DiT on 2 x 8 x 8 latents with its tiny KL tokenizer (5 x 32 x 32)."""
    root = tmp_path_factory.mktemp("flowmodel")
    model = randomized(latent_channels=4, frames=2, resolution=8, text_dim=0)
    model.save_pretrained(root / "model")
    tiny_tokenizer(root / "model" / "tokenizer", quantizer="kl", kl_channels=4)
    return root / "model"


def test_generate_video_from_a_flow_folder(flow_folder, real_videos):
    assert model_method(flow_folder) == "pyramid-flow"
    a = generate_video(flow_folder, 2, seed=1, steps=[1, 1, 1], video_steps=[1, 1, 1])
    b = generate_video(flow_folder, 2, seed=1, steps=[1, 1, 1], video_steps=[1, 1, 1])
    assert a.shape == (2, 5, 32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    one = generate_video(flow_folder, 1, frames=1, steps=[1, 1, 1])
    assert one.shape == (1, 1, 32, 32, 3)
    i2v = generate_video(flow_folder, 1, video=real_videos[2], video_steps=[1, 1, 1])
    assert i2v.shape == (1, 5, 32, 32, 3)
    with pytest.raises(KinemaError, match=r"--frames must be 1 \+ 4k and at most 5"):
        generate_video(flow_folder, 1, frames=9)
    with pytest.raises(KinemaError, match=r"--frames must be 1 \+ 4k"):
        generate_video(flow_folder, 1, frames=4)
    with pytest.raises(KinemaError, match="pyramid-flow models take no temperature"):
        generate_video(flow_folder, 1, temperature=0.5)
    with pytest.raises(KinemaError, match="not text-conditional; drop --prompt"):
        generate_video(flow_folder, 1, prompt="a red ball")
    with pytest.raises(KinemaError, match="holds a pyramid-flow model, not token-lm"):
        load_model(flow_folder, "token-lm")
