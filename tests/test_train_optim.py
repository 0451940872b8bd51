"""Trainer config, AdamW parameter groups and the warmup + cosine schedule."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from kinema.errors import KinemaError
from kinema.train import TrainConfig, build_optimizer, build_scheduler, lr_factor
from kinema.train.optim import split_decay_params

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import train_tiny  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def closed_form(step: int, warmup: int, total: int, min_ratio: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / (total - 1 - warmup))
    return min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * t)) / 2


@pytest.mark.parametrize("warmup", [0, 1, 10])
def test_lr_factor_matches_closed_form(warmup):
    total, ratio = 110, 0.1
    for step in [0, 1, 5, 9, 10, 11, 30, 59, 60, 100, 108, 109, 150]:
        assert lr_factor(step, warmup, total, ratio) == pytest.approx(
            closed_form(step, warmup, total, ratio), abs=1e-12
        )
    # anchor points: end of warmup is the peak, the last step reaches min_lr, half way is mean
    assert lr_factor(warmup, warmup, total, ratio) == pytest.approx(1.0)
    assert lr_factor(total - 1, warmup, total, ratio) == pytest.approx(ratio)
    mid = warmup + (total - 1 - warmup) / 2
    if mid == int(mid):
        assert lr_factor(int(mid), warmup, total, ratio) == pytest.approx((1 + ratio) / 2)


def test_scheduler_applies_schedule_to_every_group():
    model = train_tiny.build()
    cfg = TrainConfig(steps=20, lr=2e-3, warmup_steps=4, min_lr_ratio=0.05)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    seen = []
    for _ in range(cfg.steps):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    for step, lrs in enumerate(seen):
        want = cfg.lr * closed_form(step, 4, 20, 0.05)
        assert lrs == pytest.approx([want] * len(lrs), rel=1e-12)
    assert seen[3][0] == pytest.approx(2e-3) and seen[-1][0] == pytest.approx(2e-3 * 0.05)


def test_no_decay_on_norms_biases_embeddings():
    model = train_tiny.build()
    decay, no_decay = split_decay_params(model)
    assert set(decay) == {
        "pos",
        "blocks.0.fc1.weight",
        "blocks.0.fc2.weight",
        "blocks.1.fc1.weight",
        "blocks.1.fc2.weight",
    }
    assert "embed.weight" in no_decay  # an embedding (tied to the head)
    assert {"norm.weight", "norm.bias", "blocks.0.norm.weight", "blocks.1.fc1.bias"} <= set(
        no_decay
    )
    assert not set(decay) & set(no_decay)
    assert len(decay) + len(no_decay) == len(list(model.parameters()))

    opt = build_optimizer(model, TrainConfig(weight_decay=0.3))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {g["weight_decay"]: {names[id(p)] for p in g["params"]} for g in opt.param_groups}
    assert groups == {0.3: set(decay), 0.0: set(no_decay)}


def test_model_can_opt_out_of_decay():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)
            self.scale = nn.Parameter(torch.ones(4, 4))
            self.frozen = nn.Parameter(torch.ones(4, 4), requires_grad=False)

        def no_weight_decay(self):
            return {"scale"}

    decay, no_decay = split_decay_params(Net())
    assert decay == ["proj.weight"] and set(no_decay) == {"proj.bias", "scale"}


def test_config_errors_speak_plainly():
    with pytest.raises(KinemaError, match="precision 'fp16'; valid: auto, fp32, bf16"):
        TrainConfig(precision="fp16")
    with pytest.raises(KinemaError, match="multiple of 8"):
        TrainConfig(batch_size=12, grad_accum=4).micro_batch_size(world_size=2)
    assert TrainConfig(batch_size=16, grad_accum=4).micro_batch_size(world_size=2) == 2
    with pytest.raises(KinemaError, match="steps must be a positive integer"):
        TrainConfig(steps=0)
    cfg = TrainConfig(betas=[0.9, 0.99], resume="runs/x")
    assert cfg.betas == (0.9, 0.99)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
