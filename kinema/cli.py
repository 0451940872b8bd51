"""The ``kinema`` command line (typer). Thin: parse, call the library, report.

Errors the user can fix (bad files, impossible options) print one line and exit 2; set
``KINEMA_DEBUG=1`` to see the full traceback instead.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from kinema import __version__
from kinema.errors import KinemaError

app = typer.Typer(
    name="kinema",
    help="Efficient video generation: VideoPoet, Next-Block Prediction, Pyramidal Flow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Built-in datasets: preview them, write them to disk.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
tokenizer_app = typer.Typer(
    help="Video tokenizers: train, evaluate, reconstruct, pre-tokenize datasets.",
    no_args_is_help=True,
)
app.add_typer(tokenizer_app, name="tokenizer")
train_app = typer.Typer(help="Train generative models.", no_args_is_help=True)
app.add_typer(train_app, name="train")
eval_app = typer.Typer(help="Evaluate generative models.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
models_app = typer.Typer(help="Models that ship with kinema.", no_args_is_help=True)
app.add_typer(models_app, name="models")

console = Console()
err_console = Console(stderr=True)


def progress() -> Progress:
    """The progress bar every long-running command uses."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


def _version(value: bool) -> None:
    if value:
        console.print(f"kinema {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_time=False, show_path=False)],
        force=True,
    )


@app.command()
def info(videos: list[Path] = typer.Argument(..., help="Video or image files.")) -> None:
    """Frames, fps, size, codec and duration of video files."""
    from kinema.io import probe

    table = Table("file", "frames", "fps", "size", "codec", "duration (s)")
    for v in videos:
        i = probe(v, count=True)
        table.add_row(
            str(v),
            str(i.frames),
            f"{i.fps:.3f}",
            f"{i.width}x{i.height}",
            i.codec,
            f"{i.duration:.3f}",
        )
    console.print(table)


def _dataset(name: str, n: int, resolution: int, frames: int, seed: int, scenario: str, split: str):
    from kinema.data import build_dataset

    return build_dataset(
        name,
        length=n,
        resolution=resolution,
        num_frames=frames,
        seed=seed,
        scenario=scenario,
        split=split,
    )


@data_app.command("preview")
def data_preview(
    name: str = typer.Argument(..., help="physics, shapes, digits, or a video file/folder."),
    n: int = typer.Option(8, "--n", min=1, max=64, help="How many samples."),
    out: Path = typer.Option(Path("preview.gif"), "--out", help="Output .gif, .mp4 or .webm."),
    scenario: str = typer.Option("all", help="physics: all, uniform, collision, parabola."),
    split: str = typer.Option("id", help="physics: id or ood."),
    resolution: int = typer.Option(64, help="Frame size in pixels."),
    frames: int = typer.Option(17, help="Frames per clip."),
    seed: int = typer.Option(0, help="Dataset seed."),
    fps: float = typer.Option(10.0, help="Frame rate of the preview."),
) -> None:
    """Render a grid of samples and print their captions."""
    from kinema.io import make_grid, to_uint8, write_video

    ds = _dataset(name, max(n, 1), resolution, frames, seed, scenario, split)
    items = [ds[i] for i in range(min(n, len(ds)))]
    grid = make_grid([to_uint8(it["video"]) for it in items], pad_value=128)
    write_video(out, grid, fps=fps)
    for i, it in enumerate(items):
        console.print(f"{i:3d}  {it.get('caption', '')}")
    console.print(f"wrote {out}")


@data_app.command("make")
def data_make(
    name: str = typer.Argument(..., help="physics, shapes or digits."),
    out: Path = typer.Option(..., "--out", help="Output folder (clip_*.mp4 + meta.jsonl)."),
    n: int = typer.Option(100, "--n", min=1, max=10_000_000, help="Number of clips."),
    scenario: str = typer.Option("all", help="physics: all, uniform, collision, parabola."),
    split: str = typer.Option("id", help="physics: id or ood."),
    resolution: int = typer.Option(64, help="Frame size in pixels."),
    frames: int = typer.Option(17, help="Frames per clip."),
    seed: int = typer.Option(0, help="Dataset seed (use another one for evaluation sets)."),
    quality: str = typer.Option(
        "lossless", help="lossless (exact RGB h264), high (4:4:4 crf 6) or web (4:2:0 crf 18)."
    ),
) -> None:
    """Write a synthetic dataset to disk: one mp4 per clip plus meta.jsonl (ground truth)."""
    from kinema.data import BUILTIN
    from kinema.io import to_uint8, write_video
    from kinema.utils.fs import atomic_file

    if name not in BUILTIN:
        raise ValueError(f"unknown dataset '{name}' for data make; allowed: {', '.join(BUILTIN)}")
    modes = {
        "lossless": {"lossless": True},
        "high": {"quality": 6, "full_chroma": True},
        "web": {"quality": 18},
    }
    if quality not in modes:
        raise ValueError(f"unknown quality '{quality}'; allowed: {', '.join(modes)}")
    ds = _dataset(name, n, resolution, frames, seed, scenario, split)
    fps = 1.0 / getattr(ds, "dt", 0.1)
    # physics: the given frames of its protocol, so `kinema eval physics --videos` knows them
    extra = {"cond_frames": ds.cond_frames} if hasattr(ds, "cond_frames") else {}
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    lines = []
    with progress() as bar:
        task = bar.add_task(f"{name} -> {out}", total=n)
        for i in range(n):
            item = ds[i]
            file = f"clip_{i:06d}.mp4"
            write_video(out / file, to_uint8(item["video"]), fps=fps, **modes[quality])
            lines.append(json.dumps({**_meta(file, item, fps), **extra}))
            bar.advance(task)
    with atomic_file(out / "meta.jsonl") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    console.print(f"wrote {n} clips to {out} in {time.perf_counter() - start:.1f} s")


