"""Trained models shown off: ``kinema serve`` (the Gradio web demo) and ``kinema gallery``
(the README GIFs).
"""

from __future__ import annotations

from pathlib import Path

import typer

from kinema.cli.common import _threads, console
from kinema.errors import KinemaError

commands = typer.Typer()


@commands.command()
def serve(
    model: list[str] = typer.Option(
        [],
        "--model",
        help="Model folder or shipped name; repeatable (default: the shipped default models).",
    ),
    host: str = typer.Option(
        "127.0.0.1", help="Address to bind (0.0.0.0 opens the app to the network)."
    ),
    port: int = typer.Option(7860, help="Port."),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """The web demo (Gradio): prompt, first image or video in, video out; one job at a time."""
    from kinema.app import serve as serve_app

    _threads(threads)
    if not 1 <= port <= 65535:
        raise KinemaError(f"--port must be in [1, 65535], got {port}")
    serve_app(model or None, host=host, port=port)


@commands.command()
def gallery(
    out: Path = typer.Option(Path("docs/gallery"), "--out", help="Folder of the GIFs."),
    model: list[str] = typer.Option(
        [],
        "--model",
        metavar="METHOD=PATH",
        help="Model of a method (nbp, ntp, pyramid-flow); repeatable (default: the shipped one).",
    ),
    threads: int | None = typer.Option(None, help="CPU threads (torch.set_num_threads)."),
) -> None:
    """README gallery: GIFs per method and prompt (fixed seed) + a gallery.md snippet of links."""
    from kinema.gallery import make_gallery

    _threads(threads)
    page, items = make_gallery(out, model)
    console.print(f"wrote {len(items)} GIFs and {page}", soft_wrap=True, highlight=False)
