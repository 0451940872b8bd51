"""``kinema data`` (built-in datasets: preview them, write them to disk) and ``kinema info``
(what is in video files).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from kinema.cli.common import _dataset, console, progress

commands = typer.Typer()
data_app = typer.Typer(
    help="Built-in datasets: preview them, write them to disk.", no_args_is_help=True
)


@commands.command()
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


@data_app.command("preview")
def data_preview(
    name: str = typer.Argument(..., help="physics, shapes, digits, or a video file/folder."),
    n: int = typer.Option(8, "--n", min=1, max=64, help="How many samples."),
    out: Path = typer.Option(Path("preview.gif"), "--out", help="Output .gif, .mp4 or .webm."),
    scenario: str = typer.Option("all", help="physics: all, uniform, collision, parabola; bounce."),
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
    scenario: str = typer.Option("all", help="physics: all, uniform, collision, parabola; bounce."),
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
