"""The ``kinema`` command line (typer). Thin: parse, call the library, report.

Errors the user can fix (bad files, impossible options) print one line and exit 2; set
``KINEMA_DEBUG=1`` to see the full traceback instead.

One module per command group (``kinema/cli/tokenizer.py`` holds ``kinema tokenizer ...``);
this one assembles them into the app and holds the entry point.
"""

from __future__ import annotations

import logging
import os
import sys

import typer
from rich.logging import RichHandler

from kinema import __version__
from kinema.cli import bench, data, demo, generate, models, tokenizer, train
from kinema.cli.common import console, err_console
from kinema.cli.eval import eval_app
from kinema.errors import KinemaError

__all__ = ["app", "console", "main"]

app = typer.Typer(
    name="kinema",
    help="Efficient video generation: VideoPoet, Next-Block Prediction, Pyramidal Flow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# top-level commands first, then the groups: the order of `kinema --help`
app.add_typer(data.commands)
app.add_typer(generate.commands)
app.add_typer(demo.commands)
app.add_typer(bench.commands)
app.add_typer(data.data_app, name="data")
app.add_typer(tokenizer.tokenizer_app, name="tokenizer")
app.add_typer(train.train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(models.models_app, name="models")


def _version(value: bool) -> None:
    if value:
        console.print(f"kinema {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_time=False, show_path=False)],
        force=True,
    )


def main() -> None:
    """Entry point: one-line errors for user mistakes, tracebacks only with KINEMA_DEBUG=1."""
    try:
        app()
    except (KinemaError, ValueError, FileNotFoundError) as e:
        if os.environ.get("KINEMA_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
