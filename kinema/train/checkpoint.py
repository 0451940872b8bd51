"""Training checkpoints: one folder per step, no pickle anywhere.

``out_dir/checkpoints/step_000100/`` holds

- ``config.json`` + ``model.safetensors``: exactly the :class:`~kinema.modeling.ModelMixin`
  format, so ``Model.from_pretrained(that_folder)`` works;
- ``ema.safetensors``: EMA weights (a full state dict: EMA parameters + model buffers);
- ``optimizer.safetensors`` + ``optimizer.json``: optimizer tensors / hyper-parameters,
  keyed by parameter name (independent of the number of ranks);
- ``trainer_state.json``: step, data position, scheduler state, RNG states of every rank;
- ``train_config.json``: the :class:`~kinema.train.TrainConfig` of the run.

Folders are written with :func:`~kinema.utils.fs.atomic_dir`: a crash while writing leaves
only a hidden ``.step_*.tmp*`` folder that nothing reads (and the next run deletes).
Resuming picks the highest complete step folder; ``checkpoints/latest.json`` names it too.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from kinema.errors import KinemaError
from kinema.modeling import CONFIG_NAME, WEIGHTS_NAME, config_to_dict, untie_shared
from kinema.utils.fs import atomic_dir, atomic_file

CHECKPOINTS_DIR = "checkpoints"
LATEST_NAME = "latest.json"
EMA_NAME = "ema.safetensors"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_META = "optimizer.json"
STATE_NAME = "trainer_state.json"
TRAIN_CONFIG_NAME = "train_config.json"
_STEP_RE = re.compile(r"^step_(\d+)$")


@dataclass
class CheckpointState:
    """Everything one checkpoint holds, as full (unsharded) CPU tensors and JSON values."""

    model: dict[str, torch.Tensor]
    trainer: dict[str, Any]
    optimizer: dict | None = None
    ema: dict[str, torch.Tensor] | None = None
    train_config: dict | None = None
    model_config: Any = None  # a config dataclass, written as config.json
    model_type: str | None = None
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- layout


def checkpoints_root(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / CHECKPOINTS_DIR


def step_dir(out_dir: str | os.PathLike, step: int) -> Path:
    return checkpoints_root(out_dir) / f"step_{step:06d}"


def is_complete(path: str | os.PathLike) -> bool:
    """A finished checkpoint folder (atomic writes make a named folder always complete)."""
    path = Path(path)
    return (path / STATE_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def list_checkpoints(out_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as ``[(step, folder), ...]``, oldest first."""
    root = checkpoints_root(out_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_RE.match(child.name)
        if match and child.is_dir() and is_complete(child):
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run, or None.

    That is the highest complete ``step_*`` folder; ``latest.json`` (written after each save)
    only mirrors it for people and tools, so a crash between the two writes cannot mislead.
    """
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def resolve_checkpoint(spec: str | os.PathLike) -> Path:
    """A checkpoint folder, or a run folder (``out_dir``) whose latest checkpoint is used."""
    path = Path(spec)
    if is_complete(path):
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise KinemaError(
            f"'{path}' is neither a checkpoint folder (with {STATE_NAME} and {WEIGHTS_NAME}) "
            f"nor a run folder with complete checkpoints under {CHECKPOINTS_DIR}/"
        )
    return latest


def write_latest(out_dir: str | os.PathLike, folder: Path) -> None:
    with atomic_file(checkpoints_root(out_dir) / LATEST_NAME) as tmp:
        tmp.write_text(json.dumps({"name": folder.name, "step": _step_of(folder)}))


def remove_partial(out_dir: str | os.PathLike) -> list[Path]:
    """Delete leftovers of interrupted writes (hidden ``.step_*`` temp/old folders)."""
    root = checkpoints_root(out_dir)
    removed = []
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith(".step_") and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed


def prune_checkpoints(out_dir: str | os.PathLike, keep_last: int | None) -> list[Path]:
    """Delete all but the newest ``keep_last`` complete checkpoints (None/0: keep all)."""
    if not keep_last:
        return []
    found = list_checkpoints(out_dir)
    doomed = [p for _, p in found[:-keep_last]]
    for path in doomed:
        # rename first so a crash mid-delete never leaves a half folder with a step name
        trash = path.with_name(f".{path.name}.old")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return doomed


def _step_of(folder: Path) -> int:
    match = _STEP_RE.match(folder.name)
    return int(match.group(1)) if match else -1


# ---------------------------------------------------------------------------- save / load


def save_checkpoint(path: str | os.PathLike, state: CheckpointState) -> Path:
    """Write one checkpoint folder atomically (call on rank 0 only)."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        save_file(_cpu(untie_shared(state.model)), str(tmp / WEIGHTS_NAME))
        if state.model_config is not None:
            config = {"model_type": state.model_type, **config_to_dict(state.model_config)}
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2))
        if state.ema is not None:
            save_file(_cpu(untie_shared(state.ema)), str(tmp / EMA_NAME))
        if state.optimizer is not None:
            tensors, meta = _flatten_optimizer(state.optimizer)
            save_file(tensors, str(tmp / OPTIMIZER_TENSORS))
            (tmp / OPTIMIZER_META).write_text(json.dumps(meta, indent=1))
        if state.train_config is not None:
            (tmp / TRAIN_CONFIG_NAME).write_text(json.dumps(state.train_config, indent=2))
        # written last: its presence marks the folder complete
        (tmp / STATE_NAME).write_text(json.dumps(state.trainer, indent=1))
    return path


