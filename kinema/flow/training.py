"""Train a pyramid-flow DiT on KL latent shards and export it together with its tokenizer
(in the model folder's ``tokenizer/``, as for the token LM), so ``kinema generate`` can
decode its latents."""

from __future__ import annotations

from pathlib import Path

from kinema.data import collate
from kinema.errors import KinemaError
from kinema.flow.config import FlowConfig
from kinema.flow.data import LatentClipDataset
from kinema.flow.dit import PyramidDiT
from kinema.train import TrainConfig
from kinema.train.export import train_and_export


def check_data(config: FlowConfig, data: LatentClipDataset) -> None:
    """Raise unless the model fits the data: channels, frames, height, width and text."""
    c, t, h, w = data.latent_shape
    want = (config.latent_channels, config.frames, config.resolution)
    if (c, t, h) != want or w % config.min_divisor:
        raise KinemaError(
            f"flow model (latent_channels, frames, resolution) {want} does not match the "
            f"data's latents (C, T, H, W) {(c, t, h, w)} (W must be a multiple of "
            f"{config.min_divisor})"
        )
    if data.captions is not None:
        enc = data.captions.encoder
        if enc.dim != config.text_dim or enc.max_length > config.max_text_len:
            raise KinemaError(
                f"text encoder gives {enc.max_length} x {enc.dim} states; the model takes "
                f"text_dim {config.text_dim} and at most max_text_len {config.max_text_len}"
            )


def train_flow(
    config: FlowConfig,
    data: LatentClipDataset,
    train: TrainConfig,
    *,
    tokenizer: str | Path | None = None,
    export_to: str | Path | None = None,
) -> Path | None:
    """Train (or resume) and export (EMA weights if any) to ``export_to`` (default
    ``train.out_dir/model``; None if interrupted); ``tokenizer`` (folder or shipped name) is
    copied alongside."""
    check_data(config, data)
    return train_and_export(
        PyramidDiT(config), data, train, export_to, collate_fn=collate, tokenizer=tokenizer
    )
