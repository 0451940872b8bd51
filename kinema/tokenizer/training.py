"""Train a tokenizer on a weighted mixture of datasets and export the result.

Used by ``kinema tokenizer train`` and the recipes in ``recipes/``:

>>> data = training_mixture(["physics:2", "shapes", "clips/"], resolution=64)
>>> folder = train_tokenizer(preset("cpu-fsq"), data, TrainConfig(steps=3000, batch_size=4))
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
from kinema.train import TrainConfig
from kinema.train.checkpoint import EMA_NAME, load_weights
from kinema.train.export import train_and_export

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


def fit_latent_stats_from(tokenizer: Tokenizer, data: Dataset, batches: int = 16) -> None:
    """Set a KL tokenizer's latent shift/scale from ``4 * batches`` video items of ``data``
    (image items are skipped)."""
    videos = []
    for i in range(len(data)):  # type: ignore[arg-type]
        v = data[i]["video"]
        if v.shape[1] > 1:
            videos.append(v)
        if len(videos) == 4 * batches:
            break
    if not videos:
        raise KinemaError("no video items to fit the KL latent statistics on")
    shift, scale = tokenizer.fit_latent_stats(
        torch.stack(videos[i : i + 4]) for i in range(0, len(videos), 4)
    )
    # the buffers are per channel (C,), equal across channels unless fitted per channel
    log.info("latent shift %s scale %s", _fmt(shift), _fmt(scale))


def _fmt(values: torch.Tensor) -> str:
    """``[0.1234, ...]`` of a small tensor, for logging."""
    return "[" + ", ".join(f"{float(v):.4f}" for v in values.flatten()) + "]"


def train_tokenizer(
    config: TokenizerConfig,
    data: Dataset,
    train: TrainConfig,
    *,
    init: str | Path | None = None,
    export_to: str | Path | None = None,
) -> Path | None:
    """Train (or resume, per ``train.resume``) and export (EMA weights; KL tokenizers get
    their latent statistics first); returns the exported folder (default
    ``train.out_dir/model``), None if interrupted. ``init``: start from a saved tokenizer,
    or from the EMA weights of a trainer checkpoint folder (``OUT/checkpoints/step_N``)."""
    tokenizer = Tokenizer(config)
    if init is not None:
        init = Path(init)
        if (init / EMA_NAME).is_file():  # a trainer checkpoint: continue from its EMA weights
            load_weights(tokenizer, init, ema=True)
        else:
            tokenizer.load_state_dict(Tokenizer.from_pretrained(init).state_dict())

    def before_save(tok: Tokenizer) -> None:
        if not tok.is_discrete:
            fit_latent_stats_from(tok, data)

    return train_and_export(
        tokenizer, data, train, export_to, collate_fn=collate, before_save=before_save
    )
