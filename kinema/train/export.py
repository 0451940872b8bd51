"""Train a model, then export its final weights as a model folder.

The one place that turns a finished run into ``config.json`` + ``model.safetensors``
(EMA weights when the run kept them), for every kinema model.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from kinema.errors import KinemaError
from kinema.hub import TOKENIZER_DIR, resolve_model
from kinema.modeling import ModelMixin
from kinema.train.checkpoint import EMA_NAME, latest_checkpoint, load_weights
from kinema.train.config import TrainConfig
from kinema.train.trainer import Trainer

log = logging.getLogger(__name__)


def train_and_export(
    model: ModelMixin,
    data: Dataset,
    train: TrainConfig,
    export_to: str | Path | None = None,
    *,
    collate_fn: Any = None,
    before_save: Callable[[ModelMixin], None] | None = None,
    tokenizer: str | Path | None = None,
    batch_sampler: Callable[..., Any] | None = None,
) -> Path | None:
    """Train (or resume, per ``train.resume``) and export to ``export_to`` (default
    ``train.out_dir/model``); returns that folder, or None when the run was interrupted
    (its checkpoint is logged: resume from it).

    The export loads the last checkpoint into a fresh, unsharded copy of ``model`` (EMA
    weights if present), puts it in eval mode and calls ``before_save(copy)`` first (e.g.
    to fit latent statistics). ``tokenizer`` (folder or shipped name): the tokenizer of the
    training data, copied into the export's ``tokenizer/`` (:data:`kinema.hub.TOKENIZER_DIR`).
    ``batch_sampler``: see :class:`~kinema.train.Trainer` (e.g. multitask AGD batches).
    """
    result = Trainer(model, data, train, collate_fn=collate_fn, batch_sampler=batch_sampler).fit()
    checkpoint = result.checkpoint or latest_checkpoint(train.out_dir)
    if checkpoint is None:
        raise KinemaError(f"training wrote no checkpoint in {train.out_dir}")
    if result.interrupted:
        log.info("interrupted: not exporting; resume from %s", checkpoint)
        return None
    final = type(model)(model.config)
    ema = (Path(checkpoint) / EMA_NAME).is_file()
    load_weights(final, checkpoint, ema=ema)
    final.eval()
    if before_save is not None:
        before_save(final)
    out = Path(export_to) if export_to is not None else Path(train.out_dir) / "model"
    final.save_pretrained(out)
    if tokenizer is not None:
        shutil.copytree(resolve_model(tokenizer), out / TOKENIZER_DIR, dirs_exist_ok=True)
    log.info("exported %s (%s weights) to %s", checkpoint, "EMA" if ema else "raw", out)
    return out
