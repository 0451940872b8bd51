"""Alternating gradient descent (VideoPoet): every optimizer step trains one task.

All items of a step's batch share the task, hence the sequence length: no padding, no
wasted attention. Which task a step trains is drawn from a mixture (task weights) under an
image / video curriculum: for the first ``switch`` fraction of the steps image tasks get
``image_before`` of the probability (0.9 in the paper), after it ``image_after`` (0.1);
inside each group the mixture weights decide.

:class:`AGDBatchSampler` is a batch sampler for :class:`kinema.train.Trainer`
(``Trainer(..., batch_sampler=agd_sampler(...))``). It is a pure function of
``(seed, step)``: the task of step ``s`` comes from a seeded uniform number, and the items
are the next ones of that task's own seeded stream of epoch permutations (so a task's items
are all seen before any repeats). Resuming at step ``s`` therefore reproduces the
uninterrupted order exactly; the trainer's checkpoint already stores the step.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from kinema.errors import KinemaError

_CHUNK = 4096  # steps whose task draws come from one seeded generator


@dataclass(frozen=True)
class Curriculum:
    """Image / video schedule: image tasks get probability ``image_before`` for steps
    ``s < switch * steps``, then ``image_after``."""

    switch: float = 0.25
    image_before: float = 0.9
    image_after: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.switch <= 1.0:
            raise KinemaError(f"curriculum switch must be in [0, 1], got {self.switch}")
        for p in (self.image_before, self.image_after):
            if not 0.0 <= p <= 1.0:
                raise KinemaError(f"curriculum image probabilities must be in [0, 1], got {p}")

    def image_probability(self, step: int, steps: int) -> float:
        return self.image_before if step < self.switch * steps else self.image_after


class AGDBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches (lists of dataset indices), one task per step.

    Args:
        dataset: items with a task each: ``dataset.item_tasks`` (a list of task names,
            e.g. :class:`kinema.lm.data.MultitaskDataset`), and ``dataset.image_tasks`` (set)
            unless ``image_tasks`` is given.
        global_batch: items per optimizer step over all ranks and micro-batches.
        micro_batch: items per yielded batch (default ``global_batch // num_replicas``).
        num_replicas, rank: data-parallel split; rank ``r`` takes items ``r, r + W, ...``
            of a step's global batch, so a step's items do not depend on ``W``.
        seed: the whole order is a function of ``(seed, step)``.
        steps: total optimizer steps (the curriculum's time base).
        weights: task -> mixture weight (default: 1 for every task in the dataset; a task
            missing from ``weights`` is never drawn).
        curriculum: image / video schedule; None = the plain mixture.
        image_tasks: overrides ``dataset.image_tasks``.

    The trainer's protocol: ``steps_per_epoch`` (= ``steps``), ``dataset_len`` and
    ``set_position(epoch, step_in_epoch)``.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        global_batch: int,
        steps: int,
        micro_batch: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        weights: Mapping[str, float] | None = None,
        curriculum: Curriculum | None = Curriculum(),
        image_tasks: Sequence[str] | None = None,
    ) -> None:
        item_tasks = list(getattr(dataset, "item_tasks", []))
        if len(item_tasks) != len(dataset):  # type: ignore[arg-type]
            raise KinemaError("AGD needs a dataset with item_tasks (one task name per item)")
        micro = global_batch // num_replicas if micro_batch is None else micro_batch
        if steps < 1 or micro < 1 or global_batch % (micro * num_replicas):
            raise KinemaError(
                f"need steps >= 1 and global_batch ({global_batch}) a multiple of micro_batch "
                f"({micro}) x num_replicas ({num_replicas})"
            )
        self.tasks = sorted(set(item_tasks))
        self.pools = [
            torch.tensor([i for i, t in enumerate(item_tasks) if t == name]) for name in self.tasks
        ]
        weights = {t: 1.0 for t in self.tasks} if weights is None else dict(weights)
        unknown = sorted(set(weights) - set(self.tasks))
        if unknown or min(weights.values(), default=0) < 0 or sum(weights.values()) <= 0:
            raise KinemaError(
                f"weights must be >= 0 for tasks of the dataset ({', '.join(self.tasks)}) with a "
                f"positive sum; got {weights}"
            )
        self.weights = torch.tensor([float(weights.get(t, 0.0)) for t in self.tasks])
        if image_tasks is None:
            image_tasks = getattr(dataset, "image_tasks", ())
        self.is_image = torch.tensor([t in set(image_tasks) for t in self.tasks])
        self.curriculum = curriculum
        self.global_batch, self.micro_batch = global_batch, micro
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.steps = steps
        self.steps_per_epoch = steps
        self.dataset_len = len(item_tasks)
        self.start = 0  # global step of the next iteration
        # per-step task index and how many earlier steps drew the same task, grown lazily
        self._task = torch.empty(0, dtype=torch.long)
        self._ordinal = torch.empty(0, dtype=torch.long)
        self._counts = torch.zeros(len(self.tasks), dtype=torch.long)
        self._perms: dict[tuple[int, int], torch.Tensor] = {}

    # ------------------------------------------------------------------ schedule
    def probabilities(self, step: int) -> dict[str, float]:
        """The task distribution at ``step``."""
        return dict(zip(self.tasks, self._probs(step).tolist(), strict=True))

    def _probs(self, step: int) -> torch.Tensor:
        return self._mixture(self._phase(torch.tensor([step])))[0]

    def _phase(self, steps: torch.Tensor) -> torch.Tensor:
        """0 before the curriculum switch, 1 after (always 0 without a curriculum)."""
        if self.curriculum is None:
            return torch.zeros_like(steps)
        return (steps >= self.curriculum.switch * self.steps).long()

    def _mixture(self, phase: torch.Tensor) -> torch.Tensor:
        """Task probabilities ``(len(phase), tasks)`` of curriculum phases."""
        w = self.weights.double()
        img, vid = w * self.is_image, w * ~self.is_image
        if self.curriculum is None or img.sum() == 0 or vid.sum() == 0:
            return (w / w.sum()).expand(len(phase), -1)
        c = self.curriculum
        p = torch.tensor([c.image_before, c.image_after], dtype=torch.float64)[phase, None]
        return p * img / img.sum() + (1 - p) * vid / vid.sum()

    def _grow(self, upto: int) -> None:
        """Draw the tasks of all steps ``< upto`` (whole chunks, each from its own seed)."""
        while self._task.numel() < upto:
            c = self._task.numel() // _CHUNK
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + c)
            u = torch.rand(_CHUNK, 1, generator=g, dtype=torch.float64)
            cdf = self._mixture(self._phase(torch.arange(c * _CHUNK, (c + 1) * _CHUNK))).cumsum(1)
            task = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)[:, 0]
            task = task.clamp_max(len(self.tasks) - 1)  # (chunk,)
            onehot = torch.nn.functional.one_hot(task, len(self.tasks))
            before = onehot.cumsum(0) - onehot + self._counts  # earlier draws of each task
            self._ordinal = torch.cat([self._ordinal, before.gather(1, task[:, None])[:, 0]])
            self._counts = self._counts + onehot.sum(0)
            self._task = torch.cat([self._task, task])

    def task_at(self, step: int) -> str:
        """The task trained at global step ``step``."""
        self._grow(step + 1)
        return self.tasks[int(self._task[step])]

    def step_items(self, step: int) -> list[int]:
        """The ``global_batch`` dataset indices of global step ``step`` (all ranks)."""
        self._grow(step + 1)
        k, ordinal = int(self._task[step]), int(self._ordinal[step])
        pool = self.pools[k]
        n = len(pool)
        j = torch.arange(ordinal * self.global_batch, (ordinal + 1) * self.global_batch)
        epochs, pos = j // n, j % n
        out = [int(pool[self._perm(k, int(e))[int(p)]]) for e, p in zip(epochs, pos, strict=True)]
        return out

    def _perm(self, task: int, epoch: int) -> torch.Tensor:
        key = (task, epoch)
        if key not in self._perms:
            if len(self._perms) > 64:
                self._perms.clear()
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + task) * 1009 + epoch)
            self._perms[key] = torch.randperm(len(self.pools[task]), generator=g)
        return self._perms[key]

    # ------------------------------------------------------------------ trainer protocol
    def set_position(self, epoch: int, step_in_epoch: int) -> None:
        """Start the next iteration at global step ``epoch * steps + step_in_epoch``."""
        self.start = epoch * self.steps_per_epoch + step_in_epoch

    def __iter__(self) -> Iterator[list[int]]:
        end = (self.start // self.steps_per_epoch + 1) * self.steps_per_epoch
        for step in range(self.start, end):
            mine = self.step_items(step)[self.rank :: self.num_replicas]
            for a in range(0, len(mine), self.micro_batch):
                yield mine[a : a + self.micro_batch]

    def __len__(self) -> int:
        steps_left = self.steps_per_epoch - self.start % self.steps_per_epoch
        return steps_left * self.global_batch // (self.num_replicas * self.micro_batch)


def agd_sampler(**options: Any):
    """A factory for ``Trainer(..., batch_sampler=...)``: the trainer supplies the dataset,
    batch sizes, ranks, seed and steps; ``options`` are the other
    :class:`AGDBatchSampler` arguments (``weights``, ``curriculum``, ``image_tasks``)."""
    return functools.partial(AGDBatchSampler, **options)
