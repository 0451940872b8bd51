"""What every benchmark script shares: the --threads / --repeats options and the header
line naming the machine (BENCHMARKS.md rows are only comparable within one run)."""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch


def parse_args(ap: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Add ``--repeats`` and ``--threads``, parse, and apply the thread count."""
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats (median is kept)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def header(what: str) -> str:
    """``# date | cpu | torch | threads; what``."""
    return (
        f"# {time.strftime('%Y-%m-%d %H:%M')} | {platform.processor() or platform.machine()} | "
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
