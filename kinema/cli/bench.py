"""``kinema bench NAME ...``: the benchmarks of BENCHMARKS.md (kinema.bench parses their
options).
"""

from __future__ import annotations

import typer

commands = typer.Typer()


@commands.command(
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
