"""Data order and batching for the trainer: seeded, resumable, rank-split, None-tolerant."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler, default_collate

from kinema.errors import KinemaError


class StepSampler(DistributedSampler):
    """A seeded :class:`DistributedSampler` that walks whole global steps and can start mid-epoch.

    Epoch ``e`` is the permutation of ``torch.randperm(len(dataset))`` under seed
    ``seed + e`` (as in DistributedSampler), cut to ``steps_per_epoch * global_batch`` items
    so that every epoch is a whole number of optimizer steps. Rank ``r`` of ``W`` takes
    items ``r, r + W, r + 2W, ...`` of it, so the items of global step ``s`` are the same set
    for any number of ranks: ``perm[s * global_batch : (s + 1) * global_batch]``.
    :meth:`set_position` jumps to a step inside an epoch (used when resuming).
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        global_batch: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=True,
        )
        self.global_batch = global_batch
        self.dataset_len = len(dataset)  # type: ignore[arg-type]
        self.steps_per_epoch = self.dataset_len // global_batch
        if self.steps_per_epoch < 1:
            raise KinemaError(
                f"the dataset has {self.dataset_len} item(s), fewer than one global batch "
                f"(batch_size {global_batch}); lower batch_size or add data"
            )
        self.per_rank_per_step = global_batch // num_replicas
        self.start = 0

    def set_position(self, epoch: int, step_in_epoch: int) -> None:
        """Start the next iteration at ``step_in_epoch`` of ``epoch``."""
        self.set_epoch(epoch)
        self.start = step_in_epoch * self.per_rank_per_step

    def _rank_indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            perm = torch.randperm(self.dataset_len, generator=g)
        else:
            perm = torch.arange(self.dataset_len)
        perm = perm[: self.steps_per_epoch * self.global_batch]
        return perm[self.rank :: self.num_replicas].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self._rank_indices()[self.start :])

    def __len__(self) -> int:
        return self.steps_per_epoch * self.per_rank_per_step - self.start


@dataclass
class Collated:
    """A collated micro-batch (None if every item was bad) and how many items were dropped."""

    batch: Any
    skipped: int


class SkipNoneCollate:
    """Wrap a collate function: drop ``None`` items, collate the rest, count the dropped."""

    def __init__(self, collate_fn: Callable[[list], Any] | None = None) -> None:
        self.collate_fn = collate_fn or default_collate

    def __call__(self, items: list) -> Collated:
        good = [x for x in items if x is not None]
        skipped = len(items) - len(good)
        return Collated(self.collate_fn(good) if good else None, skipped)


class SafeItems(Dataset):
    """Dataset view whose ``__getitem__`` turns a :class:`KinemaError` (bad file) into None."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except KinemaError:
            return None


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested dict / list / tuple) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def batch_len(batch: Any) -> int:
    """Number of samples in a batch: the leading size of its first tensor (or its length)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, dict):  # collated items: a list value holds one entry per sample
        for value in batch.values():
            n = len(value) if isinstance(value, list) else batch_len(value)
            if n:
                return n
        return 0
    if isinstance(batch, (list, tuple)):
        for value in batch:
            if isinstance(value, (torch.Tensor, dict, list, tuple)):
                return batch_len(value)
        return len(batch)
    return 0
