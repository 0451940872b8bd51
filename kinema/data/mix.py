"""Weighted mixtures of datasets (tokenizer training on physics + toys + real clips).

Each index draws its source dataset and the item inside it from a generator seeded by
``(seed, index)``, so a mixture is as deterministic as its parts. Only the fields every
source shares are kept: ``video``, ``caption`` and ``source`` (the name given).
With ``image_prob > 0`` some items are one random frame ``(3, 1, H, W)``: image/video
joint batches for causal tokenizers, whose first latent frame is an image code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset


def parse_weighted(spec: str) -> tuple[str, float]:
    """``"physics:3"`` -> ``("physics", 3.0)``; ``"clips/"`` -> ``("clips/", 1.0)``."""
    name, sep, weight = spec.rpartition(":")
    if sep and name:
        try:
            w = float(weight)
        except ValueError:
            return spec, 1.0  # a path with a colon in it
        if not w > 0:
            raise ValueError(f"dataset weight must be > 0 in '{spec}'")
        return name, w
    return spec, 1.0


class MixtureDataset(Dataset):
    """``length`` items drawn from ``datasets`` in proportion to ``weights``.

    Items: ``video (3, T, H, W)`` (or ``(3, 1, H, W)`` for image items), ``caption`` (str),
    ``source`` (the dataset's name).
    """

    def __init__(
        self,
        datasets: dict[str, Dataset],
        weights: Sequence[float] | None = None,
        length: int = 100_000,
        image_prob: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not datasets:
            raise ValueError("a mixture needs at least one dataset")
        weights = [1.0] * len(datasets) if weights is None else list(weights)
        if len(weights) != len(datasets) or not all(w > 0 for w in weights):
            raise ValueError(
                f"need one positive weight per dataset ({len(datasets)}), got {weights}"
            )
        if not 0.0 <= image_prob <= 1.0:
            raise ValueError(f"image_prob must be in [0, 1], got {image_prob}")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.names = list(datasets)
        self.datasets = list(datasets.values())
        p = np.asarray(weights, np.float64)
        self.probs = p / p.sum()
        self.length, self.image_prob, self.seed = length, image_prob, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        rng = np.random.default_rng([self.seed, index])
        k = int(rng.choice(len(self.datasets), p=self.probs))
        ds = self.datasets[k]
        item = ds[int(rng.integers(len(ds)))]  # type: ignore[arg-type]
        video = item["video"]
        if video.shape[1] > 1 and rng.random() < self.image_prob:
            t = int(rng.integers(video.shape[1]))
            video = video[:, t : t + 1]
        return {"video": video, "caption": item.get("caption", ""), "source": self.names[k]}
