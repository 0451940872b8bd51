"""Train a token LM on shards and export it together with its tokenizer.

The exported folder holds the LM (``config.json`` + ``model.safetensors``) and, in
``tokenizer/``, the tokenizer that made the shards, so ``kinema generate`` can decode
without being told which tokenizer to use.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from kinema.data import collate
from kinema.errors import KinemaError
from kinema.hub import resolve_model
from kinema.lm.config import TokenLMConfig
from kinema.lm.data import TokenClipDataset
from kinema.lm.model import TokenLM
from kinema.train import TrainConfig, Trainer
from kinema.train.checkpoint import latest_checkpoint, load_weights

log = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizer"


def parse_block(spec: str) -> tuple[int, int, int]:
    """``"1x1x16"`` -> ``(1, 1, 16)``."""
    try:
        bt, bh, bw = (int(x) for x in spec.lower().split("x"))
    except ValueError:
        raise KinemaError(f"block must look like 1x1x16 (t x h x w), got '{spec}'") from None
    return bt, bh, bw


def train_lm(
    config: TokenLMConfig,
    data: TokenClipDataset,
    train: TrainConfig,
    *,
    tokenizer: str | None = None,
    export_to: str | Path | None = None,
) -> Path:
    """Train (or resume) and export (EMA weights if any) to ``export_to`` (default
    ``train.out_dir/model``); ``tokenizer`` (folder or shipped name) is copied alongside."""
    if tuple(config.latent_shape) != data.latent_shape:
        raise KinemaError(
            f"model latent_shape {tuple(config.latent_shape)} does not match the data's "
            f"{data.latent_shape}"
        )
    model = TokenLM(config)
    result = Trainer(model, data, train, collate_fn=collate).fit()
    checkpoint = result.checkpoint or latest_checkpoint(train.out_dir)
    if checkpoint is None:
        raise KinemaError(f"training wrote no checkpoint in {train.out_dir}")
    if result.interrupted:
        log.info("interrupted: not exporting; resume from %s", checkpoint)
        return checkpoint
    out = Path(export_to) if export_to is not None else Path(train.out_dir) / "model"
    final = TokenLM(config)
    load_weights(final, checkpoint, ema=(Path(checkpoint) / "ema.safetensors").is_file())
    final.save_pretrained(out)
    if tokenizer is not None:
        shutil.copytree(resolve_model(tokenizer), out / TOKENIZER_DIR, dirs_exist_ok=True)
    log.info("exported %s to %s", checkpoint, out)
    return out
