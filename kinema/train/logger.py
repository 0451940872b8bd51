"""Training output for people and tools: rich progress bar, CSV, TensorBoard, loss-curve PNG.

All of it happens on rank 0 only (a disabled logger does nothing). Files under ``out_dir``:
``metrics.csv`` (one row per logged step, floats written exactly), ``tensorboard/``
(if TensorBoard imports) and ``loss.png`` (drawn from the CSV when the run ends, so it
also covers the steps before a resume).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

from rich.console import Console

from kinema.utils.fs import atomic_file

METRICS_NAME = "metrics.csv"
PLOT_NAME = "loss.png"
TENSORBOARD_DIR = "tensorboard"
BASE_COLUMNS = ("step", "loss", "lr", "grad_norm", "tokens_per_s", "skipped", "elapsed_s")


class TrainLogger:
    """Rank-0 sink for training metrics. ``log(step, metrics)`` writes one row."""

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        total_steps: int,
        start_step: int = 0,
        enabled: bool = True,
        tensorboard: bool = True,
        progress: bool = True,
        console: Console | None = None,
    ) -> None:
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self.total_steps = total_steps
        self.start_step = start_step
        self.show_progress = progress
        self.console = console or Console(stderr=True)
        self.csv_path = self.out_dir / METRICS_NAME
        self._columns: list[str] | None = None
        self._csv_file: Any = None
        self._csv: Any = None
        self._tb: Any = None
        self._progress: Any = None
        self._task: Any = None
        self._dropped_keys: set[str] = set()
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._open_csv()
        if tensorboard:
            self._open_tensorboard()
        if progress and self.console.is_terminal:
            self._open_progress()

    # ------------------------------------------------------------------ setup

    def _open_csv(self) -> None:
        rows: list[dict] = []
        if self.start_step > 0 and self.csv_path.is_file():
            # a resumed run continues the file, minus rows logged after its checkpoint
            with self.csv_path.open(newline="") as f:
                reader = csv.DictReader(f)
                self._columns = list(reader.fieldnames or []) or None
                rows = [r for r in reader if _int(r.get("step")) <= self.start_step]
        with atomic_file(self.csv_path) as tmp:
            with tmp.open("w", newline="") as f:
                if self._columns:
                    writer = csv.DictWriter(f, fieldnames=self._columns)
                    writer.writeheader()
                    writer.writerows(rows)
        self._csv_file = self.csv_path.open("a", newline="")
        if self._columns:
            self._csv = csv.DictWriter(self._csv_file, fieldnames=self._columns)

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception as exc:  # tensorboard is optional
            self.warn(f"TensorBoard logging off ({type(exc).__name__}: {exc})")
            return
        purge = self.start_step + 1 if self.start_step > 0 else None
        self._tb = SummaryWriter(log_dir=str(self.out_dir / TENSORBOARD_DIR), purge_step=purge)

    def _open_progress(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("lr {task.fields[lr]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._task = self._progress.add_task(
            "train", total=self.total_steps, completed=self.start_step, loss="-", lr="-", tps="-"
        )
        self._progress.start()

    # ------------------------------------------------------------------ use

    def info(self, message: str) -> None:
        if self.enabled:
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        if self.enabled:
            self.console.print(f"warning: {message}", style="yellow", markup=False, soft_wrap=True)

    def advance(self, step: int) -> None:
        """Move the progress bar to ``step`` steps done."""
        if self._progress is not None:
            self._progress.update(self._task, completed=step)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Record metrics of ``step`` (CSV row, TensorBoard scalars, progress fields)."""
        if not self.enabled:
            return
        row = {"step": step, **metrics}
        if self._csv is None:
            extras = sorted(k for k in row if k not in BASE_COLUMNS)
            self._columns = [c for c in BASE_COLUMNS if c in row] + extras
            self._csv = csv.DictWriter(self._csv_file, fieldnames=self._columns)
            self._csv.writeheader()
        new = set(row) - set(self._columns or ()) - self._dropped_keys
        if new:
            self._dropped_keys |= new
            self.warn(f"metrics {sorted(new)} appeared after the CSV header; not in {METRICS_NAME}")
        self._csv.writerow({k: _fmt(row.get(k)) for k in self._columns or ()})
        self._csv_file.flush()
        if self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"train/{key}", value, step)
        loss, lr, tps = metrics.get("loss"), metrics.get("lr"), metrics.get("tokens_per_s")
        if self._progress is not None:
            self._progress.update(
                self._task,
                completed=step,
                loss=f"{loss:.4f}" if loss is not None else "-",
                lr=f"{lr:.2e}" if lr is not None else "-",
                tps=f"{tps:,.0f}" if tps is not None else "-",
            )
        elif self.show_progress:
            parts = [f"step {step}/{self.total_steps}"]
            for key, value in metrics.items():
                if key in ("step", "elapsed_s"):
                    continue
                name = "tok/s" if key == "tokens_per_s" else key
                text = f"{value:,.0f}" if key == "tokens_per_s" else _short(value)
                parts.append(f"{name} {text}")
            self.info("  ".join(parts))

    def close(self, plot: bool = True) -> Path | None:
        """Stop the bar, close files and draw ``loss.png`` from the CSV (returns its path)."""
        if not self.enabled:
            return None
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if plot:
            return plot_metrics(self.csv_path, self.out_dir / PLOT_NAME)
        return None


def read_metrics(csv_path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a ``metrics.csv`` as dicts of floats (``step`` as int; blanks omitted)."""
    path = Path(csv_path)
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, float] = {}
            for key, value in raw.items():
                if value not in (None, ""):
                    row[key] = int(value) if key == "step" else float(value)
            rows.append(row)
    return rows


def plot_metrics(csv_path: str | os.PathLike, png_path: str | os.PathLike) -> Path | None:
    """Draw loss (and learning rate) against step into a PNG; None if there is nothing."""
    rows = [r for r in read_metrics(csv_path) if "loss" in r]
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = [r["step"] for r in rows]
    losses = [r["loss"] for r in rows]
    has_lr = any("lr" in r for r in rows)
    fig = Figure(figsize=(8, 6 if has_lr else 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 if has_lr else 1, 1, sharex=True, squeeze=False)[:, 0]
    axes[0].plot(steps, losses, lw=1, label="loss")
    if len(losses) >= 20:
        k = max(5, len(losses) // 50)
        smooth = [
            sum(losses[max(0, i - k + 1) : i + 1]) / len(losses[max(0, i - k + 1) : i + 1])
            for i in range(len(losses))
        ]
        axes[0].plot(steps, smooth, lw=2, label=f"mean of {k}")
        axes[0].legend()
    if all(v > 0 for v in losses):
        axes[0].set_yscale("log")
    axes[0].set_ylabel("loss")
    axes[0].grid(alpha=0.3)
    if has_lr:
        axes[1].plot([r["step"] for r in rows if "lr" in r], [r["lr"] for r in rows if "lr" in r])
        axes[1].set_ylabel("learning rate")
        axes[1].grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    png_path = Path(png_path)
    with atomic_file(png_path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return png_path


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
