"""PyramidDiT: presets, shapes per stage, zero init, block-causal attention over frames, text
padding and null text, interpolated (centre-aligned) positions, the cached-context path,
temporal-pyramid history compression, save/load and one-line input errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from kinema.errors import KinemaError
from kinema.flow.config import PRESETS, FlowConfig, preset
from kinema.flow.dit import PyramidDiT, frame_positions, group_causal_mask
from kinema.flow.pyramid import compress_history, history_stages

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from flow_testing import randomized  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

B, C, RES = 2, 4, 16  # tiny preset: 4 latent channels, stages of 4, 8, 16 latents


def inputs(seed: int = 0, stage: int = 2, n_history: int = 2) -> dict:
    """Current frame at ``stage``, its compressed history, partly padded text."""
    g = torch.Generator().manual_seed(seed)
    side = RES >> (2 - stage)
    frames = [torch.randn(B, C, RES, RES, generator=g) for _ in range(n_history)]
    text = torch.randn(B, 5, 16, generator=g)
    mask = torch.ones(B, 5, dtype=torch.bool)
    mask[0, 3:] = False
    return {
        "x": torch.randn(B, C, side, side, generator=g),
        "timestep": torch.tensor([700.0, 250.0]),
        "history": compress_history(frames, stage, 3),
        "history_sigma": torch.tensor([0.1, 0.3]),
        "text": text,
        "text_mask": mask,
    }


def run(model: PyramidDiT, kw: dict) -> torch.Tensor:
    kw = dict(kw)
    return model(kw.pop("x"), kw.pop("timestep"), **kw)


def hidden_states(model: PyramidDiT, kw: dict) -> torch.Tensor:
    """Final hidden states ``(B, N, D)`` of every slot of the sequence."""
    out = []
    handle = model.transformer.register_forward_hook(lambda m, a, o: out.append(o))
    try:
        run(model, kw)
    finally:
        handle.remove()
    return out[0]


# ---------------------------------------------------------------------------- config


def test_presets_are_valid_and_paper_size_is_counted_without_allocating():
    counts = {}
    for name in PRESETS:
        with torch.device("meta"):
            model = PyramidDiT(preset(name))
        assert all(p.is_meta for p in model.parameters())
        counts[name] = sum(p.numel() for p in model.parameters())
    assert 1e5 < counts["tiny"] < 1e6
    assert 10e6 < counts["small"] < 20e6
    # SD3-medium width/depth with shared text/video blocks: ~1B (official dual-stream ~2B)
    assert 0.9e9 < counts["pyramid-flow-paper"] < 1.2e9
    small = preset("small")
    assert (small.latent_channels, small.resolution, small.frames) == (8, 16, 5)
    assert [small.stage_size(k) for k in range(3)] == [4, 8, 16]


def test_config_errors_are_one_line():
    with pytest.raises(KinemaError, match="unknown flow preset 'huge'; valid: ") as err:
        preset("huge")
    assert "tiny" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(KinemaError, match="divisible by patch_size \\* 2\\^\\(stages-1\\) = 8"):
        FlowConfig(resolution=12)
    with pytest.raises(KinemaError, match="text_dropout"):
        FlowConfig(text_dropout=1.5)


# ---------------------------------------------------------------------------- shapes, init


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_output_shape_and_dtype_at_each_stage(stage):
    model = randomized()
    kw = inputs(stage=stage)
    v = run(model, kw)
    assert v.shape == kw["x"].shape and v.dtype == torch.float32
    assert v.abs().mean() > 1e-3
    kw["x"] = kw["x"].double()
    assert run(model, kw).dtype == torch.float64
    # no history, no text (the null text), one float timestep
    assert model(kw["x"], 10.0).shape == kw["x"].shape


def test_fresh_model_predicts_zero_velocity():
    torch.manual_seed(0)
    model = PyramidDiT(preset("tiny"))
    v = run(model, inputs())
    assert v.shape == (B, C, RES, RES) and torch.equal(v, torch.zeros_like(v))


def test_timestep_and_history_sigma_condition_their_own_tokens():
    model, kw = randomized(), inputs()
    n_text = model.config.max_text_len
    p = n_text + sum(h.shape[-1] ** 2 // 4 for h, _ in kw["history"])
    base = hidden_states(model, kw)
    # the current timestep conditions only the current frame
    other = hidden_states(model, {**kw, "timestep": kw["timestep"] + 100})
    torch.testing.assert_close(other[:, :p], base[:, :p], rtol=0, atol=1e-6)
    assert (other[:, p:] - base[:, p:]).abs().max() > 1e-2
    # the history noise level conditions history tokens (and so the current frame), not text
    other = hidden_states(model, {**kw, "history_sigma": None})
    torch.testing.assert_close(other[:, :n_text], base[:, :n_text], rtol=0, atol=1e-6)
    assert (other[:, n_text:p] - base[:, n_text:p]).abs().max() > 1e-2
    assert (other[:, p:] - base[:, p:]).abs().max() > 1e-4  # weak, through attention
    # the timesteps told: text 0, history 1000 * sigma, current frame its own
    told = []
    embed = model.embed_timesteps
    model.embed_timesteps = lambda t: told.append(t) or embed(t)
    run(model, kw)
    assert told[0].tolist() == [[0.0, 100.0], [0.0, 300.0]]
    assert told[1].tolist() == [700.0, 250.0]


# ---------------------------------------------------------------------------- attention


def test_attention_is_block_causal_over_frames():
    model, kw = randomized(), inputs(stage=1)
    n_text = model.config.max_text_len
    n_h0 = kw["history"][0][0].shape[-1] ** 2 // 4  # patch 2
    p = n_text + sum(h.shape[-1] ** 2 // 4 for h, _ in kw["history"])
    base = hidden_states(model, kw)

    # the current frame changes no context token, only itself
    other = hidden_states(model, {**kw, "x": kw["x"] + 1.0})
    torch.testing.assert_close(other[:, :p], base[:, :p], rtol=0, atol=1e-6)
    assert (other[:, p:] - base[:, p:]).abs().max() > 1e-2

    # the newest history frame changes neither the text nor the older history frame,
    # but does change the current frame
    (h0, i0), (h1, i1) = kw["history"]
    other = hidden_states(model, {**kw, "history": [(h0, i0), (h1 + 1.0, i1)]})
    torch.testing.assert_close(
        other[:, : n_text + n_h0], base[:, : n_text + n_h0], rtol=0, atol=1e-6
    )
    assert (other[:, p:] - base[:, p:]).abs().max() > 1e-2

    # the oldest history frame reaches the current frame's velocity
    v = run(model, kw)
    assert not torch.allclose(v, run(model, {**kw, "history": [(h0 + 1.0, i0), (h1, i1)]}))


def test_text_padding_is_ignored_and_null_text_is_the_unconditional_input():
    model, kw = randomized(), inputs()
    v = run(model, kw)
    text = kw["text"].clone()
    text[0, 3:] = 100.0  # padded slots of sample 0
    torch.testing.assert_close(run(model, {**kw, "text": text}), v, rtol=0, atol=1e-6)
    text[0, 1] = 100.0  # a real slot
    assert not torch.allclose(run(model, {**kw, "text": text})[0], v[0])

    # drop=True rows equal text=None (the learned null text); kept rows are unchanged
    drop = torch.tensor([False, True])
    dropped = run(model, {**kw, "drop": drop})
    uncond = run(model, {**kw, "text": None, "text_mask": None})
    torch.testing.assert_close(dropped[1], uncond[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(dropped[0], v[0], rtol=0, atol=1e-6)
    assert not torch.allclose(uncond[0], v[0])
    x, valid = model.unconditional_text(3)
    assert x.shape == (3, 8, 64) and valid.sum(1).tolist() == [1, 1, 1]
    assert torch.equal(x[:, 0], model.text.null.expand(3, -1))


def test_group_causal_mask():
    group = torch.tensor([0, 0, 1, 2, 2])
    valid = torch.tensor([[True, False, True, True, True]])
    expect = torch.tensor(
        [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],  # a padding query sees the valid keys and itself
            [1, 0, 1, 0, 0],
            [1, 0, 1, 1, 1],
            [1, 0, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(group_causal_mask(group, valid)[0, 0], expect)
    assert torch.equal(group_causal_mask(group), group[None] <= group[:, None])


# ---------------------------------------------------------------------------- positions


def test_coarse_frame_positions_are_centre_aligned_on_the_full_grid():
    full = frame_positions(3, 8, 8, 1, offset=5.0)  # 8x8 tokens at full resolution
    coarse = frame_positions(3, 2, 2, 4, offset=5.0)  # stage 0 of 3: 4x coarser
    # each coarse token sits at the mean position of the 4x4 full-res tokens it covers
    grid = rearrange(full, "(h w) c -> c h w", h=8)
    pooled = rearrange(F.avg_pool2d(grid[None], 4)[0], "c h w -> (h w) c")
    torch.testing.assert_close(coarse, pooled, rtol=0, atol=0)
    # = full-grid positions times the factor, shifted to the block centre
    ij = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=torch.float32)
    assert torch.equal(coarse[:, 1:], 5.0 + 4 * ij + 1.5)
    assert torch.equal(coarse[:, 0], torch.full((4,), 8.0))  # t = offset + frame index
    # the coarse grid spans the same extent (same centre) as the full grid
    torch.testing.assert_close(coarse.mean(0), full.mean(0))


def test_model_places_history_and_current_frames_on_one_grid():
    model = randomized()
    seen = []
    hook = model.transformer.register_forward_pre_hook(lambda m, a: seen.append(a[1]))
    try:
        for stage in range(3):
            run(model, inputs(stage=stage))
    finally:
        hook.remove()
    t = model.config.max_text_len
    text = torch.arange(t, dtype=torch.float32)[:, None].expand(t, 3)
    for stage, pos in enumerate(seen):
        assert torch.equal(pos[:t], text)  # text slot k at (k, k, k)
        # history: frame 0 at stage max(stage-1, 0), frame 1 at `stage`; current: frame 2
        factors = [4 >> max(stage - 1, 0), 4 >> stage, 4 >> stage]
        parts = pos[t:].split([(8 // f) ** 2 for f in factors])
        for index, (f, part) in enumerate(zip(factors, parts, strict=True)):
            torch.testing.assert_close(part, frame_positions(index, 8 // f, 8 // f, f, offset=t))
    # the current frame at stage 0 equals the 4x4-pooled current frame at full resolution
    full = rearrange(seen[2][-64:], "(h w) c -> c h w", h=8)
    pooled = rearrange(F.avg_pool2d(full[None], 4)[0], "c h w -> (h w) c")
    torch.testing.assert_close(seen[0][-4:], pooled)


# ---------------------------------------------------------------------------- history


def test_compress_history_keeps_recent_frames_sharper():
    assert history_stages(4, 2) == [0, 0, 1, 2]
    assert history_stages(2, 0) == [0, 0]
    assert history_stages(0, 1) == []
    frames = [torch.randn(B, C, 16, 24) for _ in range(4)]
    out = compress_history(frames, 2, 3, first_index=1)
    assert [i for _, i in out] == [1, 2, 3, 4]
    assert [tuple(h.shape[-2:]) for h, _ in out] == [(4, 6), (4, 6), (8, 12), (16, 24)]
    torch.testing.assert_close(out[0][0], F.avg_pool2d(frames[0], 4))
    torch.testing.assert_close(out[2][0], F.avg_pool2d(frames[2], 2))
    assert out[3][0] is frames[3]
    with pytest.raises(KinemaError, match="stage must be in \\[0, 2\\]"):
        compress_history(frames, 3, 3)


# ---------------------------------------------------------------------------- KV cache


def test_cached_context_equals_the_full_forward():
    model = randomized()
    for stage in range(3):
        kw = inputs(seed=stage, stage=stage)
        with torch.no_grad():
            ctx = model.encode_context(
                B,
                history=kw["history"],
                history_sigma=kw["history_sigma"],
                text=kw["text"],
                text_mask=kw["text_mask"],
            )
            assert ctx.frame_index == 2
            # several "Euler steps" against one context: new x and t each time
            for step in range(2):
                x, t = kw["x"] * (1 - 0.3 * step), kw["timestep"] - 100 * step
                full = run(model, {**kw, "x": x, "timestep": t})
                cached = model(x, t, context=ctx)
                torch.testing.assert_close(cached, full, rtol=0, atol=1e-5)
                assert full.abs().mean() > 1e-2
    # every stage of one frame against one context (the cache is sized for full res)
    kw = inputs(stage=2)
    with torch.no_grad():
        ctx = model.encode_context(B, history=kw["history"][:1], text=kw["text"])
        for side in (4, 8, 16):
            x = torch.randn(B, C, side, side)
            full = model(x, 300.0, history=kw["history"][:1], text=kw["text"])
            torch.testing.assert_close(model(x, 300.0, context=ctx), full, rtol=0, atol=1e-5)
        # a later context replaces the caches: the old one is refused
        model.encode_context(B)
        with pytest.raises(KinemaError, match="stale"):
            model(x, 300.0, context=ctx)
        with pytest.raises(KinemaError, match="pass only x and timestep"):
            model(x, 300.0, context=ctx, text=kw["text"])


def test_model_without_text():
    model = randomized(text_dim=0)
    kw = {k: v for k, v in inputs(stage=1).items() if k not in ("text", "text_mask")}
    full = run(model, kw)
    with torch.no_grad():
        ctx = model.encode_context(B, history=kw["history"], history_sigma=kw["history_sigma"])
        torch.testing.assert_close(
            model(kw["x"], kw["timestep"], context=ctx), full, rtol=0, atol=1e-5
        )
    with pytest.raises(KinemaError, match="no text"):
        run(model, {**kw, "text": torch.randn(B, 2, 16)})


def test_frame_alone_takes_the_per_sample_conditioning_path():
    """No text, no history: the forward skips the (empty) prefix and feeds the core one adaLN
    vector per sample; that equals the general per-group route with every token in the
    current frame's group."""
    model = randomized(text_dim=0)
    x, t = inputs(stage=1)["x"], torch.tensor([700.0, 250.0])
    with torch.no_grad():
        out = model(x, t)
        cur = model.embed_frame(x)
        pos = frame_positions(0, 4, 4, 2, offset=model.config.num_text_tokens)
        cond = model.embed_timesteps(t)[:, None]  # (B, 1, D): one group
        index = torch.zeros(cur.shape[1], dtype=torch.long)
        ref = model.unpatchify(model.transformer(cur, pos, None, cond=cond, cond_index=index), 8, 8)
    assert out.abs().mean() > 1e-3  # the randomized model does not predict zero
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- save / load


