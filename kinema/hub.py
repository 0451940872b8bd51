"""Where models come from: a folder on disk or a model shipped inside the package.

``resolve_model("tokenizer-cpu-fsq")`` finds ``kinema/assets/models/tokenizer-cpu-fsq``;
any existing folder path is used as is. Nothing is ever downloaded. A folder may carry a
``card.json`` (:class:`ModelCard`) saying what it was trained on and how good it is.

This module reads only JSON and file headers: importing it must stay cheap (no torch).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kinema.errors import KinemaError

SHIPPED = Path(__file__).parent / "assets" / "models"
# A generative model's folder keeps the tokenizer that made its training data here, so
# sampling decodes without being told which tokenizer to use.
TOKENIZER_DIR = "tokenizer"
# ... or, in a shipped model, names a shipped tokenizer (``{"shipped": NAME}``) instead of
# holding a second copy of it
TOKENIZER_REF = "tokenizer.json"
AUDIO_CODEC_DIR = "audio_codec"  # a multitask LM's audio codec (video-to-audio)
CARD_NAME = "card.json"
# generation method -> the shipped model used when no model is given; the order is the
# preference of ``method="auto"``
DEFAULT_MODELS = {"pyramid-flow": "flow-small", "nbp": "lm-physics-nbp", "ntp": "lm-physics-ntp"}
# ``model_type`` of config.json -> kind; a TokenLM is "nbp" or "ntp" by its block shape
MODEL_TYPES = {"Tokenizer": "tokenizer", "TokenLM": "token-lm", "PyramidDiT": "pyramid-flow"}
LM_KINDS = ("nbp", "ntp")


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


def tokenizer_folder(spec: str | os.PathLike) -> Path | None:
    """The tokenizer stored with a generative model: its ``tokenizer/`` folder, else the
    shipped tokenizer its ``tokenizer.json`` names; None when it has neither."""
    folder = resolve_model(spec)
    if (folder / TOKENIZER_DIR / "config.json").is_file():
        return folder / TOKENIZER_DIR
    ref = folder / TOKENIZER_REF
    if not ref.is_file():
        return None
    try:
        name = json.loads(ref.read_text()).get("shipped")
    except (json.JSONDecodeError, AttributeError):
        name = None
    if not isinstance(name, str) or not (SHIPPED / name / "config.json").is_file():
        raise KinemaError(
            f"'{ref}' must be {{\"shipped\": NAME}} with NAME one of: "
            f"{', '.join(shipped_models()) or 'none'}"
        )
    return SHIPPED / name


def lm_kind(block_shape: Sequence[int]) -> str:
    """A token LM's kind: "ntp" (next-token prediction) for a 1x1x1 block, else "nbp"."""
    return "ntp" if math.prod(block_shape) == 1 else "nbp"


def model_kind(spec: str | os.PathLike) -> str:
    """What a model folder holds, from its ``config.json`` alone: "tokenizer", "nbp", "ntp",
    "pyramid-flow", or the raw ``model_type`` of anything else."""
    folder = resolve_model(spec)
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise KinemaError(f"'{folder}' is not a kinema model folder: missing config.json")
    try:
        config = json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise KinemaError(f"'{cfg}' is not valid JSON: {e}") from None
    model_type = str(config.get("model_type"))
    kind = MODEL_TYPES.get(model_type, model_type)
    return lm_kind(config.get("block_shape", (1, 1, 16))) if kind == "token-lm" else kind


def default_model(method: str = "auto") -> str:
    """The shipped model a generation ``method`` uses when none is given ("auto": the first
    shipped one of :data:`DEFAULT_MODELS`; "token-lm": of nbp, ntp)."""
    methods = {"auto": list(DEFAULT_MODELS), "token-lm": list(LM_KINDS)}.get(method, [method])
    names = [DEFAULT_MODELS[m] for m in methods if m in DEFAULT_MODELS]
    if not names:
        raise KinemaError(f"unknown method '{method}'; valid: auto, {', '.join(DEFAULT_MODELS)}")
    shipped = set(shipped_models())
    for name in names:
        if name in shipped:
            return name
    raise KinemaError(
        f"no default model for method '{method}': kinema ships none of {', '.join(names)} yet; "
        "train one (see recipes/) and pass --model PATH"
    )


@dataclass(frozen=True)
class ModelCard:
    """``card.json`` of a model folder; every field optional.

    Attributes:
        data: what it was trained on, e.g. "physics 10k clips, 17x64x64".
        quality: one line on how good it is, e.g. "physics velocity error 0.8 px/frame".
        recipe: how it was made, e.g. "recipes/flow_cpu.sh".
    """

    data: str = ""
    quality: str = ""
    recipe: str = ""


def read_card(spec: str | os.PathLike) -> ModelCard:
    """The :class:`ModelCard` of a model folder (an empty card when it has none)."""
    path = resolve_model(spec) / CARD_NAME
    if not path.is_file():
        return ModelCard()
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise KinemaError(f"'{path}' is not valid JSON: {e}") from None
    fields = [f.name for f in dataclasses.fields(ModelCard)]
    if not isinstance(data, dict):
        data = {"(not an object)": data}
    bad = [k for k, v in data.items() if k not in fields or not isinstance(v, str)]
    if bad:
        raise KinemaError(
            f"'{path}': bad field(s) {', '.join(bad)}; a card is a JSON object of strings "
            f"with keys {', '.join(fields)}"
        )
    return ModelCard(**data)


@dataclass(frozen=True)
class ModelSummary:
    """One row of ``kinema models list``: parameters of the folder's own weights (not its
    ``tokenizer/``), bytes on disk of everything in it."""

    name: str
    kind: str
    parameters: int
    size_bytes: int
    card: ModelCard


def summarize_model(spec: str | os.PathLike) -> ModelSummary:
    """Kind, parameter count (from the safetensors header, no weights loaded), size on disk
    and card of a model folder."""
    from safetensors import safe_open

    folder = resolve_model(spec)
    weights = folder / "model.safetensors"
    parameters = 0
    if weights.is_file():
        with safe_open(str(weights), framework="numpy") as f:
            parameters = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return ModelSummary(
        name=folder.name,
        kind=model_kind(folder),
        parameters=parameters,
        size_bytes=size,
        card=read_card(folder),
    )
