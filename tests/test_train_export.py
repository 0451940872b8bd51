"""train_and_export: the one path from a training run to a model folder."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from kinema.train import latest_checkpoint
from kinema.train.export import train_and_export

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import train_tiny  # noqa: E402


def test_exports_the_ema_weights_in_eval_mode(tmp_path, one_thread):
    model = train_tiny.build()
    cfg = train_tiny.make_config(tmp_path / "run", ema_decay=0.9, progress=False)
    seen = []
    out = train_and_export(
        model, train_tiny.ToySequences(), cfg, before_save=lambda m: seen.append(m.training)
    )
    assert out == tmp_path / "run" / "model"
    assert seen == [False]  # before_save sees the eval-mode copy
    exported = type(model).from_pretrained(out)
    ema = load_file(str(latest_checkpoint(cfg.out_dir) / "ema.safetensors"))
    for name, value in exported.state_dict().items():
        if name in ema:
            torch.testing.assert_close(value, ema[name])
    raw = model.state_dict()
    assert any(not torch.equal(raw[k], ema[k]) for k in ema)  # EMA != raw: the test can fail


class StopAfter(train_tiny.TinyLM):
    """Sends itself SIGINT at the third loss call, as a user's Ctrl-C would."""

    loss_calls = 0

    def loss(self, batch):
        StopAfter.loss_calls += 1
        if StopAfter.loss_calls == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return super().loss(batch)


def test_interrupted_run_is_not_exported(tmp_path, one_thread):
    model = StopAfter(train_tiny.build().config)
    cfg = train_tiny.make_config(tmp_path / "run", progress=False)
    assert train_and_export(model, train_tiny.ToySequences(), cfg) is None
    assert not (tmp_path / "run" / "model").exists()
    assert latest_checkpoint(cfg.out_dir) is not None  # resumable