def _meta(file: str, item: dict, fps: float) -> dict:
    """JSON-able ground truth of one item: tensors become lists, NaN becomes null."""
    from kinema.utils.jsonable import jsonable

    rec = {k: v for k, v in item.items() if k != "video"}
    return {"file": file, "fps": fps, **jsonable(rec)}


def _parse_sets(sets: list[str]) -> dict:
    """``["base_channels=48", "fsq_levels=[8,5,5,5]"]`` -> dict (values parsed as JSON)."""
    out = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got '{item}'")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _train_config(
    out: Path,
    steps: int,
    batch_size: int,
    lr: float,
    warmup: int,
    precision: str,
    ema: float,
    save_every: int,
    resume: bool,
    seed: int,
    **extra,
):
    """The TrainConfig of the ``train`` commands' shared options (``ema`` 0 = none)."""
    from kinema.train import TrainConfig

    return TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=min(warmup, steps),
        precision=precision,
        ema_decay=ema or None,
        seed=seed,
        out_dir=str(out),
        save_every=save_every,
        resume=resume,
        **extra,
    )


def _report_export(what: str, folder: Path | None, out: Path) -> None:
    if folder is None:
        console.print(f"interrupted: continue with the same command and --resume (in {out})")
    else:
        console.print(f"{what}: {folder}")


