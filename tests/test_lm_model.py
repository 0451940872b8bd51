"""TokenLM: config and presets, block layout, positions, the block shift of the training
target, block causality, null condition, chunked loss, training and save/load."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from kinema.errors import KinemaError
from kinema.lm import (
    TokenLM,
    TokenLMConfig,
    chunked_cross_entropy,
    from_blocks,
    preset,
    to_blocks,
)

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from lm_testing import COND, build  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def cond_batch(model: TokenLM, b: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch with every condition the model has (text of sample 0 partly padded)."""
    c, g = model.config, torch.Generator().manual_seed(seed)
    batch = {"tokens": torch.randint(0, c.vocab_size, (b, *c.latent_shape), generator=g)}
    if c.num_classes:
        batch["label"] = torch.arange(b) % c.num_classes
    if c.text_dim:
        batch["text"] = torch.randn(b, 4, c.text_dim, generator=g)
        batch["text_mask"] = torch.ones(b, 4, dtype=torch.bool)
        batch["text_mask"][0, 2:] = False
    if c.cond_frames:
        _, h, w = c.latent_shape
        shape = (b, c.cond_frames, h, w)
        batch["cond_tokens"] = torch.randint(0, c.vocab_size, shape, generator=g)
    return batch


def split(batch):
    return batch["tokens"], {k: v for k, v in batch.items() if k != "tokens"}


# ---------------------------------------------------------------------------- config


def test_bad_block_shape_is_a_one_line_error():
    with pytest.raises(KinemaError) as err:
        TokenLMConfig(latent_shape=(3, 16, 16), block_shape=(1, 3, 16))
    msg = str(err.value)
    assert "\n" not in msg and "(1, 3, 16)" in msg and "h 16 % 3 != 0" in msg
    with pytest.raises(KinemaError, match="tile"):
        preset("tiny", block_shape=(2, 1, 4), latent_shape=(3, 4, 4))
    with pytest.raises(KinemaError, match="unknown token LM preset"):
        preset("nbp-7b")
    with pytest.raises(KinemaError, match="divisible"):
        preset("tiny", dim=33)


def test_config_sizes():
    c = preset("tiny", **COND, latent_shape=(3, 4, 4), block_shape=(1, 2, 2))
    assert (c.block_len, c.num_blocks, c.num_1d_prefix) == (4, 12, 1 + 6)
    assert c.prefix_len == 7 + 16 and c.seq_len == 23 + 48
    k600 = preset("nbp-700m")
    assert (k600.prefix_len, k600.num_blocks, k600.block_len) == (512, 48, 16)  # paper


# Non-embedding parameters (transformer core + start block), LLaMA SwiGLU widths.
PAPER_SIZES = {
    "nbp-700m": (679_577_088, 974_490_624),
    "nbp-1.2b": (1_233_258_496, 1_626_476_544),
    "nbp-3b": (3_624_127_488, 4_213_954_560),
}


@pytest.mark.parametrize("name", sorted(PAPER_SIZES))
def test_paper_preset_parameter_counts_on_meta_device(name):
    with torch.device("meta"):
        model = TokenLM(preset(name))
    assert next(model.parameters()).is_meta  # nothing allocated
    core, total = PAPER_SIZES[name]
    assert model.num_parameters(exclude_embeddings=True) == core
    assert model.num_parameters() == total


def test_small_preset_is_cpu_sized():
    with torch.device("meta"):
        model = TokenLM(preset("small"))
    assert 5e6 <= model.num_parameters() <= 10e6


# ---------------------------------------------------------------------------- layout


@settings(max_examples=30, deadline=None)
@given(
    nt=st.integers(1, 3),
    nh=st.integers(1, 3),
    nw=st.integers(1, 3),
    bt=st.integers(1, 2),
    bh=st.integers(1, 3),
    bw=st.integers(1, 3),
)
def test_to_blocks_round_trip_and_blocks_are_sub_boxes(nt, nh, nw, bt, bh, bw):
    grid, block = (nt * bt, nh * bh, nw * bw), (bt, bh, bw)
    tokens = torch.randperm(2 * grid[0] * grid[1] * grid[2]).view(2, *grid)
    blocks = to_blocks(tokens, block)
    assert blocks.shape == (2, nt * nh * nw, bt * bh * bw)
    assert torch.equal(from_blocks(blocks, grid, block), tokens)
    # block (i, j, k) of the block grid holds exactly the sub-box, raster inside
    i, j, k = nt - 1, nh // 2, nw - 1
    box = tokens[:, i * bt : (i + 1) * bt, j * bh : (j + 1) * bh, k * bw : (k + 1) * bw]
    assert torch.equal(blocks[:, (i * nh + j) * nw + k], box.reshape(2, -1))


def test_1x1xw_blocks_are_plain_raster_order():
    tokens = torch.arange(2 * 4 * 4).view(1, 2, 4, 4)
    assert torch.equal(to_blocks(tokens, (1, 1, 4)).flatten(), tokens.flatten())
    assert torch.equal(to_blocks(tokens, (1, 1, 1)).flatten(), tokens.flatten())


