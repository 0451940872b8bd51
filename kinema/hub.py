"""Where models come from: a folder on disk or a model shipped inside the package.

``resolve_model("tokenizer-cpu-fsq")`` finds ``kinema/assets/models/tokenizer-cpu-fsq``;
any existing folder path is used as is. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from kinema.errors import KinemaError

SHIPPED = Path(__file__).parent / "assets" / "models"
# A generative model's folder keeps the tokenizer that made its training data here, so
# sampling decodes without being told which tokenizer to use.
TOKENIZER_DIR = "tokenizer"


def shipped_models() -> list[str]:
    """Names of the models that ship with kinema."""
    if not SHIPPED.is_dir():
        return []
    return sorted(p.name for p in SHIPPED.iterdir() if (p / "config.json").is_file())


def resolve_model(spec: str | os.PathLike) -> Path:
    """A model folder from a path or a shipped model's name."""
    path = Path(spec)
    if path.is_dir():
        return path
    if (SHIPPED / str(spec) / "config.json").is_file():
        return SHIPPED / str(spec)
    raise KinemaError(
        f"model '{spec}' is neither a folder nor a shipped model; shipped: "
        f"{', '.join(shipped_models()) or 'none'}"
    )