@tokenizer_app.command("train")
def tokenizer_train(
    data: list[str] = typer.Option(
        ["physics"], "--data", help="NAME[:WEIGHT]: physics, shapes, digits or a video path."
    ),
    preset_name: str = typer.Option("cpu-fsq", "--preset", help="Tokenizer preset."),
    sets: list[str] = typer.Option([], "--set", help="Override a config field: KEY=VALUE."),
    out: Path = typer.Option(Path("runs/tokenizer"), "--out", help="Run folder."),
    steps: int = typer.Option(3000, help="Optimizer steps."),
    batch_size: int = typer.Option(4, help="Clips per optimizer step (global)."),
    lr: float = typer.Option(4e-4, help="Peak learning rate."),
    warmup: int = typer.Option(200, help="Warmup steps."),
    precision: str = typer.Option("bf16", help="bf16 (autocast) or fp32."),
    ema: float = typer.Option(0.999, help="EMA decay of the exported weights (0: none)."),
    image_prob: float = typer.Option(0.1, help="Share of one-frame (image) items."),
    resolution: int = typer.Option(64, help="Training frame size."),
    frames: int = typer.Option(17, help="Frames per training clip (1 + 4k)."),
    save_every: int = typer.Option(250, help="Steps between checkpoints."),
    resume: bool = typer.Option(False, help="Continue from the latest checkpoint in --out."),
    init: Path | None = typer.Option(None, help="Start from this saved tokenizer's weights."),
    seed: int = typer.Option(0, help="Seed of data order and initialisation."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Train a tokenizer on a weighted mixture of datasets; export to OUT/model."""
    from kinema.tokenizer import preset
    from kinema.tokenizer.training import train_tokenizer, training_mixture

    _threads(threads)
    config = preset(preset_name, resolution=resolution, num_frames=frames, **_parse_sets(sets))
    mixture = training_mixture(
        data, resolution=resolution, num_frames=frames, image_prob=image_prob, seed=seed
    )
    train = _train_config(
        out,
        steps,
        batch_size,
        lr,
        warmup,
        precision,
        ema,
        save_every,
        resume,
        seed,
        weight_decay=0.0,
        betas=(0.9, 0.99),
    )
    _report_export("tokenizer", train_tokenizer(config, mixture, train, init=init), out)


@tokenizer_app.command("encode")
def tokenizer_encode(
    dataset: str = typer.Argument(..., help="physics, shapes, digits or a video file/folder."),
    out: Path = typer.Option(..., "--out", help="Output shard folder."),
    tokenizer: str = typer.Option(
        "tokenizer-cpu-fsq", "--tokenizer", help="Tokenizer folder or shipped name."
    ),
    n: int | None = typer.Option(None, "--n", min=1, help="Items (default: all of a folder)."),
    scenario: str = typer.Option("all", help="physics: all, uniform, collision, parabola."),
    split: str = typer.Option("id", help="physics: id or ood."),
    resolution: int = typer.Option(64, help="Frame size in pixels."),
    frames: int = typer.Option(17, help="Frames per clip (1 + 4k)."),
    seed: int = typer.Option(0, help="Dataset seed."),
    batch_size: int = typer.Option(8, min=1, help="Clips per encoder call."),
    shard_size: int = typer.Option(1024, min=1, help="Items per shard file."),
    controls: str | None = typer.Option(
        None, help="Also store control-video tokens for stylization: edges,gray."
    ),
    audio_codec: str | None = typer.Option(
        None, help="Audio codec folder: also store the clips' audio tokens (physics has sound)."
    ),
    audio_frames: int | None = typer.Option(
        None, help="--audio-codec: code frames per clip (1-100000; default: the clip's length)."
    ),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Pre-tokenize a dataset: token (or KL latent) shards plus captions and ground truth;
    with --controls / --audio-codec also the fields of multitask (VideoPoet) training."""
    from kinema.data import BUILTIN
    from kinema.tokenizer import Tokenizer
    from kinema.tokenizer.shards import encode_dataset

    _threads(threads)
    if n is None and dataset in BUILTIN:
        raise ValueError(f"--n is required for the built-in dataset '{dataset}'")
    if audio_frames is not None and (audio_codec is None or not 1 <= audio_frames <= 100_000):
        raise KinemaError(
            f"--audio-frames must be in [1, 100000] with --audio-codec, got {audio_frames}"
        )
    names = [c.strip() for c in controls.split(",")] if controls else []
    ds = _dataset(dataset, n or 1, resolution, frames, seed, scenario, split)
    codec = None
    if audio_codec is not None:
        from kinema.audio import AudioCodec
        from kinema.data.physics_audio import PhysicsAudioVisualDataset

        if dataset != "physics":
            raise KinemaError(
                f"--audio-codec needs a dataset with sound (physics), not '{dataset}'"
            )
        codec = AudioCodec.from_pretrained(audio_codec).eval()
        ds = PhysicsAudioVisualDataset(ds)
    tok = Tokenizer.from_pretrained(tokenizer)
    total = n or len(ds)
    source = {
        "dataset": dataset,
        "scenario": scenario,
        "split": split,
        "seed": seed,
        "resolution": resolution,
        "frames": frames,
        "tokenizer": str(tokenizer),
        "audio_codec": audio_codec,
    }
    start = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(f"encode -> {out}", total=total)
        encode_dataset(
            tok,
            ds,
            out,
            num_items=total,
            batch_size=batch_size,
            shard_size=shard_size,
            source=source,
            on_batch=lambda k: bar.advance(task, k),
            controls=names,
            codec=codec,
            audio_frames=audio_frames,
        )
    console.print(f"wrote {total} items to {out} in {time.perf_counter() - start:.1f} s")


@tokenizer_app.command("eval")
def tokenizer_eval(
    videos: list[Path] = typer.Option([], "--videos", help="Real video files to evaluate on."),
    data: str | None = typer.Option(None, "--data", help="Or a built-in dataset: physics, ..."),
    tokenizer: str = typer.Option(
        "tokenizer-cpu-fsq", "--tokenizer", help="Tokenizer folder or shipped name."
    ),
    n: int = typer.Option(64, "--n", min=1, max=100_000, help="--data: number of clips."),
    split: str = typer.Option("id", help="physics: id or ood."),
    seed: int = typer.Option(1000, help="--data: seed (keep it apart from training's)."),
    size: int = typer.Option(64, help="Square frame size."),
    frames: int = typer.Option(17, help="Frames per clip."),
    max_clips: int = typer.Option(8, min=1, help="--videos: clips per file."),
    h264: bool = typer.Option(True, help="Compare with H.264 at the same bits per pixel."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write results here."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """PSNR, SSIM and bits per pixel of a tokenizer, next to H.264 at the same bits."""
    from kinema.io import to_uint8
    from kinema.tokenizer import Tokenizer
    from kinema.tokenizer.evaluate import evaluate_clips, video_clips
    from kinema.utils.fs import atomic_file

    _threads(threads)
    if not videos and data is None:
        raise ValueError("give --videos FILE... or --data NAME")
    tok = Tokenizer.from_pretrained(tokenizer)
    sets: dict[str, list] = {}
    for v in videos:
        sets[str(v)] = video_clips(v, size, frames, max_clips)
    if data is not None:
        ds = _dataset(data, n, size, frames, seed, "all", split)
        sets[data] = [to_uint8(ds[i]["video"]) for i in range(n)]
    fmts = ("yuv420p", "yuv444p") if h264 and tok.is_discrete else ()
    results = {}
    with progress() as bar:
        task = bar.add_task("evaluate", total=sum(len(c) for c in sets.values()))
        for name, clips in sets.items():
            results[name] = evaluate_clips(tok, clips, h264=fmts, on_clip=lambda: bar.advance(task))
    table = Table("clips", "n", "bpp", "PSNR", "SSIM", *[f"H.264 {f} PSNR / SSIM" for f in fmts])
    for name, r in results.items():
        m = r["mean"]
        refs = [f"{m[f'h264_{f}_psnr']:.2f} / {m[f'h264_{f}_ssim']:.4f}" for f in fmts]
        bpp = f"{m['bpp']:.4f}" if "bpp" in m else "-"
        table.add_row(
            Path(name).name, str(r["clips"]), bpp, f"{m['psnr']:.2f}", f"{m['ssim']:.4f}", *refs
        )
    console.print(table)
    if json_out is not None:
        with atomic_file(json_out) as tmp:
            tmp.write_text(json.dumps({"tokenizer": tokenizer, "results": results}, indent=2))


@tokenizer_app.command("reconstruct")
def tokenizer_reconstruct(
    video: Path = typer.Argument(..., help="Input video file."),
    out: Path = typer.Argument(..., help="Output .mp4/.webm/.gif: input | reconstruction."),
    tokenizer: str = typer.Option(
        "tokenizer-cpu-fsq", "--tokenizer", help="Tokenizer folder or shipped name."
    ),
    size: int = typer.Option(64, help="Square frame size (resize + centre crop)."),
    frames: int | None = typer.Option(None, help="Frames (1 + 4k; default: as many as fit)."),
    max_frames: int = typer.Option(1024, help="Refuse inputs longer than this."),
    chunk: int = typer.Option(4, min=1, help="Latent frames per encoder/decoder call."),
    fps: float | None = typer.Option(None, help="Resample to this frame rate first."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Encode and decode a video; write it next to the original and print PSNR/SSIM."""
    import torch

    from kinema.eval.metrics import psnr, ssim
    from kinema.io import make_grid, probe, read_video, to_tensor, to_uint8, write_video
    from kinema.tokenizer import Tokenizer

    _threads(threads)
    tok = Tokenizer.from_pretrained(tokenizer)
    ft = tok.config.temporal_compression
    info = probe(video)
    available = info.frames if fps is None else max(1, int(info.duration * fps))
    want = frames if frames is not None else 1 + (min(available, max_frames) - 1) // ft * ft
    if want > max_frames or (want - 1) % ft:
        raise ValueError(f"--frames must be 1 + {ft}k and <= {max_frames}, got {want}")
    clip = to_tensor(read_video(video, num_frames=want, fps=fps, size=size))[None]
    if clip.shape[2] < want:
        raise ValueError(f"'{video}' has {clip.shape[2]} frames, fewer than --frames {want}")
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        recon = tok.reconstruct(clip, chunk=chunk).float()
    p, s = float(psnr(recon, clip)[0]), float(ssim(recon, clip)[0])
    side = make_grid([to_uint8(clip[0]), to_uint8(recon[0])], pad_value=0)
    write_video(out, side, fps=fps or (info.fps or 25.0))
    console.print(f"{video}: {want} frames at {size}x{size}  PSNR {p:.2f} dB  SSIM {s:.4f}")
    console.print(f"wrote {out}")


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
    precision: str = typer.Option("bf16", help="bf16 (autocast) or fp32."),
    ema: float = typer.Option(0.0, help="EMA decay of the exported weights (0: none)."),
    save_every: int = typer.Option(250, help="Steps between checkpoints."),
    resume: bool = typer.Option(False, help="Continue from the latest checkpoint in --out."),
    seed: int = typer.Option(0, help="Seed."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Train a next-token / next-block token LM on tokenized clips; export to OUT/model.
    With --tasks: one multitask (VideoPoet) model over the shards' video, control and audio
    tokens (unified vocabulary), trained with alternating gradient descent."""
    from kinema.lm import preset
    from kinema.lm.data import TokenClipDataset
    from kinema.lm.training import parse_block, parse_tasks, train_lm

    _threads(threads)
    block_shape = parse_block(block)  # check options before encoding anything
    weights = parse_tasks(tasks) if tasks is not None else None
    if weights is None and curriculum:
        raise KinemaError("--curriculum schedules the tasks of --tasks; give --tasks")
    if weights is not None and cond_frames is not None:
        raise KinemaError(
            "--cond-frames: multitask models take given frames through i2v / continuation"
        )
    shards, tok_source = _training_shards(data, out, tokenizer, n, resolution, frames, seed)
    train = _train_config(
        out, steps, batch_size, lr, warmup, precision, ema, save_every, resume, seed
    )
    if weights is not None:
        config, dataset, sampler = _multitask_setup(
            shards, weights, curriculum, preset_name, block_shape, label_key, num_classes, sets,
            seed,
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
    dataset = TokenClipDataset(shards, cond_frames, label_key)
    config = preset(
        preset_name,
        vocab_size=dataset.shards.vocab_size,
        latent_shape=dataset.latent_shape,
        block_shape=block_shape,
        cond_frames=cond_frames,
        num_classes=num_classes,
        **_parse_sets(sets),
    )
    _report_export("model", train_lm(config, dataset, train, tokenizer=tok_source), out)


def _multitask_setup(
    shards, weights, curriculum, preset_name, block_shape, label_key, num_classes, sets, seed
):
    """Config (unified vocabulary of the shards' tokenizer and audio codec), dataset and AGD
    batch sampler of `train lm --tasks`."""
    from kinema.lm import preset
    from kinema.lm.agd import Curriculum, agd_sampler
    from kinema.lm.data import MultitaskDataset
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
    config = preset(
        preset_name,
        vocab_size=vocab.size,
        latent_shape=shards.item_shape,
        block_shape=block_shape,
        cond_frames=0,
        vocabulary=vocab,
        audio_frames=audio.get("frames", 0),
        **_parse_sets(sets),
    )
    dataset = MultitaskDataset(shards, config, tuple(weights), seed=seed)
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
    precision: str = typer.Option("bf16", help="bf16 (autocast) or fp32."),
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


def _parse_steps(spec: str | None, option: str) -> list[int] | None:
    """``"20,20,20"`` -> ``[20, 20, 20]`` (Euler steps per pyramid stage)."""
    if spec is None:
        return None
    try:
        return [int(x) for x in spec.split(",")]
    except ValueError:
        raise KinemaError(
            f"{option} must be step counts per stage like 20,20,20, got '{spec}'"
        ) from None


@app.command()
def generate(
    prompt_arg: str | None = typer.Argument(
        None, metavar="PROMPT", help="Text prompt (text-conditioned models), or --prompt."
    ),
    prompt: str | None = typer.Option(None, "--prompt", help="Text prompt."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Model folder or shipped name (default: the shipped model of --method).",
    ),
    method: str = typer.Option(
        "auto", help="auto, nbp, ntp or pyramid-flow (token-lm: either LM); checks --model."
    ),
    out: Path = typer.Option(Path("kinema_out.mp4"), "--out", "-o", help="Output file."),
    fmt: str | None = typer.Option(
        None, "--format", help="mp4, gif or webm (replaces the suffix of --out)."
    ),
    image: Path | None = typer.Option(
        None, "--image", help="First frame (image-to-video), resized to the model's size."
    ),
    video: Path | None = typer.Option(
        None, "--video", help="Conditioning video (first frames; flow: the first frame)."
    ),
    label: int | None = typer.Option(None, "--class", help="Class id (class-conditioned)."),
    grid: int = typer.Option(
        1, "--grid", "--n", help="Videos sampled from --seed, side by side (at most 16)."
    ),
    frames: int | None = typer.Option(
        None, help="pyramid-flow: frames (1 + 4k; default and maximum: the training length)."
    ),
    seed: int = typer.Option(0, help="Sampling seed."),
    guidance: float | None = typer.Option(
        None,
        "--guidance",
        "--cfg",
        help="Classifier-free guidance scale, 0-20 (pyramid-flow: of the first frame).",
    ),
    video_guidance: float | None = typer.Option(
        None, help="pyramid-flow: guidance of later frames (default --guidance)."
    ),
    steps: str | None = typer.Option(
        None, help="pyramid-flow: Euler steps per stage of the first frame: 20 or 20,20,20."
    ),
    video_steps: str | None = typer.Option(
        None, help="pyramid-flow: Euler steps per stage of later frames (default 10 each)."
    ),
    temperature: float | None = typer.Option(
        None, help="token-lm: sampling temperature, 0-10 (default 1)."
    ),
    top_k: int | None = typer.Option(None, help="token-lm: keep the k likeliest tokens."),
    top_p: float | None = typer.Option(None, help="token-lm: nucleus sampling mass."),
    fps: float = typer.Option(10.0, help="Frame rate of the output (1-120)."),
    task: str | None = typer.Option(
        None,
        help="Multitask LM: t2v, i2v, continuation, inpaint, outpaint, stylize:edges, v2a "
        "(v2a also writes OUT.wav).",
    ),
    mask: str | None = typer.Option(
        None, help="inpaint / outpaint: box:y0,x0,y1,x1 or border:N in latent cells."
    ),
    extend: int | None = typer.Option(
        None, help="Token LM: continue the video N more times (long video; 0-16)."
    ),
    chain: str | None = typer.Option(
        None, help="Multitask LM: tasks in sequence, e.g. i2v,stylize:edges (at most 8)."
    ),
    upscale: int | None = typer.Option(
        None, help="Upscale by this factor (2-8) with the super-resolution model --sr-model."
    ),
    sr_model: str | None = typer.Option(
        None,
        "--sr-model",
        help="Super-resolution folder (model + lr_tokenizer/ + hr_tokenizer/) for --upscale.",
    ),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Generate a video: text-to-video, image-to-video (--image) or continuation (--video)
    with a token LM (NBP or NTP) or a pyramid-flow DiT; the shipped model by default.
    Multitask LMs also take --task / --chain (inpainting, stylization, video-to-audio, ...);
    --extend makes long videos, --upscale cascades through a super-resolution model."""
    from kinema.api import generate_media, select_model
    from kinema.io import WRITE_FORMATS, make_grid, write_video

    _threads(threads)
    if prompt_arg is not None and prompt is not None and prompt_arg != prompt:
        raise KinemaError("give the prompt once: as the argument or as --prompt")
    if fmt is not None:
        if fmt not in WRITE_FORMATS:
            raise KinemaError(f"--format must be one of {', '.join(WRITE_FORMATS)}, got '{fmt}'")
        out = out.with_suffix(f".{fmt}")
    if out.suffix.lower().lstrip(".") not in WRITE_FORMATS:
        raise KinemaError(f"--out must end in .{', .'.join(WRITE_FORMATS)} (or give --format)")
    if not 1.0 <= fps <= 120.0:
        raise KinemaError(f"--fps must be in [1, 120], got {fps}")
    folder, kind = select_model(model, method)
    lm_only = {"--temperature": temperature, "--top-k": top_k, "--top-p": top_p}
    flow_only = {
        "--video-guidance": video_guidance,
        "--steps": steps,
        "--video-steps": video_steps,
        "--frames": frames,
    }
    is_flow = kind == "pyramid-flow"
    wrong = [k for k, v in (lm_only if is_flow else flow_only).items() if v is not None]
    if wrong:
        raise KinemaError(
            f"{', '.join(wrong)}: not an option of {'pyramid-flow' if is_flow else 'token-lm'} "
            "models"
        )
    start = time.perf_counter()
    with lazy_progress(f"generate ({kind})") as report:
        result = generate_media(
            prompt_arg if prompt_arg is not None else prompt,
            model=folder,
            method=kind,
            image=image,
            video=video,
            frames=frames,
            seed=seed,
            guidance=guidance,
            steps=_stage_steps(steps, "--steps"),
            n=grid,
            progress=report,
            label=label,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            video_steps=_stage_steps(video_steps, "--video-steps"),
            video_guidance_scale=video_guidance,
            task=task,
            mask=mask,
            extend=extend,
            chain=chain,
            upscale=upscale,
            sr_model=sr_model,
        )
    videos = result.video
    n, t, h, w, _ = videos.shape
    grid_video = make_grid(list(videos), ncols=n, pad_value=128) if n > 1 else videos[0]
    write_video(out, grid_video, fps=fps)
    console.print(
        f"wrote {out} ({n} x {t} frames of {h}x{w}, {kind} model {folder}) "
        f"in {time.perf_counter() - start:.1f} s"
    )
    if result.audio is not None:
        for i, wave in enumerate(result.audio):
            path = out.with_suffix(".wav") if n == 1 else out.with_suffix(f".{i}.wav")
            write_wav(path, wave, result.sample_rate)
            console.print(f"wrote {path} ({len(wave) / result.sample_rate:.2f} s)")


def write_wav(path: Path, wave, sample_rate: int) -> None:
    """Mono float samples in [-1, 1] -> 16-bit PCM .wav (atomic)."""
    import wave as wavefile

    import numpy as np

    from kinema.utils.fs import atomic_file

    pcm = (np.clip(np.asarray(wave, dtype=np.float32), -1, 1) * 32767).round().astype("<i2")
    with atomic_file(path) as tmp, wavefile.open(str(tmp), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(pcm.tobytes())


def _stage_steps(spec: str | None, option: str) -> int | list[int] | None:
    """``"20"`` -> 20 (every stage), ``"20,20,10"`` -> one per stage."""
    steps = _parse_steps(spec, option)
    return steps[0] if steps is not None and len(steps) == 1 else steps


@contextmanager
def lazy_progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar fed ``report(done, total)``; it appears with the first report, so bad
    input found before any work (while loading) stays a one-line error."""
    bar, tasks = progress(), []

    def report(done: int, total: int) -> None:
        if not tasks:
            bar.start()
            tasks.append(bar.add_task(description, total=total))
        bar.update(tasks[0], completed=done, total=total)

    try:
        yield report
    finally:
        bar.stop()


# `kinema models list` names of model kinds (see kinema.hub.model_kind)
KIND_LABELS = {"nbp": "token-LM nbp", "ntp": "token-LM ntp"}


@models_app.command("list")
def models_list() -> None:
    """Shipped models: kind, parameters, size, training data and quality (card.json)."""
    from kinema import hub

    names = hub.shipped_models()
    if not names:
        console.print(
            f"no models shipped yet (in {hub.SHIPPED}); `kinema generate` will use "
            f"{', '.join(hub.DEFAULT_MODELS.values())} once they are. Train one with the "
            "commands in recipes/ and pass --model PATH."
        )
        return
    defaults = {name: method for method, name in hub.DEFAULT_MODELS.items()}
    table = Table("name", "kind", "parameters", "size (MB)", "data", "quality", "default for")
    for name in names:
        m = hub.summarize_model(name)
        table.add_row(
            m.name,
            KIND_LABELS.get(m.kind, m.kind),
            _count(m.parameters),
            f"{m.size_bytes / 1e6:.1f}",
            m.card.data or "-",
            m.card.quality or "-",
            defaults.get(name, ""),
        )
    console.print(table)


def _count(n: int) -> str:
    """1234567 -> 1.2M."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


@app.command()
def serve(
    model: list[str] = typer.Option(
        [],
        "--model",
        help="Model folder or shipped name; repeatable (default: the shipped default models).",
    ),
    host: str = typer.Option(
        "127.0.0.1", help="Address to bind (0.0.0.0 opens the app to the network)."
    ),
    port: int = typer.Option(7860, help="Port."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """The web demo (Gradio): prompt, first image or video in, video out; one job at a time."""
    from kinema.app import serve as serve_app

    _threads(threads)
    if not 1 <= port <= 65535:
        raise KinemaError(f"--port must be in [1, 65535], got {port}")
    serve_app(model or None, host=host, port=port)


@app.command()
def gallery(
    out: Path = typer.Option(Path("docs/gallery"), "--out", help="Folder of the GIFs."),
    model: list[str] = typer.Option(
        [],
        "--model",
        metavar="METHOD=PATH",
        help="Model of a method (nbp, ntp, pyramid-flow); repeatable (default: the shipped one).",
    ),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """README gallery: GIFs per method and prompt (fixed seed) + a gallery.md snippet of links."""
    from kinema.gallery import make_gallery

    _threads(threads)
    page, items = make_gallery(out, model)
    console.print(f"wrote {len(items)} GIFs and {page}", soft_wrap=True, highlight=False)


@eval_app.command("physics")
def eval_physics(
    model: str | None = typer.Option(
        None, "--model", help="Model folder (token LM or pyramid flow) to generate with."
    ),
    videos: Path | None = typer.Option(
        None, "--videos", help="Or a folder of videos + meta.jsonl (as `kinema data make`)."
    ),
    scenario: str = typer.Option("all", help="all, uniform, collision or parabola."),
    split: str = typer.Option("all", help="all, id or ood."),
    n: int | None = typer.Option(
        None,
        "--n",
        min=1,
        max=10_000,
        help="Clips per scenario and split (--model: default 256; --videos: default all).",
    ),
    cond_frames: int | None = typer.Option(
        None,
        help="Given frames (token LM: its own; flow: 5; --videos: from meta.jsonl).",
    ),
    seed: int | None = typer.Option(
        None, help="--model: dataset seed of the held-out clips (default 1000, not training's 0)."
    ),
    batch: int | None = typer.Option(
        None, min=1, max=1024, help="--model: clips per generate call (default 16)."
    ),
    detector: str = typer.Option("all", help="all, alpha (primary) or threshold (paper's)."),
    captions: bool = typer.Option(False, help="--model: give each clip's caption as prompt."),
    temperature: float | None = typer.Option(None, min=0.0, help="token-lm: temperature."),
    top_k: int | None = typer.Option(None, min=1, help="token-lm: keep the k likeliest."),
    steps: str | None = typer.Option(None, help="pyramid-flow: first-frame steps per stage."),
    video_steps: str | None = typer.Option(None, help="pyramid-flow: later-frame steps."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results here."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Physics velocity error (DATA.md) of a model's continuations or of a video folder,
    next to the ground-truth floor at the same resolution."""
    from kinema.data.physics import SCENARIOS, SPLITS
    from kinema.eval.physics import METHODS
    from kinema.eval.physics_eval import choices, evaluate_physics_folder, evaluate_physics_model

    _threads(threads)
    if (model is None) == (videos is None):
        raise KinemaError("give either --model PATH or --videos DIR")
    detectors = choices(detector, METHODS, "detector")
    model_only = {
        "--seed": seed,
        "--batch": batch,
        "--captions": captions or None,
        "--temperature": temperature,
        "--top-k": top_k,
        "--steps": _parse_steps(steps, "--steps"),
        "--video-steps": _parse_steps(video_steps, "--video-steps"),
    }
    if videos is not None:
        wrong = [k for k, v in model_only.items() if v is not None]
        if wrong:
            raise KinemaError(f"{', '.join(wrong)}: options of --model, not --videos")
        results = evaluate_physics_folder(
            videos,
            scenario=scenario,
            split=split,
            n=n,
            cond_frames=cond_frames,
            detectors=detectors,
        )
    else:
        n = n or 256
        total = (
            n * len(choices(scenario, SCENARIOS, "scenario")) * len(choices(split, SPLITS, "split"))
        )
        options = {k.lstrip("-").replace("-", "_"): v for k, v in model_only.items()}
        with lazy_progress("generate + score") as report:
            scored = [0]

            def advance(k: int) -> None:
                scored[0] += k
                report(scored[0], total)

            results = evaluate_physics_model(
                model,
                scenario=scenario,
                split=split,
                n=n,
                cond_frames=cond_frames,
                detectors=detectors,
                on_batch=advance,
                **{k: v for k, v in options.items() if v is not None},
            )
    _report_results(results, json_out)


def _report_results(results, json_out: Path | None) -> None:
    """Print an eval command's markdown table; write its JSON (atomically) if asked."""
    from kinema.utils.fs import atomic_file

    console.print(results.markdown(), markup=False, highlight=False, soft_wrap=True)
    if json_out is not None:
        with atomic_file(json_out) as tmp:
            tmp.write_text(json.dumps(results.to_dict(), indent=2))
        console.print(f"wrote {json_out}", soft_wrap=True, highlight=False)


@eval_app.command("fvd")
def eval_fvd(
    real: Path = typer.Option(..., "--real", help="Folder of real video files."),
    fake: Path = typer.Option(..., "--fake", help="Folder of generated video files."),
    detector: Path = typer.Option(
        ...,
        "--detector",
        help="Local Kinetics-400 I3D: .safetensors or .pt state dict, or TorchScript .pt.",
    ),
    frames: int = typer.Option(16, "--frames", help="Frames per clip (its first ones)."),
    n: int | None = typer.Option(
        None, "--n", help="Clips per set: the first N files, sorted (default all)."
    ),
    batch: int = typer.Option(8, "--batch", help="Clips per detector call."),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda if available)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the result here."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """Fréchet Video Distance between two folders of videos with a local I3D (no
    downloads). Biased by the number of clips: compare values only at equal --n."""
    from kinema.eval.fvd import fvd_folders

    _threads(threads)
    with lazy_progress("I3D features") as report:
        result = fvd_folders(
            real,
            fake,
            detector,
            frames=frames,
            n=n,
            batch_size=batch,
            device=device,
            on_clip=report,
        )
    _report_results(result, json_out)


@eval_app.command("adherence")
def eval_adherence(
    videos: Path = typer.Option(
        ..., "--videos", help="Folder of generated videos + captions.jsonl or meta.jsonl."
    ),
    captions: Path | None = typer.Option(
        None, "--captions", help='Prompts file ({"file", "caption"} lines) if not in the folder.'
    ),
    n: int | None = typer.Option(None, "--n", help="At most N clips (sorted by file)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results here."),
) -> None:
    """Text adherence on shapes / digits / physics prompts: does each video show the
    prompt's colours, moving in its direction?"""
    from kinema.eval.adherence import evaluate_adherence_folder

    if n is not None and n < 1:
        raise KinemaError(f"--n must be at least 1, got {n}")
    _report_results(evaluate_adherence_folder(videos, captions=captions, n=n), json_out)


@eval_app.command("report")
def eval_report(
    results: list[Path] = typer.Argument(..., help="Results JSON files (eval ... --json)."),
    out: Path = typer.Option(..., "--out", help="HTML file to write."),
    title: str = typer.Option("kinema evaluation", help="Page title."),
    samples: int = typer.Option(4, help="Sample clips shown per result (0: none)."),
) -> None:
    """One self-contained HTML page (tables, charts, sample frames) from eval results."""
    from kinema.eval.report import write_report

    if not 0 <= samples <= 100:
        raise KinemaError(f"--samples must be in [0, 100], got {samples}")
    page = write_report(results, out, title=title, samples=samples)
    console.print(f"wrote {page}", soft_wrap=True, highlight=False)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def bench(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="decode | physics-floor | tokenizer-speed | ..."),
) -> None:
    """Run a benchmark of BENCHMARKS.md (options after NAME go to it; NAME --help lists them)."""
    from kinema.bench import run_benchmark

    run_benchmark(name, list(ctx.args))


def main() -> None:
    """Entry point: one-line errors for user mistakes, tracebacks only with KINEMA_DEBUG=1."""
    try:
        app()
    except (KinemaError, ValueError, FileNotFoundError) as e:
        if os.environ.get("KINEMA_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