def test_positions_follow_the_documented_layout():
    model = build(**COND, latent_shape=(2, 4, 4), block_shape=(1, 2, 2))
    c, pos = model.config, model.positions
    o = c.num_1d_prefix  # class + 6 text slots
    assert pos.dtype == torch.long and pos.shape == (c.seq_len, 3)
    assert torch.equal(pos[:o], torch.arange(o)[:, None].expand(o, 3))
    cond = pos[o : c.prefix_len].view(1, 4, 4, 3)  # frame 0 of the grid, shifted by o
    assert torch.equal(cond[0, 2, 3], torch.tensor([o, o + 2, o + 3]))
    # input block j + 1 carries video block j: its positions are its tokens' grid cells
    grid = torch.stack(
        torch.meshgrid(torch.arange(2), torch.arange(4), torch.arange(4), indexing="ij"), -1
    )[None] + torch.tensor([o + 1, o, o])
    video = to_blocks(grid, c.block_shape)[0]  # (n, L, 3)
    inputs = pos[c.prefix_len :].view(c.num_blocks, c.block_len, 3)
    assert torch.equal(inputs[1:], video[:-1])
    assert torch.equal(inputs[0], video[0] - torch.tensor([1, 0, 0]))  # start: a frame before


def test_tokens_of_wrong_grid_are_rejected():
    model = build()
    with pytest.raises(KinemaError, match=r"tokens must be \(B, 2, 4, 4\)"):
        model.loss({"tokens": torch.zeros(1, 2, 4, 8, dtype=torch.long)})
    with pytest.raises(KinemaError, match="label given but the model has no such condition"):
        model.loss({"tokens": torch.zeros(1, 2, 4, 4, dtype=torch.long), "label": torch.ones(1)})


# ---------------------------------------------------------------------------- semantics


@pytest.mark.parametrize("block_shape", [(1, 1, 1), (1, 1, 4), (1, 2, 2), (2, 2, 1)])
def test_block_causality_and_one_block_shift(block_shape):
    """Changing token i of block k changes the predictions of block k + 1 (all of them:
    bidirectional inside the input block) and nothing before."""
    model = build(**COND, block_shape=block_shape)
    c = model.config
    tokens, cond = split(cond_batch(model, b=1))
    blen, n = c.block_len, c.num_blocks
    k = n // 2 - 1
    blocks = model.to_blocks(tokens).clone()
    blocks[0, k, blen - 1] = (blocks[0, k, blen - 1] + 1) % c.vocab_size
    changed = model.from_blocks(blocks)
    with torch.no_grad():
        a = model.logits(tokens, **cond).view(n, blen, -1)
        b = model.logits(changed, **cond).view(n, blen, -1)
    diff = (a - b).abs().amax(-1)  # (n, L)
    assert diff[: k + 1].max() == 0  # rows predicting blocks <= k never see block k
    assert (diff[k + 1] > 1e-6).all()  # every position of the next input block does
    assert (diff[k + 2 :] > 1e-6).any() or k + 2 >= n


def test_conditions_change_predictions_and_drop_equals_missing():
    model = build(**COND)
    tokens, cond = split(cond_batch(model))
    with torch.no_grad():
        base = model.logits(tokens, **cond)
        for key in ("label", "text", "cond_tokens"):
            other = dict(cond)
            other[key] = cond[key].roll(1, 0) if key != "text" else cond[key] + 1.0
            assert (model.logits(tokens, **other) - base).abs().amax() > 1e-4, key
        dropped = model.logits(tokens, **cond, drop=torch.ones(3, dtype=torch.bool))
        null = model.logits(tokens)  # no condition given = the null condition
    torch.testing.assert_close(dropped, null, rtol=0, atol=1e-6)
    assert (dropped - base).abs().amax() > 1e-4


def test_padded_text_slots_are_invisible():
    model = build(**COND)
    tokens, cond = split(cond_batch(model))
    other = dict(cond, text=cond["text"].clone())
    other["text"][0, 2:] = 100.0  # sample 0's padding
    with torch.no_grad():
        torch.testing.assert_close(model.logits(tokens, **other), model.logits(tokens, **cond))
        short = dict(
            cond,
            text=cond["text"][:1, :2],
            text_mask=None,
            label=cond["label"][:1],
            cond_tokens=cond["cond_tokens"][:1],
        )
        torch.testing.assert_close(  # explicit padding == shorter text
            model.logits(tokens[:1], **short), model.logits(tokens, **cond)[:1]
        )


def test_training_drops_the_condition_per_sample():
    model = build(**COND, cond_drop_prob=1.0)
    batch = cond_batch(model)
    model.train()
    dropped = model.loss(batch)["loss"]
    model.eval()
    null = model.loss({"tokens": batch["tokens"]})["loss"]
    kept = model.loss(batch)["loss"]  # eval mode never drops
    torch.testing.assert_close(dropped, null)
    assert abs(kept.item() - null.item()) > 1e-4


