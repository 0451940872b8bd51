"""Pieces several command modules share: the consoles and progress bars, the parsing of
``--threads``, ``--set`` and per-stage ``--steps``, the built-in datasets and the run options
of the training commands.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from kinema.errors import KinemaError

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


def _threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


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
