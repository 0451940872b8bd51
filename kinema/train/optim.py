"""AdamW with decay / no-decay parameter groups and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from kinema.train.config import TrainConfig

# Modules whose weights are scales/offsets or lookup tables: never weight-decayed.
_NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (
    nn.Embedding,
    nn.EmbeddingBag,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
)


def split_decay_params(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of parameters with and without weight decay: ``(decay, no_decay)``.

    No decay for: 1-D parameters (biases, norm scales, learned scalars), weights of
    embeddings and normalisation layers, and any name returned by an optional
    ``model.no_weight_decay()`` (a set of parameter names, as in timm).
    """
    extra = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    no_decay_ids = set()
    for module in model.modules():
        if isinstance(module, _NO_DECAY_MODULES):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or id(p) in no_decay_ids or name in extra:
            no_decay.append(name)
        else:
            decay.append(name)
    return decay, no_decay


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: ``[{decay params, weight_decay}, {no-decay params, 0.0}]``."""
    decay, no_decay = split_decay_params(model)
    params = dict(model.named_parameters())
    groups = [
        {"params": [params[n] for n in decay], "weight_decay": weight_decay},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters (call after FSDP sharding)."""
    return torch.optim.AdamW(
        param_groups(model, config.weight_decay),
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
    )


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the base learning rate for optimizer step ``step`` (0-based).

    Linear warmup ``(step + 1) / warmup_steps`` for ``step < warmup_steps``, then a cosine
    from 1 down to ``min_lr_ratio`` reached at ``step = total_steps - 1`` (held after).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR applying :func:`lr_factor`; call ``scheduler.step()`` after each optimizer step."""
    fn = functools.partial(
        lr_factor,
        warmup_steps=config.warmup_steps,
        total_steps=config.steps,
        min_lr_ratio=config.min_lr_ratio,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
