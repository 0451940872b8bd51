"""Multitask LM (VideoPoet): unified vocabulary, task layouts and their attention mask
against a brute-force definition, prefix tokens in TokenLM, decoding restricted to the
target modality, the multitask dataset."""

from __future__ import annotations

import pytest
import torch

from kinema.data import collate
from kinema.errors import KinemaError
from kinema.lm import TokenLM, preset
from kinema.lm.data import MultitaskDataset
from kinema.lm.tasks import (
    SPECIAL_SLOTS,
    Box,
    border_mask,
    box_mask,
    get_task,
    random_mask,
    task_sequence,
)
from kinema.lm.vocab import DEFAULT_TASKS, MODALITY_SPECIALS, Vocabulary
from kinema.sample.decode import generate_task

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = Vocabulary(visual_size=16, audio_levels=2, audio_codebook=8)
B = 2


def config(**kw):
    """Tiny multitask config: 2 x 4 x 4 clips, 4 audio frames x 2 levels, text slots."""
    opts = dict(
        vocabulary=VOCAB,
        audio_frames=4,
        text_dim=8,
        max_text_len=3,
        latent_shape=(2, 4, 4),
        block_shape=(1, 1, 4),
        init_std=0.2,
    )
    return preset("tiny", **{**opts, **kw})


def model(**kw) -> TokenLM:
    torch.manual_seed(0)
    return TokenLM(config(**kw)).eval()


