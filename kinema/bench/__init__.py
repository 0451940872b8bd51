"""Benchmark scripts behind BENCHMARKS.md: ``kinema bench NAME [OPTIONS]`` or
``python -m kinema.bench.MODULE``. They print markdown tables; they are never timed tests."""

from __future__ import annotations

import importlib

from kinema.bench.common import emit
from kinema.errors import KinemaError

BENCHMARKS = {
    "decode": "kinema.bench.decode",
    "generate": "kinema.bench.generate",
    "matmul": "kinema.bench.matmul",
    "physics-floor": "kinema.bench.physics_floor",
    "pyramid": "kinema.bench.pyramid",
    "tokenizer-speed": "kinema.bench.tokenizer_speed",
    "train-throughput": "kinema.bench.train_throughput",
}


def describe() -> str:
    """One line per benchmark: its name and the first line of its docstring."""
    lines = []
    for name, module in BENCHMARKS.items():
        doc = (importlib.import_module(module).__doc__ or "").strip().splitlines()
        lines.append(f"  {name:<17} {doc[0] if doc else ''}")
    return "usage: kinema bench NAME [OPTIONS]   (kinema bench NAME --help)\n" + "\n".join(lines)


def run_benchmark(name: str, argv: list[str]) -> None:
    """Run benchmark ``name`` with command-line options ``argv``."""
    if name in ("-h", "--help"):
        emit(describe())
        return
    if name not in BENCHMARKS:
        raise KinemaError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}")
    importlib.import_module(BENCHMARKS[name]).main(argv)
