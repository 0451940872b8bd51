"""Batching for dict items: tensors stacked, numbers as tensors, everything else as lists."""

from __future__ import annotations

import logging
import numbers

import torch

log = logging.getLogger(__name__)


def collate(items: list[dict | None]) -> dict | None:
    """Collate dataset items into a batch; ``None`` items (failed loads) are dropped.

    Returns ``None`` when nothing in the batch survived.
    """
    kept = [it for it in items if it is not None]
    if len(kept) < len(items):
        log.warning("dropped %d undecodable item(s) from a batch", len(items) - len(kept))
    if not kept:
        return None
    batch = {}
    for key in kept[0]:
        values = [it[key] for it in kept]
        first = values[0]
        if isinstance(first, torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(first, numbers.Number) and not isinstance(first, bool):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch
