"""Train a token LM on shards and export it together with its tokenizer.

The exported folder holds the LM (``config.json`` + ``model.safetensors``) and, in
``tokenizer/``, the tokenizer that made the shards, so ``kinema generate`` can decode
without being told which tokenizer to use.
"""

from __future__ import annotations

from pathlib import Path

from kinema.data import collate
from kinema.errors import KinemaError
from kinema.lm.config import TokenLMConfig
from kinema.lm.data import TokenClipDataset
from kinema.lm.model import TokenLM
from kinema.train import TrainConfig
from kinema.train.export import train_and_export


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
) -> Path | None:
    """Train (or resume) and export (EMA weights if any) to ``export_to`` (default
    ``train.out_dir/model``; None if interrupted); ``tokenizer`` (folder or shipped name) is
    copied alongside."""
    if tuple(config.latent_shape) != data.latent_shape:
        raise KinemaError(
            f"model latent_shape {tuple(config.latent_shape)} does not match the data's "
            f"{data.latent_shape}"
        )
    return train_and_export(
        TokenLM(config), data, train, export_to, collate_fn=collate, tokenizer=tokenizer
    )