def test_save_and_load_round_trip(tmp_path):
    model, kw = randomized(), inputs()
    model.save_pretrained(tmp_path / "dit")
    loaded = PyramidDiT.from_pretrained(tmp_path / "dit").eval()
    assert loaded.config == model.config
    torch.testing.assert_close(run(loaded, kw), run(model, kw), rtol=0, atol=0)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "change, message",
    [
        ({"x": torch.randn(B, 3, 16, 16)}, r"x must be latents \(B, C=4, h, w\)"),
        ({"x": torch.randn(B, C, 16, 15)}, r"x is 16x15: height must be a stage height"),
        ({"x": torch.randn(B, C, 12, 12)}, r"x is 12x12: height must be a stage height"),
        (
            {"history": [(torch.randn(B, 3, 16, 16), 0)]},
            r"history\[0\] must be latents \(B=2, C=4",
        ),
        ({"history": [(torch.randn(B, C, 4, 4), 1), (torch.randn(B, C, 4, 4), 0)]}, "increasing"),
        ({"history": [torch.randn(B, C, 4, 4)]}, r"\(latent \(B, C, h, w\), frame_index\) pairs"),
        ({"history": [(torch.randn(B, C, 4, 8), 0)]}, "latents wide at full resolution"),
        ({"text": torch.randn(B, 5, 7), "text_mask": None}, r"text must be \(B=2, L, 16\)"),
        ({"text": torch.randn(B, 9, 16), "text_mask": None}, "max_text_len is 8"),
        ({"timestep": torch.zeros(3)}, r"timestep must be a float or \(B=2,\)"),
    ],
)
def test_bad_inputs_are_one_line_errors(change, message):
    model = randomized()
    with pytest.raises(KinemaError, match=message) as err:
        run(model, {**inputs(), **change})
    assert "\n" not in str(err.value)
