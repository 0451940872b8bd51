"""VideoPoet's super-resolution transformer: window masks, the layers' attention pattern,
token factorization, the masked objective, iterative decoding, CFG, save/load, the cascade."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kinema.errors import KinemaError
from kinema.lm.superres import (
    LAYER_KINDS,
    TEXT_AMORTIZE,
    SuperResTransformer,
    factor_sizes,
    factorized_loss,
    line_groups,
    merge_index,
    split_index,
)
from kinema.lm.superres_config import SuperResConfig, preset
from kinema.nn import Transformer, TransformerConfig, llama_hidden_dim
from kinema.nn.window import line_index, window_mask
from kinema.sample.superres import sample_factorized, upsample, upscale_video

pytestmark = pytest.mark.usefixtures("one_thread")


def build(seed: int = 0, **overrides) -> SuperResTransformer:
    torch.manual_seed(seed)
    return SuperResTransformer(preset("tiny", **overrides))


def rand_tokens(shape, vocab, seed=0):
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def pair(model: SuperResTransformer, batch: int = 2, seed: int = 0):
    c = model.config
    lr = rand_tokens((batch, *c.lr_shape), c.lr_vocab_size, seed)
    hr = rand_tokens((batch, *c.hr_shape), c.hr_vocab_size, seed + 1)
    return lr, hr


# ---------------------------------------------------------------------- window masks


def brute_window_mask(shape, axis, window):
    """Query cell i attends key j iff they share every other coordinate and j's axis
    coordinate lies in the min(window, n) cells around i's, slid inward at the borders."""
    cells = list(itertools.product(*(range(s) for s in shape)))
    n = shape[axis]
    w = min(window, n)
    mask = torch.zeros(len(cells), len(cells), dtype=torch.bool)
    for i, a in enumerate(cells):
        start = min(max(a[axis] - w // 2, 0), n - w)
        for j, b in enumerate(cells):
            others = all(a[k] == b[k] for k in range(len(shape)) if k != axis)
            mask[i, j] = others and start <= b[axis] < start + w
    return mask


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    axis=st.integers(0, 2),
    window=st.integers(1, 6),
)
def test_window_mask_matches_brute_force(shape, axis, window):
    axis = axis % len(shape)
    mask = window_mask(tuple(shape), axis, window)
    assert torch.equal(mask, brute_window_mask(tuple(shape), axis, window))
    assert (mask.sum(1) == min(window, shape[axis])).all()  # every query sees a full window
    assert mask.diagonal().all()


def test_window_mask_axes_and_errors():
    t, h, w = 2, 3, 4
    vertical = window_mask((t, h, w), 1, 3).reshape(t, h, w, t, h, w)
    # a vertical window stays in the cell's column and frame
    assert vertical[1, 0, 2].nonzero().tolist() == [[1, 0, 2], [1, 1, 2], [1, 2, 2]]
    assert torch.equal(window_mask((t, h, w), -1, 2), window_mask((t, h, w), 2, 2))
    for bad in (dict(shape=(2, 0, 3), axis=0, window=2), dict(shape=(2, 3), axis=2, window=2)):
        with pytest.raises(KinemaError):
            window_mask(**bad)
    with pytest.raises(KinemaError, match="window"):
        window_mask((2, 3), 0, 0)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    axis=st.integers(0, 2),
    window=st.integers(1, 6),
    groups=st.integers(1, 3),
)
def test_line_index_restricts_the_window_mask_to_lines(shape, axis, window, groups):
    shape, axis = tuple(shape), axis % len(shape)
    lines = line_index(shape, axis)
    n = shape[axis]
    assert lines.shape == (math.prod(shape) // n, n)
    assert torch.equal(lines.flatten().sort().values, torch.arange(math.prod(shape)))
    full = window_mask(shape, axis, window)
    for line in lines:  # within a line: the 1D window; across lines: nothing
        assert torch.equal(full[line][:, line], window_mask((n,), 0, window))
    g = math.gcd(groups, len(lines))  # g lines in one sequence: a block-diagonal mask
    seq = lines.reshape(-1, g * n)
    for row in seq:
        assert torch.equal(full[row][:, row], window_mask((g, n), 1, window))


# ---------------------------------------------------------------------- per-layer masks


def test_transformer_takes_one_mask_per_layer():
    torch.manual_seed(0)
    core = Transformer(TransformerConfig(dim=16, n_layers=2, n_heads=2, mlp_hidden=32))
    x, pos = torch.randn(1, 6, 16), torch.arange(6)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    eye = torch.eye(6, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(core(x, pos, [causal, causal]), core(x, pos, causal))
        h = core.layers[0](x, core.rope(pos), causal)
        manual = core.norm(core.layers[1](h, core.rope(pos), eye))
        torch.testing.assert_close(core(x, pos, [causal, eye]), manual, rtol=0, atol=1e-6)
        band = causal & ~torch.ones(6, 6, dtype=torch.bool).tril(-3)  # the last 3 keys
        full = core(x, pos, [causal, band])
        core.setup_caches(1, 6)
        cached = core(x[:, :4], pos[:4], [causal, band], input_pos=torch.arange(4))
        cached = torch.cat([cached, core(x[:, 4:], pos[4:], [causal, band], torch.arange(4, 6))], 1)
        core.clear_caches()
        torch.testing.assert_close(cached, full, rtol=0, atol=1e-6)
    with pytest.raises(KinemaError, match="2 layers"):
        core(x, pos, [causal])


def test_text_slots_in_the_masks():
    model = build(text_dim=8, max_text_len=3)
    s, n = 3, model.config.num_hr_tokens
    valid = torch.tensor([[True, True, False], [True, False, False]])
    for mask in model.layer_masks(valid):
        assert mask.shape == (2, 1, s + n, s + n)
        assert torch.equal(mask[:, 0, s:, :s], valid[:, None, :].expand(2, n, s))  # video -> text
        assert not mask[:, 0, :s, s:].any()  # text never sees video
        assert mask[:, 0].diagonal(dim1=-2, dim2=-1).all()  # no empty row
    static = model.layer_masks()
    assert static[0].shape == (s + n, s + n) and static[0][:, :s].all()


def test_layers_cycle_vertical_horizontal_temporal():
    model = build(n_layers=6, windows=(2, 3, 3))
    c = model.config
    masks = model.layer_masks()
    assert [name for name, _ in LAYER_KINDS] == ["vertical", "horizontal", "temporal"]
    for i, mask in enumerate(masks):
        _, axis = LAYER_KINDS[i % 3]
        assert torch.equal(mask, window_mask(c.hr_shape, axis, c.windows[axis]))


def layer_dependencies(model, hr, lr):
    """(n_layers, N, N) bool: [k, q, j] = layer k's output at cell q moves when only the
    input token of cell j changes (all cells unmasked, one batch row per perturbed cell)."""
    c = model.config
    n = c.num_hr_tokens
    flat = hr.reshape(1, n).repeat(n + 1, 1)
    rows = torch.arange(n)
    flat[rows + 1, rows] = (flat[rows + 1, rows] + 1) % c.hr_vocab_size
    tokens = flat.reshape(n + 1, *c.hr_shape)
    cond = model.condition(lr.expand(n + 1, -1, -1, -1))
    outs = []

    def video_rows(i, out):
        """A block's output -> (B, N, D) video rows in raster order."""
        if cond.lines is None:
            return out[:, c.text_len :]
        layout = cond.lines[i % 3]
        out = out.reshape(n + 1, len(layout.index), -1, c.dim)[:, :, : out.shape[1] - c.text_len]
        return out.reshape(n + 1, n, c.dim)[:, layout.inverse]

    hooks = [
        layer.register_forward_hook(lambda _m, _i, out, i=i: outs.append(video_rows(i, out)))
        for i, layer in enumerate(model.transformer.layers)
    ]
    try:
        with torch.no_grad():
            model(tokens, torch.zeros_like(tokens, dtype=torch.bool), cond)
    finally:
        for hook in hooks:
            hook.remove()
    deps = [(out[1:] - out[:1]).abs().amax(-1) > 1e-6 for out in outs]  # (j, q)
    return torch.stack([d.T for d in deps])


@pytest.mark.parametrize("attention", ["lines", "dense"])
def test_each_layer_sees_only_its_window(attention):
    # 3 x 8 x 8 high-res cells, windows of 2 frames and 3 rows / columns; a larger init
    # keeps the effect of a cell three hops away far above the threshold (>= 8e-4)
    model = build(lr_shape=(3, 4, 4), windows=(2, 3, 3), init_std=0.1, attention=attention)
    c = model.config
    lr, hr = pair(model, batch=1)
    deps = layer_dependencies(model, hr, lr)
    t, h, w = c.hr_shape
    cells = list(itertools.product(range(t), range(h), range(w)))

    def win(n, size, x):
        size = min(size, n)
        start = min(max(x - size // 2, 0), n - size)
        return range(start, start + size)

    for q, (qt, qy, qx) in enumerate(cells):
        rows, cols, frames = win(h, 3, qy), win(w, 3, qx), win(t, 2, qt)
        expected = [
            {(qt, y, qx) for y in rows},  # after vertical: its column window
            {(qt, y, x) for y in rows for x in cols},  # then horizontal: a box in its frame
            {(f, y, x) for f in frames for y in rows for x in cols},  # then temporal
        ]
        for k in range(3):
            got = {cells[j] for j in deps[k, q].nonzero().flatten().tolist()}
            assert got == expected[k], (k, cells[q])


LINE_CASES = {
    # no text, batch 1 and 2, windows smaller than and covering their axes
    "plain": dict(overrides=dict(lr_shape=(3, 3, 5), windows=(2, 3, 4), n_layers=6), batch=1),
    "batch": dict(overrides=dict(lr_shape=(3, 3, 5), windows=(5, 2, 20), n_layers=6), batch=3),
    # text with padding (and one sample's null text), several lines per sequence
    "text": dict(
        overrides=dict(lr_shape=(2, 3, 4), windows=(1, 3, 5), text_dim=8, max_text_len=5),
        batch=3,
        text=True,
    ),
    # text, GQA and qk-norm, a line count with few divisors
    "text-gqa": dict(
        overrides=dict(
            lr_shape=(3, 2, 7),
            windows=(2, 4, 3),
            text_dim=8,
            max_text_len=9,
            n_layers=6,
            n_heads=4,
            n_kv_heads=2,
            qk_norm=True,
        ),
        batch=2,
        text=True,
    ),
}


def line_case(name, attention):
    case = LINE_CASES[name]
    model = build(seed=3, init_std=0.1, attention=attention, **case["overrides"]).eval()
    c = model.config
    b = case["batch"]
    lr, hr = pair(model, batch=b, seed=4)
    masked = model.random_mask(b, generator=torch.Generator().manual_seed(5))
    kwargs = {}
    if case.get("text"):
        text = torch.randn(b, c.max_text_len - 1, 8, generator=torch.Generator().manual_seed(6))
        text_mask = torch.ones(b, c.max_text_len - 1, dtype=torch.bool)
        text_mask[0, 2:] = False  # padding
        drop = torch.zeros(b, dtype=torch.bool)
        drop[-1] = True  # the null text: one valid slot
        kwargs = dict(text=text, text_mask=text_mask, drop=drop)
    return model, lr, hr, masked, kwargs


@pytest.mark.parametrize("name", sorted(LINE_CASES))
def test_line_attention_equals_dense(name):
    outs, grads = {}, {}
    for attention in ("dense", "lines"):
        model, lr, hr, masked, kwargs = line_case(name, attention)
        cond = model.condition(lr, **kwargs)
        assert (cond.masks is None) == (attention == "lines") != (cond.lines is None)
        lo, hi = model(hr, masked, cond)
        outs[attention] = (lo, hi)
        factorized_loss(lo, hi, hr, masked)["loss"].backward()
        grads[attention] = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    for dense, lines in zip(outs["dense"], outs["lines"], strict=True):
        torch.testing.assert_close(lines, dense, rtol=0, atol=1e-5)
    assert grads["dense"].keys() == grads["lines"].keys()
    for k, g in grads["dense"].items():
        torch.testing.assert_close(grads["lines"][k], g, rtol=1e-4, atol=1e-6, msg=k)


def test_line_attention_layouts_and_checkpointing():
    model, lr, hr, masked, kwargs = line_case("text", "lines")
    c = model.config
    cond = model.condition(lr, **kwargs)
    for (_, axis), layout in zip(LAYER_KINDS, cond.lines, strict=True):
        n = c.hr_shape[axis]
        lines = c.num_hr_tokens // n
        g = line_groups(lines, n, c.text_len)
        assert lines % g == 0 and g * n <= max(n, TEXT_AMORTIZE * c.text_len + n)
        assert layout.index.shape == (lines // g, g * n + c.text_len)
        assert layout.mask.shape == (3 * lines // g, 1, g * n + c.text_len, g * n + c.text_len)
        assert layout.rope.cos.shape[:3] == (3 * lines // g, 1, g * n + c.text_len)
    assert line_groups(280, 32, 64) == 8 and line_groups(1792, 5, 64) == 32  # videopoet
    assert line_groups(7, 2, 64) == 7 and line_groups(13, 2, 3) == 1 and line_groups(9, 4, 0) == 1
    # gradient checkpointing: the same loss and gradients
    model.train()
    losses, grads = [], []
    for flag in (False, True):
        model.zero_grad()
        model.transformer.gradient_checkpointing = flag
        loss = factorized_loss(*model(hr, masked, model.condition(lr, **kwargs)), hr, masked)
        loss["loss"].backward()
        losses.append(loss["loss"])
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert torch.equal(losses[0], losses[1])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


# ---------------------------------------------------------------------- factorization


@given(vocab=st.integers(2, 300_000))
@settings(max_examples=50, deadline=None)
def test_factorized_index_round_trip(vocab):
    base, n_hi = factor_sizes(vocab)
    assert base == math.ceil(math.sqrt(vocab)) and (n_hi - 1) * base < vocab <= base * n_hi
    index = torch.cat([torch.arange(min(vocab, 500)), torch.randint(0, vocab, (500,))])
    index[-1] = vocab - 1
    halves = split_index(index, base)
    assert halves.shape == (len(index), 2)
    assert (halves >= 0).all() and (halves[:, 0] < base).all() and (halves[:, 1] < n_hi).all()
    assert torch.equal(merge_index(halves, base), index)


def test_factorization_matches_lfq_bit_halves():
    from kinema.tokenizer import LFQ, Tokenizer
    from kinema.tokenizer import preset as tok_preset

    tok = Tokenizer(tok_preset("tiny-lfq", base_channels=8))
    index = torch.arange(tok.vocab_size)
    base, n_hi = factor_sizes(tok.vocab_size)
    assert (base, n_hi) == (32, 32)  # 10 bits -> two 5-bit halves
    assert torch.equal(split_index(index, base), tok.split_tokens(index))
    assert torch.equal(merge_index(tok.split_tokens(index), base), index)
    lfq = LFQ(bits=18)
    assert factor_sizes(2**18) == (512, 512)  # VideoPoet's 2 x 512-way
    big = torch.randint(0, 2**18, (1000,))
    assert torch.equal(split_index(big, 512), lfq.split_indices(big))


def test_sampling_never_leaves_the_vocabulary():
    vocab = 5  # base 3, n_hi 2: on the last hi row only lo 0, 1 are valid
    base, n_hi = factor_sizes(vocab)
    g = torch.Generator().manual_seed(0)
    lo, hi = torch.randn(base, generator=g), torch.randn(n_hi, generator=g)
    lo[2] += 3.0  # most likely lo is invalid with the last hi
    # the product distribution restricted to valid indices
    joint = (lo.log_softmax(0)[:, None] + hi.log_softmax(0)[None, :]).T.reshape(-1)[:vocab]
    probs = joint.softmax(0)
    draws = sample_factorized(lo.expand(200_000, -1), hi.expand(200_000, -1), vocab, generator=g)
    assert draws.min() >= 0 and draws.max() < vocab
    freq = torch.bincount(draws, minlength=vocab).float() / len(draws)
    torch.testing.assert_close(freq, probs, atol=5e-3, rtol=0)
    greedy = sample_factorized(lo[None], hi[None], vocab, temperature=0.0)
    assert greedy.item() == joint.argmax().item()


# ---------------------------------------------------------------------- objective


def test_loss_scores_masked_cells_only():
    model = build()
    lr, hr = pair(model)
    masked = model.random_mask(2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lo, hi = model(hr, masked, model.condition(lr))
    ref = factorized_loss(lo, hi, hr, masked)["loss"]
    other = torch.where(masked, hr, (hr + 7) % 64)  # new targets at unmasked cells
    assert torch.equal(factorized_loss(lo, hi, other, masked)["loss"], ref)
    changed = torch.where(masked, (hr + 7) % 64, hr)
    assert not torch.equal(factorized_loss(lo, hi, changed, masked)["loss"], ref)
    # the model cannot see the tokens it must predict
    with torch.no_grad():
        lo2, hi2 = model(changed, masked, model.condition(lr))
    assert torch.equal(lo2, lo) and torch.equal(hi2, hi)
    # an untrained model is at chance: -log(1/8) for each of the two 8-way halves
    assert abs(ref.item() - 2 * math.log(8)) < 0.2


def test_unfactorized_model_is_one_plain_softmax():
    model = build(factorize=False)
    assert (model.head_lo.out_features, model.head_hi.out_features) == (64, 1)
    assert factor_sizes(4375, factorize=False) == (4375, 1)
    lr, hr = pair(model)
    masked = model.random_mask(2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        lo, hi = model(hr, masked, model.condition(lr))
    # brute force: the 64-way cross-entropy of the full index over the masked cells
    logits, target = lo.reshape(-1, 64), hr.reshape(-1)
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    keep = masked.reshape(-1)
    assert torch.allclose(factorized_loss(lo, hi, hr, masked)["loss"], ce[keep].mean())
    # embeddings: one row per code (plus one constant hi row), not lo + hi halves
    a, b = model.hr_embed(torch.tensor([3])), model.hr_embed(torch.tensor([3 + 8]))
    assert torch.allclose(a - model.hr_embed.hi.weight[0], model.hr_embed.lo.weight[3])
    assert not torch.equal(a, b)
    # greedy decoding draws the argmax of the one softmax
    drawn = sample_factorized(lo, hi, 64, temperature=0.0)
    assert torch.equal(drawn, lo.argmax(-1))


def test_masking_ratio_follows_the_cosine_schedule():
    model = build()
    masked = model.random_mask(4000, generator=torch.Generator().manual_seed(0))
    ratio = masked.flatten(1).float().mean(1)
    assert ratio.min() > 0  # at least one masked cell per sample
    assert abs(ratio.mean().item() - 2 / math.pi) < 0.015  # E[cos(pi/2 u)] = 2/pi


def test_text_is_dropped_to_the_null_in_training_only():
    model = build(text_dim=8, cond_drop_prob=1.0)
    lr, hr = pair(model)
    batch = {"tokens_lr": lr, "tokens_hr": hr, "text": torch.randn(2, 3, 8)}
    losses = {}
    for mode, text in itertools.product(("train", "eval"), (True, False)):
        model.train(mode == "train")
        torch.manual_seed(1)
        losses[mode, text] = model.loss(batch if text else {**batch, "text": None})["loss"]
    assert torch.equal(losses["train", True], losses["train", False])
    assert not torch.equal(losses["eval", True], losses["eval", False])


class Pair(torch.utils.data.Dataset):
    """One fixed (low-res, high-res) token pair, repeated."""

    def __init__(self, n: int = 8) -> None:
        self.lr = rand_tokens((2, 4, 4), 64, 0)
        self.hr = rand_tokens((2, 8, 8), 64, 1)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"tokens_lr": self.lr, "tokens_hr": self.hr}


def test_overfits_a_pair_through_the_trainer_and_decodes_it(tmp_path):
    from kinema.train import TrainConfig, Trainer

    model = build(dim=64, mlp_hidden=128)
    config = TrainConfig(
        steps=60,
        batch_size=8,
        lr=5e-3,
        warmup_steps=10,
        weight_decay=0.0,
        log_every=10,
        out_dir=str(tmp_path),
        device="cpu",
        tensorboard=False,
        progress=False,
        keep_last=0,
    )
    result = Trainer(model, Pair(), config).fit()
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < 0.05 * losses[0], losses
    data = Pair()
    for steps in (8, 128):  # the cosine schedule and one cell per step
        out = upsample(model, data.lr[None], steps=steps, temperature=0.0)
        assert torch.equal(out[0], data.hr), steps
    # the trainer's checkpoint is a model folder
    loaded = SuperResTransformer.from_pretrained(result.checkpoint)
    assert torch.equal(upsample(loaded, data.lr[None], temperature=0.0)[0], data.hr)


# ---------------------------------------------------------------------- decoding


def test_decoding_fixes_cells_for_good_and_ends_unmasked():
    model = build()
    lr, _ = pair(model)
    n, steps = model.config.num_hr_tokens, 6
    states = []
    out = upsample(
        model, lr, steps=steps, seed=0, callback=lambda k, t, m: states.append((t.clone(), m))
    )
    assert len(states) == steps
    left = [int(m[0].sum()) for _, m in states]
    assert left == [math.floor(n * math.cos(math.pi / 2 * (k + 1) / steps)) for k in range(steps)]
    assert all((m.flatten(1).sum(1) == m[0].sum()).all() for _, m in states)  # same per row
    for (t0, m0), (t1, m1) in itertools.pairwise(states):
        fixed = ~m0
        assert not (m1 & fixed).any()  # never re-masked
        assert torch.equal(t1[fixed], t0[fixed])  # never changed
    assert not states[-1][1].any() and torch.equal(out, states[-1][0])
    assert out.shape == (2, *model.config.hr_shape) and out.max() < 64 and out.min() >= 0


def test_many_steps_decode_one_cell_at_a_time():
    model = build()
    lr, _ = pair(model, batch=1)
    n = model.config.num_hr_tokens
    left = []
    upsample(model, lr, steps=n + 10, seed=0, callback=lambda k, t, m: left.append(int(m.sum())))
    assert left == list(range(n - 1, -1, -1))  # stops once nothing is masked


def test_decoding_is_deterministic_with_a_seed():
    model = build()
    lr, _ = pair(model)
    a = upsample(model, lr, seed=3)
    assert torch.equal(a, upsample(model, lr, seed=3))
    assert not torch.equal(a, upsample(model, lr, seed=4))
    greedy = upsample(model, lr, temperature=0.0)
    assert torch.equal(greedy, upsample(model, lr, temperature=0.0, seed=9))


def test_guidance_scale_one_is_conditional_and_zero_unconditional():
    model = build(text_dim=8)
    torch.manual_seed(5)
    for p in model.parameters():  # make the text matter
        p.data += 0.05 * torch.randn_like(p)
    lr, _ = pair(model)
    text, text_mask = torch.randn(2, 3, 8), torch.tensor([[1, 1, 0], [1, 1, 1]]).bool()
    cond = upsample(model, lr, text=text, text_mask=text_mask, seed=0)
    assert torch.equal(
        upsample(model, lr, text=text, text_mask=text_mask, guidance=1.0, seed=0), cond
    )
    uncond = upsample(model, lr, seed=0)
    assert torch.equal(
        upsample(model, lr, text=text, text_mask=text_mask, guidance=0.0, seed=0), uncond
    )
    assert not torch.equal(cond, uncond)
    guided = upsample(model, lr, text=text, text_mask=text_mask, guidance=3.0, seed=0)
    assert guided.shape == cond.shape


def test_save_load_round_trip(tmp_path):
    model = build(text_dim=8).eval()
    lr, hr = pair(model)
    model.save_pretrained(tmp_path / "sr")
    loaded = SuperResTransformer.from_pretrained(tmp_path / "sr").eval()
    assert loaded.config == model.config
    masked = model.random_mask(2, generator=torch.Generator().manual_seed(0))
    text = torch.randn(2, 4, 8)
    with torch.no_grad():
        a = model(hr, masked, model.condition(lr, text=text))
        b = loaded(hr, masked, loaded.condition(lr, text=text))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert torch.equal(upsample(model, lr, seed=0), upsample(loaded, lr, seed=0))


def test_videopoet_preset_parameter_count_on_meta_device():
    with torch.device("meta"):
        model = SuperResTransformer(preset("videopoet"))
    assert next(model.parameters()).is_meta
    c = model.config
    assert c.hr_shape == (5, 32, 56) and c.seq_len == 64 + 5 * 32 * 56
    d = c.dim
    layer = 4 * d * d + 3 * d * llama_hidden_dim(d, c.multiple_of) + 2 * d
    embeds = 2 * (512 + 512) * d  # factorized low-res and high-res embeddings
    heads = (512 + 512) * d
    text = c.text_dim * d + d + d  # projection (+ bias) and the null text
    expected = c.n_layers * layer + d + embeds + heads + text + d + 4 * d  # + [MASK], phases
    assert sum(p.numel() for p in model.parameters()) == expected
    assert 250e6 < expected < 400e6
    for name in ("tiny", "small"):
        with torch.device("meta"):
            SuperResTransformer(preset(name))


# ---------------------------------------------------------------------- bad inputs


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_bad_inputs_are_one_line_errors():
    model = build()
    lr, hr = pair(model)
    cases = [
        (dict(tokens_lr=lr, tokens_hr=hr[:, :, :4, :4]), "tokens_hr must be \\(B, 2, 8, 8\\)"),
        (dict(tokens_lr=hr, tokens_hr=hr), "tokens_lr must be \\(B, 2, 4, 4\\)"),
        (dict(tokens_lr=lr, tokens_hr=hr + 64), "ids must be in \\[0, 64\\)"),
        (dict(tokens_lr=lr - 1, tokens_hr=hr), "tokens_lr ids"),
        (dict(tokens_lr=lr.float(), tokens_hr=hr), "integer token ids"),
        (dict(tokens_lr=lr[:1], tokens_hr=hr), "batch sizes"),
    ]
    for batch, match in cases:
        with pytest.raises(KinemaError, match=match) as e:
            model.loss(batch)
        one_line(e)
    for kwargs, match in [
        (dict(tokens_lr=lr[..., :2]), "scale 2"),
        (dict(tokens_lr=lr + 100), "ids"),
        (dict(tokens_lr=lr, steps=0), "steps"),
        (dict(tokens_lr=lr, guidance=2.0), "guidance needs a text"),
    ]:
        with pytest.raises(KinemaError, match=match) as e:
            upsample(model, **kwargs)
        one_line(e)
    with pytest.raises(KinemaError, match="no text") as e:
        model.condition(lr, text=torch.randn(2, 3, 8))
    one_line(e)
    text_model = build(text_dim=8)
    with pytest.raises(KinemaError, match="max_text_len") as e:
        text_model.condition(lr, text=torch.randn(2, 9, 8))
    for bad, match in [
        (dict(n_layers=4), "multiple of 3"),
        (dict(windows=(2, 0, 4)), "windows"),
        (dict(scale=0), "scale"),
        (dict(hr_vocab_size=1), "hr_vocab_size"),
        (dict(attention="flash"), "attention must be one of"),
    ]:
        with pytest.raises(KinemaError, match=match) as e:
            preset("tiny", **bad)
        one_line(e)
    with pytest.raises(KinemaError, match="valid"):
        preset("huge")


# ---------------------------------------------------------------------- cascade


def test_upscale_video_runs_end_to_end_with_untrained_models():
    from kinema.tokenizer import Tokenizer
    from kinema.tokenizer import preset as tok_preset

    torch.manual_seed(0)
    lr_tok = Tokenizer(tok_preset("tiny", base_channels=8, fsq_levels=(4, 4, 4))).eval()
    hr_tok = Tokenizer(tok_preset("tiny-lfq", base_channels=8)).eval()  # other vocabulary
    model = build(lr_vocab_size=64, hr_vocab_size=1024)
    video = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    out = upscale_video(model, lr_tok, hr_tok, video, steps=4, seed=0)
    assert out.dtype == np.uint8 and out.shape == (5, 64, 64, 3)
    assert np.array_equal(out, upscale_video(model, lr_tok, hr_tok, video, steps=4, seed=0))
    with pytest.raises(KinemaError, match="give frames at 32x32") as e:
        upscale_video(model, lr_tok, hr_tok, video[:, :16], steps=4)
    one_line(e)
    with pytest.raises(KinemaError, match="1024") as e:
        upscale_video(model, hr_tok, hr_tok, video)
    one_line(e)
    with pytest.raises(KinemaError, match="T >= 1") as e:
        upscale_video(model, lr_tok, hr_tok, video[:0])
    one_line(e)


def test_upscale_video_cuts_a_long_video_into_clips():
    from kinema.tokenizer import Tokenizer
    from kinema.tokenizer import preset as tok_preset

    torch.manual_seed(0)
    lr_tok = Tokenizer(tok_preset("tiny", base_channels=8, fsq_levels=(4, 4, 4))).eval()
    hr_tok = Tokenizer(tok_preset("tiny-lfq", base_channels=8)).eval()
    model = build(lr_vocab_size=64, hr_vocab_size=1024)  # clips of 5 frames (t = 2, ft = 4)
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    video = np.concatenate([clip, rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)])
    out = upscale_video(model, lr_tok, hr_tok, video, steps=4, temperature=0)  # 2.4 clips
    assert out.dtype == np.uint8 and out.shape == (12, 64, 64, 3)
    # each clip is upscaled on its own: the first one as if it were the whole video
    alone = upscale_video(model, lr_tok, hr_tok, clip, steps=4, temperature=0)
    np.testing.assert_allclose(out[:5].astype(int), alone.astype(int), atol=1)
    # the last clip is padded with its last frame and trimmed
    last = np.concatenate([video[10:], np.repeat(video[-1:], 3, axis=0)])
    tail = upscale_video(model, lr_tok, hr_tok, last, steps=4, temperature=0)
    np.testing.assert_allclose(out[10:].astype(int), tail[:2].astype(int), atol=1)
    assert upscale_video(model, lr_tok, hr_tok, video[:1], steps=4).shape == (1, 64, 64, 3)
    text_model = build(lr_vocab_size=64, hr_vocab_size=1024, text_dim=4)
    text = {"text": torch.randn(1, 8, 4), "text_mask": torch.ones(1, 8, dtype=torch.bool)}
    out = upscale_video(text_model, lr_tok, hr_tok, video, steps=2, guidance=2.0, **text)
    assert out.shape == (12, 64, 64, 3)


def test_config_round_trips_through_json():
    from kinema.modeling import config_from_dict, config_to_dict

    cfg = preset("small", text_dim=16)
    assert config_from_dict(SuperResConfig, config_to_dict(cfg)) == cfg
