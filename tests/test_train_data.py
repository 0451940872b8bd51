"""Data side of the trainer: seeded rank-split order, None / undecodable items skipped."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from kinema.errors import KinemaError
from kinema.train import SkipNoneCollate, StepSampler, TrainConfig, Trainer, read_metrics

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import train_tiny  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def config(out: Path, **changes) -> TrainConfig:
    """train_tiny's config with this module's settings."""
    own = dict(steps=8, batch_size=8, lr=1e-3, warmup_steps=1, save_every=0, progress=False)
    return train_tiny.make_config(out, **{**own, **changes})


def test_global_step_batches_do_not_depend_on_world_size():
    data = list(range(50))  # 50 // 12 = 4 steps per epoch, 2 items dropped per epoch
    one = StepSampler(data, global_batch=12, seed=5)
    two = [StepSampler(data, global_batch=12, num_replicas=2, rank=r, seed=5) for r in (0, 1)]
    for epoch in (0, 1):
        one.set_position(epoch, 0)
        for s in two:
            s.set_position(epoch, 0)
        full = list(one)
        parts = [list(s) for s in two]
        assert len(full) == 48 and len(set(full)) == 48
        for step in range(4):
            mine = parts[0][step * 6 : (step + 1) * 6] + parts[1][step * 6 : (step + 1) * 6]
            assert sorted(mine) == sorted(full[step * 12 : (step + 1) * 12])
    one.set_position(0, 0)
    epoch0 = list(one)
    one.set_position(1, 0)
    assert list(one) != epoch0  # reshuffled every epoch
    one.set_position(0, 3)
    assert list(one) == epoch0[36:] and len(one) == 12  # resume inside the epoch
    with pytest.raises(Exception, match="fewer than one global batch"):
        StepSampler(list(range(5)), global_batch=8)


def test_skip_none_collate_counts():
    collate = SkipNoneCollate()
    out = collate([None, {"x": torch.ones(2)}, None, {"x": torch.zeros(2)}])
    assert out.skipped == 2 and out.batch["x"].shape == (2, 2)
    empty = collate([None, None])
    assert empty.batch is None and empty.skipped == 2


def test_bad_items_are_skipped_and_counted(tmp_path):
    # every 4th item is None and every 4th + 1 raises VideoDecodeError: half the data is bad
    data = train_tiny.ToySequences(n=64, bad_every=4)
    trainer = Trainer(train_tiny.build(), data, config(tmp_path))
    result = trainer.fit()  # 8 steps x 8 items = exactly one epoch
    assert result.step == 8 and not result.interrupted
    assert trainer.skipped_total == 32
    assert sum(r["skipped"] for r in result.history) == 32
    assert all(math.isfinite(r["loss"]) for r in result.history)
    assert sum(r["skipped"] for r in read_metrics(tmp_path / "metrics.csv")) == 32


def test_all_bad_micro_batch_does_not_crash(tmp_path):
    # unshuffled: items 0-3 (the first micro-batch) and 8-11 are all bad
    class Holes(train_tiny.ToySequences):
        def __getitem__(self, i):
            return None if i in range(0, 4) or i in range(8, 12) else super().__getitem__(i)

    cfg = config(tmp_path, steps=3, batch_size=4, shuffle=False, num_workers=1)
    trainer = Trainer(train_tiny.build(), Holes(n=16), cfg)
    result = trainer.fit()
    assert result.step == 3
    assert trainer.skipped_total == 8
    losses = [r["loss"] for r in result.history]
    # step 1 had no usable first micro-batch and took the next one; step 2 reran step 1's
    # batch with zero weight (nothing to learn from: no loss), step 3 trained normally
    assert math.isfinite(losses[0]) and math.isnan(losses[1]) and math.isfinite(losses[2])


def test_dataset_with_no_usable_item_fails_with_a_clear_message(tmp_path):
    data = train_tiny.ToySequences(n=16, bad_every=1)  # every item None
    trainer = Trainer(train_tiny.build(), data, config(tmp_path, batch_size=4))
    with pytest.raises(KinemaError, match="no usable item in 20 consecutive dataset items"):
        trainer.fit()
