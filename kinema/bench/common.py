"""What every benchmark script shares: the --threads / --repeats options and the header
line naming the machine (BENCHMARKS.md rows are only comparable within one run)."""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from kinema.nn.precision import bf16_native


def emit(line: str = "") -> None:
    """Write one line of a benchmark's table to stdout, flushed: the table is the command's
    output (copied verbatim into BENCHMARKS.md), not a log message, and rows appear as
    they are measured."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``'s ``model name``), else the machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_dtypes() -> str:
    """``fp32,bf16`` where the CPU computes bf16 natively, else ``fp32`` (emulated bf16 is
    tens of times slower than fp32 and says nothing about kinema)."""
    return "fp32,bf16" if bf16_native("cpu") else "fp32"


def parse_args(ap: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Add ``--repeats`` and ``--threads``, parse, and apply the thread count."""
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats (median is kept)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def header(what: str) -> str:
    """``# date | cpu (bf16 native or emulated) | torch | threads; what``."""
    bf16 = "bf16 native" if bf16_native("cpu") else "bf16 emulated"
    return (
        f"# {time.strftime('%Y-%m-%d %H:%M')} | {cpu_name()} ({bf16}) | "
        f"torch {torch.__version__} | {torch.get_num_threads()} threads; {what}"
    )


def time_interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time (s) of each run: one warm-up each, then ``A B C A B C ...`` so that
    drifts of a shared machine hit every configuration alike."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}
