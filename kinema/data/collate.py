"""Batching for dict items: tensors stacked, numbers as tensors, everything else as lists.

Tensors whose shapes differ across items (image/video joint batches: ``(3, 1, H, W)`` next
to ``(3, 17, H, W)``) stay a list of per-item tensors; models group them by shape.

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
            same = all(v.shape == first.shape for v in values)
            batch[key] = torch.stack(values) if same else values
        elif isinstance(first, numbers.Number) and not isinstance(first, bool):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch
