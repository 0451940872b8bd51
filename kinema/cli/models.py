"""``kinema models list``: what ships with kinema, from each model's card.json."""

from __future__ import annotations

import typer
from rich.table import Table

from kinema.cli.common import console

models_app = typer.Typer(help="Models that ship with kinema.", no_args_is_help=True)

# `kinema models list` names of model kinds (see kinema.hub.model_kind)
KIND_LABELS = {"nbp": "token-LM nbp", "ntp": "token-LM ntp"}


@models_app.command("list")
def models_list() -> None:
    """Shipped models: kind, parameters, size, training data and quality (card.json)."""
    from kinema import hub

    names = hub.shipped_models()
    if not names:
        console.print(
            f"no models shipped yet (in {hub.SHIPPED}); `kinema generate` will use "
            f"{', '.join(hub.DEFAULT_MODELS.values())} once they are. Train one with the "
            "commands in recipes/ and pass --model PATH."
        )
        return
    defaults = {name: method for method, name in hub.DEFAULT_MODELS.items()}
    table = Table("name", "kind", "parameters", "size (MB)", "data", "quality", "default for")
    for name in names:
        m = hub.summarize_model(name)
        table.add_row(
            m.name,
            KIND_LABELS.get(m.kind, m.kind),
            _count(m.parameters),
            f"{m.size_bytes / 1e6:.1f}",
            m.card.data or "-",
            m.card.quality or "-",
            defaults.get(name, ""),
        )
    console.print(table)


def _count(n: int) -> str:
    """1234567 -> 1.2M."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)
