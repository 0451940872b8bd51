"""Training logger: CSV rows (exact floats), TensorBoard events, loss-curve PNG, resume."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

from kinema.train import TrainConfig, Trainer, TrainLogger, read_metrics

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import train_tiny  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_logger_writes_csv_tensorboard_and_png(tmp_path):
    out = io.StringIO()
    log = TrainLogger(tmp_path, total_steps=30, console=Console(file=out, width=200))
    for step in range(1, 31):
        log.log(step, {"loss": 1.0 / step, "lr": 1e-3, "tokens_per_s": 100.0, "acc": 0.1 * step})
    png = log.close()
    assert png == tmp_path / "loss.png" and png.read_bytes()[:8] == PNG_MAGIC
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert rows[2]["loss"] == 1.0 / 3  # floats round-trip exactly
    assert rows[-1]["acc"] == pytest.approx(3.0)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert header == "step,loss,lr,tokens_per_s,acc"
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    text = out.getvalue()  # not a terminal: one plain line per logged step
    assert "step 30/30  loss 0.03333  lr 0.001  tok/s 100  acc 3" in text


def test_resumed_logger_drops_rows_after_the_checkpoint(tmp_path):
    quiet = Console(file=io.StringIO())
    log = TrainLogger(tmp_path, total_steps=10, tensorboard=False, console=quiet)
    for step in range(1, 8):  # killed at step 7, last checkpoint at step 5
        log.log(step, {"loss": float(step)})
    log.close(plot=False)
    log = TrainLogger(tmp_path, total_steps=10, start_step=5, tensorboard=False, console=quiet)
    for step in range(6, 11):
        log.log(step, {"loss": 10.0 * step})
    log.close()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [(r["step"], r["loss"]) for r in rows] == [(s, float(s)) for s in range(1, 6)] + [
        (s, 10.0 * s) for s in range(6, 11)
    ]
    assert (tmp_path / "loss.png").read_bytes()[:8] == PNG_MAGIC


def test_disabled_logger_writes_nothing(tmp_path):
    log = TrainLogger(tmp_path / "run", total_steps=3, enabled=False)
    log.log(1, {"loss": 1.0})
    assert log.close() is None and not (tmp_path / "run").exists()


def test_trainer_run_leaves_metrics_and_plot(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = TrainConfig(
            steps=6,
            batch_size=4,
            log_every=2,
            save_every=0,
            out_dir=str(tmp_path),
            device="cpu",
            progress=False,
            warmup_steps=1,
        )
        result = Trainer(train_tiny.build(), train_tiny.ToySequences(16), cfg).fit()
    finally:
        torch.set_num_threads(threads)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows] == [2, 4, 6] == [r["step"] for r in result.history]
    assert set(rows[0]) == {
        "step",
        "loss",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "skipped",
        "elapsed_s",
        "acc",
    }
    assert rows[-1]["tokens_per_s"] > 0 and rows[-1]["loss"] == result.final["loss"]
    assert (tmp_path / "loss.png").read_bytes()[:8] == PNG_MAGIC
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
