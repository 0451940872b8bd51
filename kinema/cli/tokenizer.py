"""``kinema tokenizer``: train video tokenizers, pre-tokenize datasets into shards,
evaluate and reconstruct.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from kinema.cli.common import (
    _dataset,
    _parse_sets,
    _report_export,
    _threads,
    _train_config,
    console,
    progress,
)
from kinema.errors import KinemaError

tokenizer_app = typer.Typer(
    help="Video tokenizers: train, evaluate, reconstruct, pre-tokenize datasets.",
    no_args_is_help=True,
)


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
    precision: str = typer.Option(
        "auto", help="auto (bf16 where the CPU/GPU has it natively, else fp32), bf16 or fp32."
    ),
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
    scenario: str = typer.Option("all", help="physics: all, uniform, collision, parabola; bounce."),
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
    from kinema.nn.precision import autocast as precision_autocast
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
    with torch.inference_mode(), precision_autocast("cpu"):
        recon = tok.reconstruct(clip, chunk=chunk).float()
    p, s = float(psnr(recon, clip)[0]), float(ssim(recon, clip)[0])
    side = make_grid([to_uint8(clip[0]), to_uint8(recon[0])], pad_value=0)
    write_video(out, side, fps=fps or (info.fps or 25.0))
    console.print(f"{video}: {want} frames at {size}x{size}  PSNR {p:.2f} dB  SSIM {s:.4f}")
    console.print(f"wrote {out}")
