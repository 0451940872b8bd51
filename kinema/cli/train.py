"""``kinema train lm|flow``: train a token LM or a pyramid-flow DiT; ``--data`` that is not
a shard folder yet is encoded first (``kinema tokenizer encode``).
"""

from __future__ import annotations

import re
from pathlib import Path

import typer

from kinema.cli.common import _parse_sets, _report_export, _threads, _train_config
from kinema.cli.tokenizer import tokenizer_encode
from kinema.errors import KinemaError

train_app = typer.Typer(help="Train generative models.", no_args_is_help=True)


def _training_shards(
    data: list[str], out: Path, tokenizer: str, n: int, resolution: int, frames: int, seed: int
):
    """``--data`` (repeatable) as shards: a shard folder as is, else the dataset encoded once
    into ``OUT/shards/NAME`` with ``--tokenizer``; several are concatenated. Returns the
    shards and the tokenizer that made them (the one to ship with the model)."""
    from kinema.tokenizer.shards import INDEX, ConcatShards, ShardDataset

    parts = []
    for i, entry in enumerate(data):
        shard_dir = Path(entry)
        if not (shard_dir / INDEX).is_file():
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(entry).name or entry)
            shard_dir = out / "shards" / f"{i}-{name}"
            if not (shard_dir / INDEX).is_file():
                tokenizer_encode(
                    entry, shard_dir, tokenizer, n, "all", "id", resolution, frames, seed, 8,
                    1024, controls=None, audio_codec=None, audio_frames=None, threads=None,
                )  # fmt: skip
        parts.append(ShardDataset(shard_dir))
    shards = parts[0] if len(parts) == 1 else ConcatShards(parts)
    return shards, shards.tokenizer or tokenizer