# ---------------------------------------------------------------------------- loss


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_cross_entropy_equals_plain(chunk):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(23, 16, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 50, (23,), generator=g)
    loss, acc = chunked_cross_entropy(h, w, y, chunk)
    (3.0 * loss).backward()
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    logits = h2 @ w2.T
    ref = F.cross_entropy(logits, y)
    (3.0 * ref).backward()
    torch.testing.assert_close(loss.double(), ref)
    torch.testing.assert_close(h.grad, h2.grad)
    torch.testing.assert_close(w.grad, w2.grad)
    assert acc.item() == (logits.argmax(-1) == y).double().mean().item()
    assert not acc.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(chunked_cross_entropy(h, w, y, chunk)[0].double(), ref)


def test_loss_is_the_cross_entropy_of_the_teacher_forced_logits():
    model = build(**COND)
    batch = cond_batch(model)
    tokens, cond = split(batch)
    with torch.no_grad():
        logits = model.logits(tokens, **cond)
        targets = model.to_blocks(tokens).flatten(1)  # input block j -> block j
        ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        torch.testing.assert_close(model.loss(batch)["loss"], ref)


def test_training_loss_decreases_on_a_fixed_batch():
    model = build(**COND, block_shape=(1, 2, 2), cond_drop_prob=0.0)
    model.train()
    batch = cond_batch(model, b=4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model.loss(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert model.loss(batch)["accuracy"] > 0.5


def test_trainer_hooks():
    model = build(**COND)
    assert {"start", "text.null"} <= model.no_weight_decay()
    assert model.fsdp_units() == list(model.transformer.layers)
    assert model.num_tokens(cond_batch(model)) == 3 * 2 * 4 * 4


def test_save_and_load_round_trip(tmp_path):
    model = build(**COND, block_shape=(2, 2, 1))
    path = model.save_pretrained(tmp_path / "lm")
    loaded = TokenLM.from_pretrained(path).eval()
    assert loaded.config == model.config and loaded.config.block_shape == (2, 2, 1)
    tokens, cond = split(cond_batch(model))
    with torch.no_grad():
        assert torch.equal(loaded.logits(tokens, **cond), model.logits(tokens, **cond))


def test_loss_under_bf16_autocast_matches_fp32():
    model = build(**COND, cond_drop_prob=0.0)
    batch = cond_batch(model)
    model.loss(batch)["loss"].backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(batch)["loss"]
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad.dtype == torch.float32, name
        err = (p.grad - ref[name]).norm() / ref[name].norm().clamp_min(1e-12)
        assert err < 0.1, (name, err.item())


class TokenData(torch.utils.data.Dataset):
    """Fixed random token videos with labels: what a tokenized dataset yields."""

    def __init__(self, n: int = 8) -> None:
        g = torch.Generator().manual_seed(0)
        self.tokens = torch.randint(0, 64, (n, 2, 4, 4), generator=g)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"tokens": self.tokens[i], "label": torch.tensor(i % 3)}


def test_trains_through_the_trainer_and_reloads(tmp_path):
    from kinema.train import TrainConfig, Trainer

    model = build(num_classes=3)
    config = TrainConfig(
        steps=4,
        batch_size=4,
        lr=3e-3,
        warmup_steps=1,
        log_every=1,
        out_dir=str(tmp_path),
        device="cpu",
        tensorboard=False,
        progress=False,
        keep_last=0,
    )
    result = Trainer(model, TokenData(), config).fit()
    assert result.step == 4 and all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)
    assert "accuracy" in result.final
    loaded = TokenLM.from_pretrained(result.checkpoint)
    tokens = TokenData().tokens[:2]
    with torch.no_grad():
        assert torch.equal(loaded.eval().logits(tokens), model.eval().logits(tokens))


@pytest.mark.parametrize("block", [(1, 1, 1), (1, 1, 2), (1, 4, 4)])
def test_init_from_another_block_shape(tmp_path, block):
    """Fine-tuning next-token (or any block) from a next-block run: every weight is copied
    and the start block's rows are the source's, cyclically; other shape changes still fail."""
    from kinema.train.checkpoint import load_init_weights

    src = build(seed=1)  # block (1, 1, 4)
    src.save_pretrained(tmp_path / "nbp")
    torch.manual_seed(2)
    dst = TokenLM(preset("tiny", block_shape=block))
    load_init_weights(dst, tmp_path / "nbp")
    own, ref = dst.state_dict(), src.state_dict()
    rows = torch.arange(dst.config.block_len) % 4
    assert torch.equal(own["start"], ref["start"][rows])
    for name, tensor in ref.items():
        if name != "start":
            assert torch.equal(own[name], tensor), name
    with pytest.raises(KinemaError, match=r"\(64, 32\) there and \(65, 32\)"):
        load_init_weights(TokenLM(preset("tiny", vocab_size=65)), tmp_path / "nbp")
