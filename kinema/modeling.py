"""Save/load for every kinema model: a folder with ``config.json`` + ``model.safetensors``.

Models subclass :class:`ModelMixin` and set ``config_class`` to their config dataclass.
No pickle anywhere: configs are JSON, weights are safetensors.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from kinema.errors import KinemaError
from kinema.hub import resolve_model
from kinema.utils.fs import atomic_dir

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

M = TypeVar("M", bound="ModelMixin")


def config_to_dict(config: Any) -> dict:
    """Dataclass config -> JSON-able dict (tuples become lists)."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type, data: dict) -> Any:
    """Build dataclass ``cls`` from a dict, rejecting unknown keys with a clear message."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise KinemaError(f"unknown {cls.__name__} field(s) {unknown}; allowed: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        default = getattr(cls, key, None) if not callable(getattr(cls, key, None)) else None
        kwargs[key] = (
            tuple(value) if isinstance(value, list) and isinstance(default, tuple) else value
        )
    return cls(**kwargs)


class ModelMixin(nn.Module):
    """``save_pretrained`` / ``from_pretrained`` for a module built from one config dataclass."""

    config_class: ClassVar[type]
    config: Any

    def save_pretrained(self, path: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` atomically into folder ``path``.

        ``dtype``: store floating tensors in this dtype (e.g. ``torch.float16`` halves a
        shipped model); :meth:`from_pretrained` casts them back to the model's dtype.
        """
        path = Path(path)
        with atomic_dir(path) as tmp:
            state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            if dtype is not None:
                state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
            save_file(untie_shared(state), str(tmp / WEIGHTS_NAME))
            config = {"model_type": type(self).__name__, **config_to_dict(self.config)}
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2))
        return path

    @classmethod
    def from_pretrained(
        cls: type[M], path: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> M:
        """Load a model folder written by :meth:`save_pretrained` (or by the trainer), or a
        model shipped with kinema by name (:func:`kinema.hub.resolve_model`)."""
        path = Path(path) if Path(path).exists() else resolve_model(path)
        cfg_file, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
        for f in (cfg_file, weights):
            if not f.is_file():
                raise KinemaError(f"'{path}' is not a kinema model folder: missing {f.name}")
        data = json.loads(cfg_file.read_text())
        model_type = data.pop("model_type", cls.__name__)
        if model_type != cls.__name__:
            raise KinemaError(f"'{path}' holds a {model_type}, not a {cls.__name__}")
        model = cls(config_from_dict(cls.config_class, data))
        state = load_file(str(weights), device=str(map_location))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not _is_tied(model, k)]
        if missing or unexpected:
            raise KinemaError(
                f"weights in '{weights}' do not match {cls.__name__}: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return model

    def adapt_init_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Fine-tuning start: map another run's weights onto this model's shapes where the
        architecture allows a config change (default: unchanged; see
        :func:`kinema.train.checkpoint.load_init_weights`)."""
        return state


def untie_shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage: keep the first name of each shared tensor."""
    seen: dict[int, str] = {}
    out = {}
    for name, t in state.items():
        key = t.data_ptr()
        if key in seen and t.numel() > 0:
            continue
        seen[key] = name
        out[name] = t
    return out


def _is_tied(model: nn.Module, name: str) -> bool:
    """True if ``name`` shares storage with another parameter (dropped by :func:`untie_shared`)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    if name not in params:
        return False
    ptr = params[name].data_ptr()
    return any(p.data_ptr() == ptr and n != name for n, p in params.items())
