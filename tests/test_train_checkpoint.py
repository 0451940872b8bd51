"""Checkpoint folders: keep_last rotation, atomic writes, what resume picks."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from kinema.train import TrainConfig, Trainer, latest_checkpoint, list_checkpoints
from kinema.train import checkpoint as ckpt

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import train_tiny  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def config(out: Path, **changes) -> TrainConfig:
    """train_tiny's config with this module's settings."""
    own = dict(
        steps=10, batch_size=4, lr=1e-3, warmup_steps=2, save_every=2, keep_last=2, progress=False
    )
    return train_tiny.make_config(out, **{**own, **changes})


def steps_on_disk(out: Path) -> list[int]:
    return [step for step, _ in list_checkpoints(out)]


def test_keep_last_and_latest_pointer(tmp_path):
    Trainer(train_tiny.build(), train_tiny.ToySequences(32), config(tmp_path)).fit()
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest.json", "step_000008", "step_000010"]
    assert json.loads((root / "latest.json").read_text()) == {"name": "step_000010", "step": 10}
    assert latest_checkpoint(tmp_path) == root / "step_000010"
    state = json.loads((root / "step_000010" / "trainer_state.json").read_text())
    assert state["step"] == 10 and state["epoch"] == 1 and state["step_in_epoch"] == 2
    cfg = json.loads((root / "step_000010" / "train_config.json").read_text())
    assert TrainConfig.from_dict(cfg) == config(tmp_path)


def test_keep_all_when_keep_last_is_zero(tmp_path):
    Trainer(
        train_tiny.build(), train_tiny.ToySequences(32), config(tmp_path, steps=5, keep_last=0)
    ).fit()
    assert steps_on_disk(tmp_path) == [2, 4, 5]


def test_crash_while_writing_leaves_nothing_resume_would_pick(tmp_path, monkeypatch):
    """An exception inside the write (disk full, kill) must not produce a step folder."""
    calls = {"n": 0}
    real = ckpt._flatten_optimizer

    def flaky(osd):
        calls["n"] += 1
        if calls["n"] == 2:  # second checkpoint (step 4) dies half way through
            raise OSError("No space left on device")
        return real(osd)

    monkeypatch.setattr(ckpt, "_flatten_optimizer", flaky)
    trainer = Trainer(train_tiny.build(), train_tiny.ToySequences(32), config(tmp_path))
    with pytest.raises(OSError, match="No space"):
        trainer.fit()
    monkeypatch.undo()
    root = tmp_path / "checkpoints"
    assert steps_on_disk(tmp_path) == [2]
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # tmp cleaned

    # a hard kill leaves a hidden temp folder; a hand-made incomplete folder is ignored too
    shutil.copytree(root / "step_000002", root / ".step_000006.tmpab12cd")
    shutil.copytree(root / "step_000002", root / "step_000008")
    (root / "step_000008" / "trainer_state.json").unlink()
    (root / "latest.json").write_text(json.dumps({"name": "step_000008", "step": 8}))
    assert latest_checkpoint(tmp_path) == root / "step_000002"

    resumed = Trainer(
        train_tiny.build(9), train_tiny.ToySequences(32), config(tmp_path, resume=True)
    )
    assert resumed.step == 2
    assert not (root / ".step_000006.tmpab12cd").exists()  # leftovers removed on start
    result = resumed.fit()
    assert result.step == 10 and [r["step"] for r in result.history] == list(range(3, 11))
    assert steps_on_disk(tmp_path) == [8, 10]


def test_checkpoint_round_trip_without_pickle(tmp_path):
    model = train_tiny.build()
    trainer = Trainer(model, train_tiny.ToySequences(32), config(tmp_path, steps=3, ema_decay=0.5))
    trainer.fit()
    state = ckpt.load_checkpoint(tmp_path)  # a run folder resolves to its latest checkpoint
    assert state.trainer["step"] == 3
    assert set(state.model) == set(model.state_dict()) - {"head.weight"}  # tied: stored once
    opt = state.optimizer
    assert opt["param_groups"][0]["betas"] == (0.9, 0.95)
    assert set(opt["state"]) == {n for n, _ in model.named_parameters()}
    assert torch.equal(
        opt["state"]["pos"]["exp_avg"], trainer.optimizer.state[model.pos]["exp_avg"]
    )
    assert torch.equal(state.ema["pos"], trainer.ema.shadow[trainer.ema.names.index("pos")])
    rng = state.trainer["rng"]
    assert len(rng) == 1 and set(rng[0]) >= {"python", "numpy", "torch"}
