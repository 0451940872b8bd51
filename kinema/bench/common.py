"""What every benchmark script shares: the --threads / --repeats options and the header
line naming the machine (BENCHMARKS.md rows are only comparable within one run)."""

from __future__ import annotations

import argparse
import platform
import time

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