def inputs(cfg, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    v = cfg.vocabulary
    grid = (B, *cfg.latent_shape)
    return {
        "video": torch.randint(0, v.visual_size, grid, generator=g),
        "audio": torch.randint(
            0, v.audio_size, (B, cfg.audio_frames * v.audio_levels), generator=g
        ),
        "control": torch.randint(0, v.visual_size, grid, generator=g),
    }


def text(cfg, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, 3, dtype=torch.bool)
    mask[0, 2:] = False  # sample 0's text is padded
    return {"text": torch.randn(B, 3, cfg.text_dim, generator=g), "text_mask": mask}


# ---------------------------------------------------------------------- vocabulary
def test_vocabulary_layout_and_round_trips():
    v = VOCAB
    assert v.specials[: len(MODALITY_SPECIALS)] == MODALITY_SPECIALS
    assert v.num_special == len(MODALITY_SPECIALS) + len(DEFAULT_TASKS)
    assert v.id_range("video") == (v.num_special, v.num_special + 16)
    assert v.id_range("audio") == (v.num_special + 16, v.size)
    assert v.size == v.num_special + 16 + 16
    # every id belongs to exactly one of: specials, visual, audio
    ids = torch.arange(v.size)
    lo_v, hi_v = v.id_range("video")
    lo_a, hi_a = v.id_range("audio")
    kinds = (ids < v.num_special).long() + ((ids >= lo_v) & (ids < hi_v)).long()
    kinds += ((ids >= lo_a) & (ids < hi_a)).long()
    assert kinds.eq(1).all()
    # task markers and specials by name are distinct specials
    marks = [v.task_id(t) for t in v.tasks] + [v.special(s) for s in MODALITY_SPECIALS]
    assert sorted(marks) == list(range(v.num_special))
    assert v.specials[v.task_id("v2a")] == "<task:v2a>"
    vis = torch.arange(16).reshape(2, 8)
    aud = torch.arange(16)
    assert torch.equal(v.unified_to_visual(v.visual_to_unified(vis)), vis)
    assert torch.equal(v.unified_to_audio(v.audio_to_unified(aud)), aud)
    assert int(v.visual_to_unified(vis).min()) == lo_v
    assert int(v.audio_to_unified(aud).max()) == hi_a - 1
    with pytest.raises(KinemaError, match=r"video tokens must be in \[0, 16\)"):
        v.visual_to_unified(torch.tensor([16]))
    with pytest.raises(KinemaError, match="unified audio ids"):
        v.unified_to_audio(torch.tensor([lo_v]))  # a visual id is no audio token
    with pytest.raises(KinemaError, match="not in this model's vocabulary"):
        v.task_id("dance")
    with pytest.raises(KinemaError, match="no audio tokens"):
        Vocabulary(visual_size=4).id_range("audio")


def test_vocabulary_is_saved_in_the_model_config(tmp_path):
    m = model()
    assert m.config.vocab_size == VOCAB.size
    m.save_pretrained(tmp_path / "m")
    text_json = (tmp_path / "m" / "config.json").read_text()
    assert '"vocabulary"' in text_json and '"stylize:edges"' in text_json
    again = TokenLM.from_pretrained(tmp_path / "m").eval()
    assert again.config.vocabulary == VOCAB
    assert again.config == m.config
    seq = task_sequence(m.config, "v2a", **inputs(m.config))
    with torch.no_grad():
        torch.testing.assert_close(m.loss(seq.batch()), again.loss(seq.batch()))


def test_multitask_config_rejects_cond_frames():
    with pytest.raises(KinemaError, match="cond_frames=0"):
        config(cond_frames=1)


# ---------------------------------------------------------------------- layouts
def segments(seq, vocab):
    """Split prefix ids into [task] + (begin, body, end) segments by the delimiters."""
    ids = seq.prefix_ids[0].tolist()
    out, i = [], 1
    while i < len(ids):
        begin = ids[i]
        end = vocab.special("<eov>" if begin == vocab.special("<bov>") else "<eoa>")
        j = ids.index(end, i + 1)
        out.append((vocab.specials[begin], ids[i + 1 : j]))
        i = j + 1
    return ids[0], out


EXPECTED = {  # task: (prefix segments, target modality, target frames or audio tokens)
    "unconditional": ([], "video", 2),
    "t2i": ([], "video", 1),
    "t2v": ([], "video", 2),
    "i2v": ([("<bov>", 16)], "video", 1),
    "continuation": ([("<bov>", 16)], "video", 1),
    "inpaint": ([("<bov>", 32)], "video", 2),
    "outpaint": ([("<bov>", 32)], "video", 2),
    "stylize:edges": ([("<bov>", 32)], "video", 2),
    "stylize:gray": ([("<bov>", 32)], "video", 2),
    "v2a": ([("<bov>", 32)], "audio", 8),
    "a2v": ([("<boa>", 8)], "video", 2),
}


@pytest.mark.parametrize("task", DEFAULT_TASKS)
def test_task_layout(task):
    cfg = config()
    v, x = cfg.vocabulary, inputs(cfg)
    seq = task_sequence(cfg, task, **x)
    first, segs = segments(seq, v)
    assert first == v.task_id(task)
    want_segs, modality, size = EXPECTED[task]
    assert [(name, len(body)) for name, body in segs] == want_segs
    assert seq.modality == modality and seq.start_id == v.begin(modality)
    # the condition is the right raw input, in the unified vocabulary
    vis = v.visual_to_unified
    cond = {
        "i2v": vis(x["video"][:, :1]),
        "continuation": vis(x["video"][:, :1]),
        "stylize:edges": vis(x["control"]),
        "stylize:gray": vis(x["control"]),
        "v2a": vis(x["video"]),
        "a2v": v.audio_to_unified(x["audio"]),
    }
    if task in cond:
        assert segs[0][1] == cond[task][0].flatten().tolist()
    # the target is the rest of the clip / the image / the audio, in block order
    target = seq.from_blocks(seq.target)
    want = {
        "t2i": vis(x["video"][:, :1]),
        "i2v": vis(x["video"][:, 1:]),
        "continuation": vis(x["video"][:, 1:]),
        "v2a": v.audio_to_unified(x["audio"]),
    }.get(task, vis(x["video"]))
    assert torch.equal(target, want)
    assert target[0].numel() == size * (16 if modality == "video" else 1)
    lo, hi = v.id_range(modality)
    assert seq.target.min() >= lo and seq.target.max() < hi
    assert seq.positions.shape == (seq.prefix_len + seq.num_blocks * seq.block_len, 3)


def test_positions():
    cfg = config()
    o = cfg.num_1d_prefix  # 3 text slots
    g = o + len(SPECIAL_SLOTS)
    x = inputs(cfg)
    seq = task_sequence(cfg, "v2a", **x)
    pos = seq.positions
    # text slots, then the task marker and <bov> / <eov> at their fixed 1D slots
    assert pos[:o].tolist() == [[k, k, k] for k in range(o)]
    assert pos[o].tolist() == [o, o, o]  # task marker
    assert pos[o + 1].tolist() == [o + 1] * 3  # <bov>
    video = pos[o + 2 : o + 2 + 32]
    assert video[0].tolist() == [g, g, g] and video[-1].tolist() == [g + 1, g + 3, g + 3]
    assert pos[o + 2 + 32].tolist() == [o + 2] * 3  # <eov>
    # audio target: t time-aligned over the clip's 2 latent frames, h = level, w = frame
    audio = pos[seq.prefix_len + seq.block_len :]  # blocks 0..n-2 of the inputs
    full = torch.cat([pos[seq.prefix_len : seq.prefix_len + seq.block_len], audio])
    start = full[: seq.block_len]
    a = torch.arange(8) // 2
    want = torch.stack([g + a * 2 // 4, g + torch.arange(8) % 2, g + a], dim=-1)
    assert torch.equal(start, want[:4] - torch.tensor([1, 0, 0]))  # start block: one frame back
    assert torch.equal(full[4:], want[:4])  # input block 1 sits where block 0 is
    # every target token has its own position (video tasks too)
    for task in ("t2v", "a2v", "inpaint"):
        s = task_sequence(cfg, task, **x)
        tgt = s.positions[s.prefix_len :]
        assert len({tuple(p) for p in tgt.tolist()}) == len(tgt)
    # a stylized / inpainted token shares its position with the prefix token it comes from
    s = task_sequence(cfg, "stylize:edges", **x)
    prefix_grid = s.positions[o + 2 : o + 2 + 32]
    blocks = s.positions[s.prefix_len + s.block_len :]
    assert torch.equal(blocks, prefix_grid[: len(blocks)])


def test_inpaint_and_outpaint_masks():
    cfg = config()
    x = inputs(cfg)
    v = cfg.vocabulary
    mask_id = v.special("<mask>")
    box = Box(1, 3, 0, 2, t0=1)
    for task, spec, want in (
        ("inpaint", box, box_mask((2, 4, 4), box)),
        ("outpaint", 1, border_mask((2, 4, 4), 1)),
        ("outpaint", (0, 1, 2, 0), border_mask((2, 4, 4), (0, 1, 2, 0))),
    ):
        seq = task_sequence(cfg, task, **x, mask=spec)
        _, [(_, body)] = segments(seq, v)
        body = torch.tensor(body).reshape(2, 4, 4)
        assert torch.equal(body == mask_id, want)
        assert torch.equal(body[~want], v.visual_to_unified(x["video"][0])[~want])
    # the border: 1 cell all around every frame
    ring = border_mask((2, 4, 4), 1)[0]
    assert ring.sum() == 12 and not ring[1:3, 1:3].any() and ring[0].all() and ring[:, 0].all()
    # a per-token boolean mask, different per sample
    m = torch.zeros(B, 2, 4, 4, dtype=torch.bool)
    m[0, 0, 0, 0] = m[1, 1, 3, 3] = True
    seq = task_sequence(cfg, "inpaint", **x, mask=m)
    ids = seq.prefix_ids[:, 2:-1].reshape(B, 2, 4, 4)
    assert torch.equal(ids == mask_id, m)
    g = torch.Generator().manual_seed(0)
    for task in ("inpaint", "outpaint"):
        for _ in range(20):
            r = random_mask(task, (2, 4, 4), g)
            assert r.any() and not r.all()
    with pytest.raises(KinemaError, match="border"):
        border_mask((2, 4, 4), 2)


def test_task_errors():
    cfg = config()
    x = inputs(cfg)
    with pytest.raises(KinemaError, match="unknown task"):
        get_task("dance")
    with pytest.raises(KinemaError, match="unknown control"):
        get_task("stylize:depth")
    with pytest.raises(KinemaError, match="needs audio"):
        task_sequence(cfg, "a2v")
    with pytest.raises(KinemaError, match=r"video tokens must be"):
        task_sequence(cfg, "v2a", video=x["video"][:, :1])
    with pytest.raises(KinemaError, match="multiple of 4"):
        task_sequence(config(audio_frames=3), "v2a", **{**x, "audio": x["audio"][:, :6]})
    with pytest.raises(KinemaError, match="task t2i: block_shape"):
        task_sequence(config(block_shape=(2, 1, 1)), "t2i")
    with pytest.raises(KinemaError, match="need a multitask model"):
        task_sequence(preset("tiny"), "t2v")


# ---------------------------------------------------------------------- attention mask
def intended_mask(p: int, n: int, length: int, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Brute force: prefix slots see the whole prefix; target slot i sees the prefix and every
    slot of its own or an earlier block; padding keys are seen only by themselves."""
    size = p + n * length
    m = torch.zeros(size, size, dtype=torch.bool)
    for i in range(size):
        for j in range(size):
            if i < p:
                m[i, j] = j < p
            else:
                m[i, j] = j < p or (j - p) // length <= (i - p) // length
    if valid is None:
        return m
    out = torch.zeros(len(valid), 1, size, size, dtype=torch.bool)
    for b in range(len(valid)):
        for i in range(size):
            for j in range(size):
                key_ok = j >= p or bool(valid[b, j])
                out[b, 0, i, j] = (m[i, j] and key_ok) or i == j
    return out


@pytest.mark.parametrize("block_shape", [(1, 1, 1), (1, 1, 4), (1, 2, 2)])
@pytest.mark.parametrize("task", ["t2i", "i2v", "inpaint", "v2a", "a2v", "stylize:edges"])
def test_task_attention_mask_is_prefix_bidirectional_and_block_causal(task, block_shape):
    m = model(block_shape=block_shape)
    cfg = m.config
    seq = task_sequence(cfg, task, **inputs(cfg))
    p, n, length = seq.prefix_len, seq.num_blocks, seq.block_len
    assert length == block_shape[0] * block_shape[1] * block_shape[2]
    _, valid = m.embed_prefix(B, prefix_ids=seq.prefix_ids, **text(cfg))
    assert valid.shape == (B, p)
    got = m.attention_mask(valid, prefix_len=p, num_blocks=n)
    assert torch.equal(got, intended_mask(p, n, length, valid))
    assert torch.equal(m.attention_mask(prefix_len=p, num_blocks=n), intended_mask(p, n, length))


def test_task_forward_is_block_causal():
    """Changing target block k changes no prediction of blocks <= k; changing a prefix token
    changes predictions everywhere."""
    m = model()
    cfg = m.config
    seq = task_sequence(cfg, "inpaint", **inputs(cfg))
    batch = seq.batch()

    def hidden(b):
        with torch.no_grad():
            return m.forward_blocks(
                b["target"],
                b["positions"],
                prefix_ids=b["prefix_ids"],
                start_id=b["start_id"],
                **text(cfg),
            )

    h0 = hidden(batch)
    length = seq.block_len
    k = 3
    changed = dict(batch, target=batch["target"].clone())
    off = VOCAB.visual_offset
    changed["target"][:, k] = off + (batch["target"][:, k] - off + 5) % 16
    h1 = hidden(changed)
    upto = (k + 1) * length  # input blocks 0..k hold the start block and target blocks < k
    torch.testing.assert_close(h1[:, :upto], h0[:, :upto])
    assert not torch.allclose(h1[:, upto:], h0[:, upto:])
    prefix = dict(batch, prefix_ids=batch["prefix_ids"].clone())
    last = batch["prefix_ids"][:, -2]  # the clip's last token (or <mask>), before <eov>
    prefix["prefix_ids"][:, -2] = torch.where(last == off, off + 1, off)
    h2 = hidden(prefix)
    assert not torch.isclose(h2[:, :length], h0[:, :length]).all()


# ---------------------------------------------------------------------- model
def test_prefix_tokens_null_condition():
    """Dropped samples see <null> for every visual / audio prefix token; the task marker,
    delimiters and <mask> stay."""
    m = model()
    cfg = m.config
    seq = task_sequence(cfg, "inpaint", **inputs(cfg))
    drop = torch.tensor([True, False])
    x, _ = m.embed_prefix(B, prefix_ids=seq.prefix_ids, drop=drop)
    ids = seq.prefix_ids.clone()
    content = ids >= VOCAB.num_special
    ids[0][content[0]] = VOCAB.special("<null>")
    want, _ = m.embed_prefix(B, prefix_ids=ids)
    n_text = cfg.max_text_len
    torch.testing.assert_close(x[:, n_text:], want[:, n_text:])
    assert (ids[0] == VOCAB.special("<mask>")).any()  # the mask survives the drop


def test_single_task_api_unchanged_by_the_generic_path():
    m = TokenLM(preset("tiny")).eval()
    tokens = torch.randint(0, 64, (2, 2, 4, 4))
    with torch.no_grad():
        a = m(tokens)
        b = m.forward_blocks(m.to_blocks(tokens), m.positions)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(KinemaError, match="prefix_ids need a multitask model"):
        m.embed_prefix(2, prefix_ids=torch.zeros(2, 1, dtype=torch.long))


# ---------------------------------------------------------------------- decoding
@pytest.mark.parametrize("block_shape", [(1, 1, 1), (1, 2, 2)])
@pytest.mark.parametrize("task", ["i2v", "v2a", "a2v"])
def test_cached_task_decoding_reproduces_the_full_forward(task, block_shape):
    m = model(block_shape=block_shape)
    cfg = m.config
    x = inputs(cfg)
    gen_inputs = dict(x)
    gen_inputs.pop("audio" if task == "v2a" else "video")
    if task == "i2v":
        gen_inputs["video"] = x["video"][:, :1]
    seq = task_sequence(cfg, task, **gen_inputs)
    assert seq.target is None
    logits = []
    out = generate_task(
        m, seq, **text(cfg), seed=0, callback=lambda s, lg, t: logits.append(lg.clone())
    )
    assert len(logits) == seq.num_blocks
    # teacher-forced on what was sampled
    full = task_sequence(
        cfg,
        task,
        video=torch.cat([x["video"][:, :1], out], 1) if task == "i2v" else x["video"],
        audio=out if task == "v2a" else x["audio"],
    )
    if task == "a2v":
        full = task_sequence(cfg, task, video=out, audio=x["audio"])
    b = full.batch()
    with torch.no_grad():
        h = m.forward_blocks(
            b["target"],
            b["positions"],
            prefix_ids=b["prefix_ids"],
            start_id=b["start_id"],
            **text(cfg),
        )
        ref = m.head(h).float()
    lo, hi = VOCAB.id_range(seq.modality)
    torch.testing.assert_close(torch.cat(logits, 1), ref[..., lo:hi], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("task", DEFAULT_TASKS)
def test_decoding_samples_only_the_target_modality(task):
    m = model()
    cfg = m.config
    spec = get_task(task)
    lo, hi = VOCAB.id_range(spec.modality)
    with torch.no_grad():  # make the unrestricted model prefer ids of other kinds
        m.head.weight[:lo] *= 50
        m.head.weight[hi:] *= 50
    x = inputs(cfg)
    if task == "a2v":
        x.pop("video")
    if task == "v2a":
        x.pop("audio")
    seq = task_sequence(cfg, task, **x)
    ids = []

    def record(step, logits, tokens):
        ids.append(tokens)

    raw = generate_task(m, seq, seed=0, callback=record, cfg_scale=2.0, **text(cfg))
    ids = torch.cat(ids)
    assert ids.min() >= lo and ids.max() < hi
    if spec.modality == "audio":
        assert raw.shape == (B, 8) and raw.max() < VOCAB.audio_size
    else:
        assert raw.shape == (B, *seq.target_shape) and raw.max() < VOCAB.visual_size
    # without the restriction this model would have sampled other ids
    with torch.no_grad():
        probe = m.head(torch.randn(4, cfg.dim)).argmax(-1)
    assert ((probe < lo) | (probe >= hi)).any()


def test_position_ranges_follow_the_audio_levels():
    v = VOCAB  # 2 levels of 8 codes
    a = v.audio_offset
    r = v.position_ranges("audio", (8,))
    assert r.tolist() == [[a + 8 * (j % 2), a + 8 * (j % 2) + 8] for j in range(8)]
    assert v.position_ranges("video", (2, 4, 4)).shape == (2, 4, 4, 2)
    assert (v.position_ranges("video", (2, 4, 4)) == torch.tensor(v.id_range("video"))).all()
    with pytest.raises(KinemaError, match="whole frames"):
        v.position_ranges("audio", (7,))


@pytest.mark.parametrize("block_shape", [(1, 1, 1), (1, 1, 4), (1, 2, 2)])
@pytest.mark.parametrize("sampling", [{}, {"temperature": 0}, {"top_k": 3, "top_p": 0.9}])
def test_audio_tokens_keep_the_level_of_their_position(block_shape, sampling):
    from kinema.audio.codec import tokens_to_codes

    m = model(block_shape=block_shape)
    cfg = m.config
    q, k = VOCAB.audio_levels, VOCAB.audio_codebook
    a = VOCAB.audio_offset
    with torch.no_grad():  # make the whole-range sampler prefer level 1 everywhere
        m.head.weight[a + k :] *= 50
    x = inputs(cfg)
    x.pop("audio")
    seq = task_sequence(cfg, "v2a", **x)
    level = torch.arange(cfg.audio_frames * q) % q
    for seed in range(12):
        guided = {"cfg_scale": 2.0, **text(cfg)} if seed % 2 else {}
        raw = generate_task(m, seq, seed=seed, **sampling, **guided)  # (B, A * Q)
        assert raw.shape == (B, cfg.audio_frames * q)
        assert (raw >= level * k).all() and (raw < (level + 1) * k).all()
        tokens_to_codes(raw, q, k)  # decodable
    x = inputs(cfg)
    x.pop("video")
    seq = task_sequence(cfg, "a2v", **x)
    for seed in range(4):
        raw = generate_task(m, seq, seed=seed, **sampling)
        assert raw.shape == (B, *cfg.latent_shape)
        assert raw.min() >= 0 and raw.max() < VOCAB.visual_size


# ---------------------------------------------------------------------- dataset
class Clips(torch.utils.data.Dataset):
    def __init__(self, cfg, n: int = 5):
        self.cfg, self.n = cfg, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        x = inputs(self.cfg, seed=i)
        t = text(self.cfg, seed=i)
        return {
            "tokens": x["video"][0],
            "audio_tokens": x["audio"][0],
            "control:edges": x["control"][0],
            "text": t["text"][0],
            "text_mask": t["text_mask"][0],
        }


def test_multitask_dataset_items_stack_per_task():
    cfg = config()
    tasks = ["t2i", "t2v", "inpaint", "outpaint", "stylize:edges", "v2a", "a2v", "i2v"]
    data = MultitaskDataset(Clips(cfg), cfg, tasks, seed=3)
    assert len(data) == len(tasks) * 5
    assert data.image_tasks == {"t2i"}
    assert data.item_tasks == [t for t in tasks for _ in range(5)]
    for k, task in enumerate(tasks):
        items = [data[k * 5 + i] for i in range(5)]
        assert {it["task"] for it in items} == {task}
        batch = collate(items)
        for key in ("prefix_ids", "target", "positions", "start_id"):
            assert isinstance(batch[key], torch.Tensor), (task, key)  # stacked: same shapes
        # text only where VideoPoet has it; the other tasks learn with the null text
        assert ("text" in batch) == (task in ("t2i", "t2v", "stylize:edges"))
        m = model()
        assert torch.isfinite(m.loss(batch)["loss"])
    # masks are a function of (seed, index)
    i = tasks.index("inpaint") * 5
    assert torch.equal(data[i]["prefix_ids"], data[i]["prefix_ids"])
    assert not torch.equal(data[i]["prefix_ids"], data[i + 1]["prefix_ids"])
    with pytest.raises(KinemaError, match="needs clip field 'control:gray'"):
        MultitaskDataset(Clips(cfg), cfg, ["stylize:gray"])


def test_tokenized_physics_clips_feed_every_task():
    """Raw physics clips with sound -> video / control / audio tokens and text -> task items
    -> one loss per task (the path a real multitask run takes)."""
    from kinema.audio import AudioCodec
    from kinema.audio import preset as codec_preset
    from kinema.data.physics_audio import PhysicsAudioVisualDataset
    from kinema.lm import ByteTextEncoder
    from kinema.lm.data import TokenizedClips
    from kinema.tokenizer import Tokenizer, TokenizerConfig

    torch.manual_seed(0)
    tok = Tokenizer(
        TokenizerConfig(
            spatial_compression=4,
            resolution=16,
            num_frames=5,
            base_channels=8,
            channel_mult=(1, 1, 1),
            fsq_levels=(4, 4),
            norm_groups=4,
        )
    ).eval()
    codec = AudioCodec(codec_preset("tiny")).eval()  # 2 levels x 64 codes, 50 frames/s
    raw = PhysicsAudioVisualDataset(length=2, resolution=16, num_frames=5, cond_frames=1)
    clips = TokenizedClips(
        raw,
        tok,
        codec=codec,
        audio_frames=26,  # 0.5 s = 25 frames, padded so that 26 * 2 tokens fill blocks of 4
        controls=("edges",),
        text_encoder=ByteTextEncoder(dim=8, max_length=16),
    )
    clip = clips[0]
    assert clip["tokens"].shape == (2, 4, 4) and clip["control:edges"].shape == (2, 4, 4)
    assert clip["audio_tokens"].shape == (52,) and clip["text"].shape == (16, 8)
    vocab = Vocabulary(visual_size=16, audio_levels=2, audio_codebook=64)
    cfg = config(vocabulary=vocab, audio_frames=26, max_text_len=16)
    tasks = ["t2v", "stylize:edges", "v2a", "a2v", "continuation"]
    data = MultitaskDataset(clips, cfg, tasks)
    torch.manual_seed(0)
    m = TokenLM(cfg).train()
    for k in range(len(tasks)):
        batch = collate([data[2 * k], data[2 * k + 1]])
        assert torch.isfinite(m.loss(batch)["loss"])
