"""Exact resume: an interrupted + resumed run reproduces the uninterrupted one bit for bit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kinema.errors import KinemaError
from kinema.train import TrainConfig, Trainer, latest_checkpoint, load_weights

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import train_tiny  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def config(out: Path, **changes) -> TrainConfig:
    """train_tiny's config with this module's settings."""
    own = dict(
        steps=14,
        batch_size=8,
        grad_accum=2,
        lr=3e-3,
        warmup_steps=3,
        ema_decay=0.9,
        save_every=5,
        keep_last=0,
        progress=False,
        seed=3,
    )
    return train_tiny.make_config(out, **{**own, **changes})


def data():
    return train_tiny.ToySequences(n=48)  # 6 steps per epoch: the runs cross epochs


def losses(result) -> list[float]:
    return [row["loss"] for row in result.history]


def final_files(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    folder = out / "checkpoints" / "step_000014"
    names = ("model.safetensors", "ema.safetensors", "optimizer.safetensors")
    return {n: load_file(folder / n) for n in names}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (dropout on, so RNG state matters too)."""
    out = tmp_path_factory.mktemp("full")
    model = train_tiny.build(0, dropout=0.1)
    result = Trainer(model, data(), config(out)).fit()
    assert [r["step"] for r in result.history] == list(range(1, 15))
    return out, losses(result), {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_files(a: Path, b: Path) -> None:
    fa, fb = final_files(a), final_files(b)
    for name in fa:
        assert fa[name].keys() == fb[name].keys(), name
        for key in fa[name]:
            assert torch.equal(fa[name][key], fb[name][key]), f"{name}:{key}"


def test_resume_in_new_trainer_is_exact(reference, tmp_path):
    ref_out, ref_losses, ref_state = reference
    first = Trainer(train_tiny.build(0, dropout=0.1), data(), config(tmp_path)).fit(until_step=8)
    assert first.step == 8 and not first.interrupted
    assert first.checkpoint == tmp_path / "checkpoints" / "step_000008"

    # a fresh process would rebuild the model from scratch: other init, other global RNG
    torch.manual_seed(999)
    model = train_tiny.build(77, dropout=0.1)
    trainer = Trainer(model, data(), config(tmp_path, resume=True))
    assert trainer.step == 8 and trainer.resumed_from == first.checkpoint
    second = trainer.fit()
    assert [r["step"] for r in second.history] == list(range(9, 15))
    assert losses(first) + losses(second) == ref_losses  # bitwise equal floats
    for key, value in model.state_dict().items():
        assert torch.equal(value, ref_state[key]), key
    assert_same_files(ref_out, tmp_path)


def test_resume_from_middle_of_save_interval(reference, tmp_path):
    """until_step not on a save boundary still checkpoints there; resume from the folder path."""
    _, ref_losses, _ = reference
    first = Trainer(train_tiny.build(0, dropout=0.1), data(), config(tmp_path)).fit(until_step=3)
    ckpt = tmp_path / "checkpoints" / "step_000003"
    assert first.checkpoint == ckpt
    second = Trainer(
        train_tiny.build(5, dropout=0.1), data(), config(tmp_path, resume=str(ckpt))
    ).fit()
    assert losses(first) + losses(second) == ref_losses


def test_fit_twice_on_one_trainer_continues(reference, tmp_path):
    ref_out, ref_losses, _ = reference
    trainer = Trainer(train_tiny.build(0, dropout=0.1), data(), config(tmp_path))
    a = trainer.fit(until_step=6)
    b = trainer.fit()
    assert losses(a) + losses(b) == ref_losses
    assert trainer.fit().history == []  # already done: nothing to do
    assert_same_files(ref_out, tmp_path)


def test_checkpoint_loads_with_from_pretrained(reference):
    out, _, ref_state = reference
    folder = latest_checkpoint(out)
    assert folder.name == "step_000014"
    model = train_tiny.TinyLM.from_pretrained(folder)
    assert model.config == train_tiny.TinyConfig(dropout=0.1)
    for key, value in model.state_dict().items():
        assert torch.equal(value, ref_state[key]), key
    assert model.head.weight is model.embed.weight  # tie survives the round trip
    # EMA weights load into the same architecture and differ from the raw weights
    ema = train_tiny.build(1, dropout=0.1)
    load_weights(ema, folder, ema=True)
    assert not torch.equal(ema.blocks[0].fc1.weight, model.blocks[0].fc1.weight)
    assert torch.equal(ema.calls, model.calls)
    # nothing pickled: only JSON and safetensors
    assert {p.suffix for p in folder.iterdir()} == {".json", ".safetensors"}


def test_fresh_run_refuses_a_folder_with_checkpoints(reference, tmp_path):
    out, _, _ = reference
    with pytest.raises(KinemaError, match="already holds checkpoints.*resume=True"):
        Trainer(train_tiny.build(), data(), config(out))
    # resume=True with nothing to resume is a fresh start
    trainer = Trainer(train_tiny.build(), data(), config(tmp_path, resume=True))
    assert trainer.step == 0 and trainer.resumed_from is None
    with pytest.raises(KinemaError, match="neither a checkpoint folder"):
        Trainer(train_tiny.build(), data(), config(tmp_path, resume=str(tmp_path / "nope")))


def test_request_stop_checkpoints_and_returns(tmp_path):
    class StopAtFour(train_tiny.ToySequences):
        trainer = None

        def __getitem__(self, i):
            if self.trainer is not None and self.trainer.step == 3:
                self.trainer.request_stop()  # arrives during step 4
            return super().__getitem__(i)

    data = StopAtFour(n=48)
    trainer = Trainer(train_tiny.build(), data, config(tmp_path, save_every=0))
    data.trainer = trainer
    result = trainer.fit()
    assert result.interrupted and result.step == 4
    assert result.checkpoint == tmp_path / "checkpoints" / "step_000004"
    assert [r["step"] for r in result.history] == [1, 2, 3, 4]
    data.trainer = None
    assert trainer.fit().step == 14  # the flag does not outlive the call