def load_checkpoint(path: str | os.PathLike) -> CheckpointState:
    """Read a checkpoint folder written by :func:`save_checkpoint` (tensors on CPU)."""
    path = resolve_checkpoint(path)
    trainer = json.loads((path / STATE_NAME).read_text())
    model = load_file(str(path / WEIGHTS_NAME), device="cpu")
    ema = load_file(str(path / EMA_NAME), device="cpu") if (path / EMA_NAME).is_file() else None
    optimizer = None
    if (path / OPTIMIZER_META).is_file():
        meta = json.loads((path / OPTIMIZER_META).read_text())
        optimizer = _unflatten_optimizer(load_file(str(path / OPTIMIZER_TENSORS)), meta)
    train_config = None
    if (path / TRAIN_CONFIG_NAME).is_file():
        train_config = json.loads((path / TRAIN_CONFIG_NAME).read_text())
    return CheckpointState(
        model=model, trainer=trainer, optimizer=optimizer, ema=ema, train_config=train_config
    )


def load_weights(model: torch.nn.Module, path: str | os.PathLike, ema: bool = False) -> None:
    """Load a checkpoint's model (or EMA) weights into an unsharded ``model``."""
    path = resolve_checkpoint(path)
    file = path / (EMA_NAME if ema else WEIGHTS_NAME)
    if not file.is_file():
        raise KinemaError(f"checkpoint '{path}' has no {file.name}")
    _load_state(model, load_file(str(file)), file)


def _load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in tied_parameter_names(model)]
    if missing or unexpected:
        raise KinemaError(
            f"weights in '{source}' do not match {type(model).__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def load_init_weights(model: torch.nn.Module, folder: str | os.PathLike) -> None:
    """Fine-tuning start: ``folder/model.safetensors`` (an exported model or a checkpoint)
    into an unsharded ``model`` of the same architecture, after the model's own
    ``adapt_init_state`` (e.g. a token LM to another block shape); a one-line error names the
    first parameter whose shape still differs."""
    file = Path(folder) / WEIGHTS_NAME
    if not file.is_file():
        raise KinemaError(f"init_from '{folder}' has no {WEIGHTS_NAME}")
    state = load_file(str(file))
    if hasattr(model, "adapt_init_state"):
        state = model.adapt_init_state(state)
    own = model.state_dict()
    for name, tensor in state.items():
        if name in own and own[name].shape != tensor.shape:
            raise KinemaError(
                f"init_from '{folder}': {name} is {tuple(tensor.shape)} there and "
                f"{tuple(own[name].shape)} in this {type(model).__name__} (same config needed)"
            )
    _load_state(model, state, file)


def tied_parameter_names(model: torch.nn.Module) -> set[str]:
    """Names of parameters that share one tensor with another name (e.g. tied embeddings)."""
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return {n for names in groups.values() if len(names) > 1 for n in names}


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def _flatten_optimizer(osd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Name-keyed optimizer state -> (``{"name/key": tensor}``, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for name, entry in osd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}/{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(name, {})[key] = value
    return tensors, {"param_groups": osd["param_groups"], "state": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[str, dict] = {name: dict(values) for name, values in meta["state"].items()}
    for flat, value in tensors.items():
        name, key = flat.rsplit("/", 1)
        state.setdefault(name, {})[key] = value
    groups = []
    for group in meta["param_groups"]:
        # JSON turned tuples (AdamW's betas) into lists; 'params' stays a list of names
        groups.append(
            {
                k: (tuple(v) if isinstance(v, list) and k != "params" else v)
                for k, v in group.items()
            }
        )
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------------------- RNG


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def capture_rng_state() -> dict:
    """This process's Python, NumPy, torch CPU (and current CUDA device) RNG states as JSON."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = _b64(torch.cuda.get_rng_state())
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(_unb64(state["cuda"]))