@train_app.command("lm")
def train_lm_command(
    data: list[str] = typer.Option(
        ...,
        "--data",
        help="A shard folder, or physics/shapes/digits/a video path to encode; repeatable.",
    ),
    tokenizer: str = typer.Option(
        "tokenizer-cpu-fsq", "--tokenizer", help="Tokenizer folder or shipped name."
    ),
    preset_name: str = typer.Option("small", "--preset", help="TokenLM preset."),
    block: str = typer.Option("1x1x16", help="Block shape t x h x w (1x1x1 = next token)."),
    cond_frames: int | None = typer.Option(
        None, help="Given latent frames (default 2 = 5 video frames; not with --tasks)."
    ),
    tasks: str | None = typer.Option(
        None,
        help="Multitask (VideoPoet) model: TASK:WEIGHT,... e.g. t2v:1,i2v:1,inpaint:1,"
        "stylize:edges:1,v2a:1 (AGD: one task per step).",
    ),
    curriculum: bool = typer.Option(
        False, help="--tasks: image tasks first (90%), then video (VideoPoet's curriculum)."
    ),
    captions: bool | None = typer.Option(
        None,
        help="Condition on the clips' captions (all-MiniLM-L6-v2 states). Default: on with "
        "--tasks that have a text task (t2v, t2i, stylize), else off.",
    ),
    label_key: str | None = typer.Option(None, help="Item field to use as class label."),
    num_classes: int = typer.Option(0, help="Classes of --label-key."),
    sets: list[str] = typer.Option([], "--set", help="Override a config field: KEY=VALUE."),
    n: int = typer.Option(10_000, "--n", min=1, help="Clips to encode when --data is a name."),
    resolution: int = typer.Option(64, help="Frame size of clips encoded here."),
    frames: int = typer.Option(17, help="Frames of clips encoded here (1 + 4k)."),
    out: Path = typer.Option(Path("runs/lm"), "--out", help="Run folder."),
    steps: int = typer.Option(2000, help="Optimizer steps."),
    batch_size: int = typer.Option(16, help="Clips per optimizer step (global)."),
    lr: float = typer.Option(1e-3, help="Peak learning rate."),
    warmup: int = typer.Option(100, help="Warmup steps."),
    precision: str = typer.Option(
        "auto", help="auto (bf16 where the CPU/GPU has it natively, else fp32), bf16 or fp32."
    ),
    ema: float = typer.Option(0.0, help="EMA decay of the exported weights (0: none)."),
    save_every: int = typer.Option(250, help="Steps between checkpoints."),
    resume: bool = typer.Option(False, help="Continue from the latest checkpoint in --out."),
    init: str | None = typer.Option(
        None,
        help="Fine-tune: start from this model (folder or shipped name; same config, except "
        "that --block may differ: e.g. next-token from a next-block model).",
    ),
    seed: int = typer.Option(0, help="Seed."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Train a next-token / next-block token LM on tokenized clips; export to OUT/model.
    With --tasks: one multitask (VideoPoet) model over the shards' video, control and audio
    tokens (unified vocabulary), trained with alternating gradient descent."""
    from kinema.lm import preset
    from kinema.lm.data import TokenClipDataset
    from kinema.lm.tasks import get_task
    from kinema.lm.training import parse_block, parse_tasks, train_lm

    _threads(threads)
    block_shape = parse_block(block)  # check options before encoding anything
    weights = parse_tasks(tasks) if tasks is not None else None
    if captions is None:
        captions = weights is not None and any(get_task(t).text for t in weights)
    if weights is None and curriculum:
        raise KinemaError("--curriculum schedules the tasks of --tasks; give --tasks")
    if weights is not None and cond_frames is not None:
        raise KinemaError(
            "--cond-frames: multitask models take given frames through i2v / continuation"
        )
    shards, tok_source = _training_shards(data, out, tokenizer, n, resolution, frames, seed)
    train = _train_config(
        out, steps, batch_size, lr, warmup, precision, ema, save_every, resume, seed,
        init_from=_init_folder(init),
    )  # fmt: skip
    if weights is not None:
        config, dataset, sampler = _multitask_setup(
            shards, weights, curriculum, preset_name, block_shape, label_key, num_classes, sets,
            seed, captions,
        )  # fmt: skip
        folder = train_lm(
            config,
            dataset,
            train,
            tokenizer=tok_source,
            batch_sampler=sampler,
            audio_codec=shards.audio_codec if shards.audio else None,
        )
        _report_export("model", folder, out)
        return
    cond_frames = 2 if cond_frames is None else cond_frames
    overrides = _parse_sets(sets)
    encoder = _caption_encoder(preset(preset_name, **overrides)) if captions else None
    dataset = TokenClipDataset(shards, cond_frames, label_key, encoder)
    if encoder is not None:
        overrides["text_dim"] = encoder.dim  # the text width is the encoder's
    config = preset(
        preset_name,
        vocab_size=dataset.shards.vocab_size,
        latent_shape=dataset.latent_shape,
        block_shape=block_shape,
        cond_frames=cond_frames,
        num_classes=num_classes,
        **overrides,
    )
    _report_export("model", train_lm(config, dataset, train, tokenizer=tok_source), out)


def _init_folder(spec: str | None) -> str | None:
    """``--init``: a model folder or a shipped model's name -> its folder."""
    if spec is None:
        return None
    from kinema.hub import resolve_model

    return str(resolve_model(spec))


def _caption_encoder(config):
    """The default text encoder (all-MiniLM-L6-v2) for a config's ``max_text_len`` slots."""
    from kinema.lm.text import HFTextEncoder

    return HFTextEncoder(max_length=config.max_text_len)


def _multitask_setup(
    shards, weights, curriculum, preset_name, block_shape, label_key, num_classes, sets, seed,
    captions=False,
):  # fmt: skip
    """Config (unified vocabulary of the shards' tokenizer and audio codec), dataset and AGD
    batch sampler of `train lm --tasks`; ``captions``: the text tasks see the clips'
    captions."""
    from kinema.lm import preset
    from kinema.lm.agd import Curriculum, agd_sampler
    from kinema.lm.data import CaptionedClips, MultitaskDataset
    from kinema.lm.vocab import Vocabulary

    if shards.kind != "tokens":
        raise KinemaError(f"'{shards.path}' holds continuous latents; --tasks needs token shards")
    if label_key is not None or num_classes:
        raise KinemaError("--label-key / --num-classes: not supported with --tasks")
    audio = shards.audio or {}
    vocab = Vocabulary(
        visual_size=shards.vocab_size,
        audio_levels=audio.get("levels", 0),
        audio_codebook=audio.get("codebook_size", 0),
        tasks=tuple(weights),
    )
    overrides = _parse_sets(sets)
    clips = shards
    if captions:
        encoder = _caption_encoder(preset(preset_name, **overrides))
        overrides["text_dim"] = encoder.dim
        clips = CaptionedClips(shards, encoder)
    config = preset(
        preset_name,
        vocab_size=vocab.size,
        latent_shape=shards.item_shape,
        block_shape=block_shape,
        cond_frames=0,
        vocabulary=vocab,
        audio_frames=audio.get("frames", 0),
        **overrides,
    )
    dataset = MultitaskDataset(clips, config, tuple(weights), seed=seed)
    sampler = agd_sampler(weights=weights, curriculum=Curriculum() if curriculum else None)
    return config, dataset, sampler


@train_app.command("flow")
def train_flow_command(
    data: list[str] = typer.Option(
        ...,
        "--data",
        help="A KL latent shard folder, or physics/shapes/digits/a video path; repeatable.",
    ),
    tokenizer: str = typer.Option(
        "tokenizer-cpu-kl", "--tokenizer", help="KL tokenizer folder or shipped name."
    ),
    preset_name: str = typer.Option("small", "--preset", help="Flow DiT preset."),
    captions: bool = typer.Option(
        True, help="Condition on the clips' captions (all-MiniLM-L6-v2 states); else no text."
    ),
    sets: list[str] = typer.Option([], "--set", help="Override a config field: KEY=VALUE."),
    n: int = typer.Option(10_000, "--n", min=1, help="Clips to encode when --data is a name."),
    resolution: int = typer.Option(64, help="Frame size of clips encoded here."),
    frames: int = typer.Option(17, help="Frames of clips encoded here (1 + 4k)."),
    out: Path = typer.Option(Path("runs/flow"), "--out", help="Run folder."),
    steps: int = typer.Option(2000, help="Optimizer steps."),
    batch_size: int = typer.Option(16, help="Clips per optimizer step (global)."),
    lr: float = typer.Option(3e-4, help="Peak learning rate."),
    warmup: int = typer.Option(100, help="Warmup steps."),
    precision: str = typer.Option(
        "auto", help="auto (bf16 where the CPU/GPU has it natively, else fp32), bf16 or fp32."
    ),
    ema: float = typer.Option(0.999, help="EMA decay of the exported weights (0: none)."),
    save_every: int = typer.Option(250, help="Steps between checkpoints."),
    resume: bool = typer.Option(False, help="Continue from the latest checkpoint in --out."),
    seed: int = typer.Option(0, help="Seed."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Train a pyramidal-flow DiT on KL latents of clips; export to OUT/model."""
    from kinema.flow import preset
    from kinema.flow.data import LatentClipDataset
    from kinema.flow.training import train_flow

    _threads(threads)
    config = preset(preset_name, **_parse_sets(sets))  # check options before encoding
    shards, tok_source = _training_shards(data, out, tokenizer, n, resolution, frames, seed)
    encoder = None
    if captions and config.text_dim:
        from kinema.lm.text import HFTextEncoder

        encoder = HFTextEncoder(max_length=config.max_text_len)
    dataset = LatentClipDataset(shards, encoder)
    c, t, h, _ = dataset.latent_shape
    config = config.replace(
        latent_channels=c,
        frames=t,
        resolution=h,
        text_dim=encoder.dim if encoder is not None else 0,  # the text width is the encoder's
    )
    train = _train_config(
        out, steps, batch_size, lr, warmup, precision, ema, save_every, resume, seed
    )
    _report_export("model", train_flow(config, dataset, train, tokenizer=tok_source), out)


@train_app.command("audio-codec")
def train_audio_codec_command(
    preset_name: str = typer.Option("cpu", "--preset", help="Audio codec preset."),
    sets: list[str] = typer.Option([], "--set", help="Override a config field: KEY=VALUE."),
    n: int = typer.Option(10_000, "--n", min=1, help="Physics clips whose sound to train on."),
    frames: int = typer.Option(17, help="Video frames per clip (sound of frames * dt seconds)."),
    scenario: str = typer.Option(
        "all", help="Physics scenario(s) whose sound to train on (collision: a click in each)."
    ),
    click_steps: int = typer.Option(
        400, min=0, help="Stage 1: steps on isolated clicks (no tone), quantizer bypassed."
    ),
    click_vq_steps: int = typer.Option(
        300, min=0, help="Stage 2: steps on isolated clicks with the quantizer on."
    ),
    overlay_clicks: int = typer.Option(
        4, min=0, max=16, help="Stage 3 (the sound): extra clicks added to every clip."
    ),
    out: Path = typer.Option(Path("runs/audio-codec"), "--out", help="Run folder."),
    steps: int = typer.Option(2000, min=1, help="Optimizer steps on the sound (stage 3)."),
    batch_size: int = typer.Option(8, help="Clips per optimizer step (global)."),
    lr: float = typer.Option(1e-3, help="Peak learning rate of stages 2 and 3."),
    click_lr: float = typer.Option(3e-3, help="Peak learning rate of stage 1."),
    warmup: int = typer.Option(20, help="Warmup steps of stages 2 and 3 (stage 1: 50)."),
    precision: str = typer.Option("fp32", help="fp32, bf16 or auto."),
    save_every: int = typer.Option(250, help="Steps between checkpoints."),
    resume: bool = typer.Option(False, help="Continue from the latest checkpoint in --out."),
    init: str | None = typer.Option(
        None, help="Fine-tune: start from this model (folder or shipped name; same config)."
    ),
    seed: int = typer.Option(0, help="Seed."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Train the SoundStream-style audio codec on the physics clips' synthetic sound (clicks
    at impacts, a tone following the speed); export to OUT/model. Three runs, each from the
    last one's weights with a fresh optimizer: --click-steps on isolated clicks with the
    quantizer bypassed (OUT/clicks), --click-vq-steps on them with it (OUT/clicks-vq), then
    --steps on the sound with --overlay-clicks extra clicks per clip (OUT). Check it with
    ``kinema eval audio-codec``; give it to ``kinema tokenizer encode --audio-codec`` for
    video-to-audio / audio-to-video tasks."""
    from kinema.audio import AudioCodec
    from kinema.audio import preset as codec_preset
    from kinema.data.physics_audio import (
        ClickDataset,
        ClickOverlay,
        PhysicsAudioVisualDataset,
    )
    from kinema.train.export import train_and_export

    _threads(threads)
    config = codec_preset(preset_name, **_parse_sets(sets))
    data = PhysicsAudioVisualDataset(
        scenario=scenario,
        split="id",
        length=n,
        num_frames=frames,
        cond_frames=1,
        seed=seed,
        video=False,
    )
    if data.sample_rate != config.sample_rate:
        raise KinemaError(
            f"--set sample_rate={config.sample_rate}: the physics sound is {data.sample_rate} Hz"
        )
    init_from = _init_folder(init)
    clicks = ClickDataset(n, data[0]["audio"].shape[-1], seed=seed)
    sound = ClickOverlay(data, overlay_clicks, seed=seed) if overlay_clicks else data
    # why three stages (BENCHMARKS.md "VideoPoet multitask"): on the sound alone the codec
    # codes the tone and drops the rare clicks; a quantizer that first meets the sound keeps
    # no code for them; switched on within one run (high lr, stale optimizer state) its
    # codebooks collapse
    stages = [
        ("clicks", clicks, click_steps, click_lr, 50, config.replace(vq_start=click_steps)),
        ("clicks-vq", clicks, click_vq_steps, lr, warmup, config),
        ("model", sound, steps, lr, warmup, config),
    ]
    for name, dataset, count, peak, warm, cfg in stages:
        if not count:
            continue
        run = out if name == "model" else out / name
        if name != "model" and (run / "model" / "config.json").is_file():
            init_from = str(run / "model")  # a finished stage of an earlier call
            continue
        train = _train_config(
            run, count, batch_size, peak, warm, precision, 0.0, save_every, resume, seed,
            init_from=init_from,
        )  # fmt: skip
        folder = train_and_export(AudioCodec(cfg), dataset, train)
        if name == "model" or folder is None:
            _report_export("model" if name == "model" else f"{name} stage", folder, out)
            return
        init_from = str(folder)


@train_app.command("sr")
def train_sr_command(
    lr_data: Path = typer.Option(..., "--lr-data", help="Shard folder of the low-res clips."),
    hr_data: Path = typer.Option(
        ..., "--hr-data", help="Shard folder of the same clips at the high frame size."
    ),
    preset_name: str = typer.Option("small", "--preset", help="Super-resolution preset."),
    sets: list[str] = typer.Option([], "--set", help="Override a config field: KEY=VALUE."),
    out: Path = typer.Option(Path("runs/sr"), "--out", help="Run folder."),
    steps: int = typer.Option(2000, help="Optimizer steps."),
    batch_size: int = typer.Option(8, help="Clips per optimizer step (global)."),
    lr: float = typer.Option(1e-3, help="Peak learning rate."),
    warmup: int = typer.Option(50, help="Warmup steps."),
    precision: str = typer.Option(
        "auto", help="auto (bf16 where the CPU/GPU has it natively, else fp32), bf16 or fp32."
    ),
    ema: float = typer.Option(0.0, help="EMA decay of the exported weights (0: none)."),
    save_every: int = typer.Option(250, help="Steps between checkpoints."),
    resume: bool = typer.Option(False, help="Continue from the latest checkpoint in --out."),
    seed: int = typer.Option(0, help="Seed."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Train the super-resolution transformer (low-res tokens -> high-res tokens of the same
    clips) on two shard folders of one dataset; export to OUT/model with both tokenizers,
    ready for ``kinema generate --upscale S --sr-model OUT/model``."""
    import shutil

    from kinema.hub import resolve_model
    from kinema.lm.superres import SuperResTransformer
    from kinema.lm.superres_config import preset
    from kinema.lm.superres_data import SuperResPairs
    from kinema.train.export import train_and_export

    _threads(threads)
    pairs = SuperResPairs(lr_data, hr_data)
    toks = {"lr_tokenizer": pairs.lr.tokenizer, "hr_tokenizer": pairs.hr.tokenizer}
    missing = [k for k, v in toks.items() if v is None]
    if missing:
        raise KinemaError(f"the shards record no tokenizer for {missing}: re-encode them")
    config = preset(
        preset_name,
        lr_shape=pairs.lr_shape,
        scale=pairs.scale,
        lr_vocab_size=pairs.lr.vocab_size,
        hr_vocab_size=pairs.hr.vocab_size,
        **_parse_sets(sets),
    )
    train = _train_config(
        out, steps, batch_size, lr, warmup, precision, ema, save_every, resume, seed
    )
    folder = train_and_export(SuperResTransformer(config), pairs, train)
    if folder is not None:
        for sub, tok in toks.items():
            shutil.copytree(resolve_model(tok), folder / sub, dirs_exist_ok=True)
    _report_export("model", folder, out)
