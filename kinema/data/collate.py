"""Batching for dict items: tensors stacked, numbers as tensors, everything else as lists.

Unlike ``default_collate`` it accepts items whose nested dicts differ (physics ``params``
per scenario). Failed items (``None``) are the trainer's concern: its ``SkipNoneCollate``
drops and counts them before calling a collate function.
"""

from __future__ import annotations

import numbers

import torch


def collate(items: list[dict]) -> dict:
    """Collate dataset items (dicts with the same keys) into a batch."""
    if not items:
        raise ValueError("cannot collate an empty list of items")
    batch = {}
    for key in items[0]:
        values = [it[key] for it in items]
        first = values[0]
        if isinstance(first, torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(first, numbers.Number) and not isinstance(first, bool):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch
