"""Training pairs of the super-resolution transformer: the same clips tokenized at two sizes.

Two shard folders written by ``kinema tokenizer encode`` from one dataset, seed and clip
count, one at the low and one at the high frame size (``--resolution 32`` and ``64``), hold
item ``i``'s low-res and high-res tokens at the same index:

>>> pairs = SuperResPairs("shards/physics-32", "shards/physics-64")
>>> item = pairs[0]      # tokens_lr (t, h, w), tokens_hr (t, s*h, s*w)
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import Dataset

from kinema.errors import KinemaError
from kinema.tokenizer.shards import ShardDataset

# source fields of the two folders that must agree for index i to be the same clip
SAME_CLIPS = ("dataset", "scenario", "split", "seed", "frames")


class SuperResPairs(Dataset):
    """Items ``{"tokens_lr": (t, h, w), "tokens_hr": (t, s*h, s*w)}`` (long) of aligned shards."""

    def __init__(self, lr: str | os.PathLike, hr: str | os.PathLike) -> None:
        self.lr, self.hr = ShardDataset(lr), ShardDataset(hr)
        for name, shards in (("low-res", self.lr), ("high-res", self.hr)):
            if shards.kind != "tokens":
                raise KinemaError(
                    f"{name} shards '{shards.path}' hold continuous latents; super-resolution "
                    "needs the tokens of a discrete tokenizer"
                )
        src_lr, src_hr = (s.index.get("source", {}) for s in (self.lr, self.hr))
        differ = [k for k in SAME_CLIPS if src_lr.get(k) != src_hr.get(k)]
        if differ or len(self.lr) != len(self.hr):
            raise KinemaError(
                f"shards '{self.lr.path}' and '{self.hr.path}' are not the same clips "
                f"(they differ in {differ or 'length'}); encode one dataset with one --seed "
                "and --n at two --resolution values"
            )
        (t, h, w), (t2, h2, w2) = self.lr.item_shape, self.hr.item_shape
        if t != t2 or h2 % h or w2 % w or h2 // h != w2 // w or h2 == h:
            raise KinemaError(
                f"token grids {self.lr.item_shape} -> {self.hr.item_shape}: the high-res grid "
                "must be the low-res one times an integer factor >= 2 in space"
            )

    @property
    def lr_shape(self) -> tuple[int, int, int]:
        return tuple(self.lr.item_shape)

    @property
    def scale(self) -> int:
        return self.hr.item_shape[1] // self.lr.item_shape[1]

    def __len__(self) -> int:
        return len(self.lr)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        lo, hi = self.lr[index], self.hr[index]
        if lo.get("caption") != hi.get("caption"):  # a cheap per-item alignment check
            raise KinemaError(f"item {index}: the two shard folders hold different clips")
        return {"tokens_lr": lo["tokens"], "tokens_hr": hi["tokens"]}
