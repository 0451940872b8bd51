"""Train a token LM on shards and export it together with its tokenizer.

The exported folder holds the LM (``config.json`` + ``model.safetensors``) and, in
``tokenizer/``, the tokenizer that made the shards, so ``kinema generate`` can decode
without being told which tokenizer to use; a multitask model trained on audio tokens also
carries its audio codec in ``audio_codec/`` (:data:`kinema.hub.AUDIO_CODEC_DIR`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kinema.data import collate
from kinema.errors import KinemaError
from kinema.hub import AUDIO_CODEC_DIR, resolve_model
from kinema.lm.config import TokenLMConfig
from kinema.lm.data import MultitaskDataset, TokenClipDataset
from kinema.lm.model import TokenLM
from kinema.lm.tasks import get_task
from kinema.train import TrainConfig
from kinema.train.export import train_and_export


def parse_block(spec: str) -> tuple[int, int, int]:
    """``"1x1x16"`` -> ``(1, 1, 16)``."""
    try:
        bt, bh, bw = (int(x) for x in spec.lower().split("x"))
    except ValueError:
        raise KinemaError(f"block must look like 1x1x16 (t x h x w), got '{spec}'") from None
    return bt, bh, bw


def parse_tasks(spec: str) -> dict[str, float]:
    """``"t2v:1,stylize:edges:2,v2a"`` -> ``{"t2v": 1.0, "stylize:edges": 2.0, "v2a": 1.0}``:
    task names with AGD mixture weights (a trailing ``:WEIGHT``, default 1)."""
    weights: dict[str, float] = {}
    for entry in (e.strip() for e in spec.split(",")):
        name, _, last = entry.rpartition(":")
        try:
            weight = float(last)
        except ValueError:
            name, weight = entry, 1.0
        get_task(name)  # a one-line error for unknown tasks and controls
        if name in weights or not weight >= 0 or weight > 1e6:
            raise KinemaError(
                f"--tasks needs distinct tasks with weights in [0, 1e6], like t2v:1,v2a:0.5; "
                f"got '{entry}'"
            )
        weights[name] = weight
    if not sum(weights.values()) > 0:
        raise KinemaError(f"--tasks needs a positive total weight, got '{spec}'")
    return weights


def train_lm(
    config: TokenLMConfig,
    data: TokenClipDataset | MultitaskDataset,
    train: TrainConfig,
    *,
    tokenizer: str | None = None,
    export_to: str | Path | None = None,
    batch_sampler: Callable[..., Any] | None = None,
    audio_codec: str | Path | None = None,
) -> Path | None:
    """Train (or resume) and export (EMA weights if any) to ``export_to`` (default
    ``train.out_dir/model``; None if interrupted); ``tokenizer`` (folder or shipped name) is
    copied alongside, and so is ``audio_codec`` (into ``audio_codec/``). ``batch_sampler``:
    e.g. :func:`kinema.lm.agd.agd_sampler` for a :class:`MultitaskDataset`."""
    if tuple(config.latent_shape) != tuple(data.latent_shape):
        raise KinemaError(
            f"model latent_shape {tuple(config.latent_shape)} does not match the data's "
            f"{tuple(data.latent_shape)}"
        )
    folder = train_and_export(
        TokenLM(config),
        data,
        train,
        export_to,
        collate_fn=collate,
        tokenizer=tokenizer,
        batch_sampler=batch_sampler,
    )
    if folder is not None and audio_codec is not None:
        shutil.copytree(resolve_model(audio_codec), folder / AUDIO_CODEC_DIR, dirs_exist_ok=True)
    return folder
