"""Train a tokenizer on a weighted mixture of datasets and export the result.

Used by ``kinema tokenizer train`` and the recipes in ``recipes/``:

>>> data = training_mixture(["physics:2", "shapes", "clips/"], resolution=64)
>>> path = train_tokenizer(preset("cpu-fsq"), data, TrainConfig(steps=3000, batch_size=4))
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from kinema.data import BUILTIN, VideoFolderDataset, build_dataset, collate
from kinema.data.mix import MixtureDataset, parse_weighted
from kinema.errors import KinemaError
from kinema.tokenizer.config import TokenizerConfig
from kinema.tokenizer.tokenizer import Tokenizer
from kinema.train import TrainConfig, Trainer
from kinema.train.checkpoint import latest_checkpoint, load_weights

log = logging.getLogger(__name__)


def training_mixture(
    sources: Sequence[str],
    *,
    resolution: int = 64,
    num_frames: int = 17,
    length: int = 1_000_000,
    image_prob: float = 0.0,
    crop_scale: float = 1.25,
    seed: int = 0,
) -> MixtureDataset:
    """A mixture of built-in datasets and video files/folders, each ``NAME[:WEIGHT]``.

    Real videos are decoded once and cached (``crop_scale`` random crops with flips), so a
    few long files can feed many steps.
    """
    datasets: dict[str, Dataset] = {}
    weights = []
    for spec in sources:
        name, weight = parse_weighted(spec)
        if name in BUILTIN:
            ds = build_dataset(
                name, length=length, resolution=resolution, num_frames=num_frames, seed=seed
            )
        else:
            ds = VideoFolderDataset(
                name,
                num_frames,
                resolution,
                clips_per_file=10_000,
                seed=seed,
                crop_scale=crop_scale,
                cache=True,
            )
        datasets[name] = ds
        weights.append(weight)
    return MixtureDataset(datasets, weights, length=length, image_prob=image_prob, seed=seed)


def export(
    tokenizer: Tokenizer,
    checkpoint: str | Path,
    out: str | Path,
    *,
    ema: bool = True,
    stats_data: Dataset | None = None,
    stats_batches: int = 16,
) -> Path:
    """Write a trained tokenizer (EMA weights if the checkpoint has them) to folder ``out``.

    KL tokenizers first get their latent shift/scale from ``stats_data`` (videos only).
    """
    ema = ema and (Path(checkpoint) / "ema.safetensors").is_file()
    load_weights(tokenizer, checkpoint, ema=ema)
    tokenizer.eval()
    if not tokenizer.is_discrete:
        if stats_data is None:
            raise KinemaError("exporting a KL tokenizer needs data for its latent statistics")
        videos = []
        for i in range(len(stats_data)):  # type: ignore[arg-type]
            v = stats_data[i]["video"]
            if v.shape[1] > 1:
                videos.append(v)
            if len(videos) == 4 * stats_batches:
                break
        batches = [torch.stack(videos[i : i + 4]) for i in range(0, len(videos), 4)]
        shift, scale = tokenizer.fit_latent_stats(batches)
        log.info("latent shift %.4f scale %.4f", float(shift), float(scale))
    path = tokenizer.save_pretrained(out)
    log.info("exported %s (%s weights) to %s", checkpoint, "EMA" if ema else "raw", path)
    return path


def train_tokenizer(
    config: TokenizerConfig,
    data: Dataset,
    train: TrainConfig,
    *,
    init: str | Path | None = None,
    export_to: str | Path | None = None,
) -> Path:
    """Train (or resume, per ``train.resume``) and export; returns the exported folder
    (default ``train.out_dir/model``). ``init``: start from a saved tokenizer's weights."""
    tokenizer = Tokenizer(config)
    if init is not None:
        tokenizer.load_state_dict(Tokenizer.from_pretrained(init).state_dict())
    result = Trainer(tokenizer, data, train, collate_fn=collate).fit()
    checkpoint = result.checkpoint or latest_checkpoint(train.out_dir)
    if checkpoint is None:
        raise KinemaError(f"training wrote no checkpoint in {train.out_dir}")
    if result.interrupted:
        log.info("interrupted: not exporting; resume from %s", checkpoint)
        return checkpoint
    out = Path(export_to) if export_to is not None else Path(train.out_dir) / "model"
    return export(Tokenizer(config), checkpoint, out, stats_data=data)
