"""'auto' precision: bf16 only where the device computes it natively."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from kinema.errors import KinemaError
from kinema.nn import precision
from kinema.train import TrainConfig, Trainer


@pytest.fixture
def native(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bf16."""

    def set_native(value: bool) -> None:
        monkeypatch.setattr(precision, "_cpu_bf16_native", lambda: value)

    monkeypatch.delenv(precision.ENV, raising=False)
    return set_native


@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_follows_the_hardware(native, has_bf16):
    native(has_bf16)
    want = "bf16" if has_bf16 else "fp32"
    assert precision.resolve_precision("auto", "cpu") == want
    assert precision.fast_dtype("cpu") == (torch.bfloat16 if has_bf16 else torch.float32)
    with precision.autocast("cpu"):
        y = nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == (torch.bfloat16 if has_bf16 else torch.float32)


def test_explicit_choices_are_kept_and_emulated_bf16_is_warned_about(native, caplog):
    native(False)
    precision._warn_emulated.cache_clear()
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    with caplog.at_level(logging.WARNING, logger="kinema.nn.precision"):
        assert precision.resolve_precision("bf16", "cpu") == "bf16"
    assert "emulated" in caplog.text
    assert precision.fast_dtype("cpu", "bf16") == torch.bfloat16


def test_environment_overrides_auto(native, monkeypatch):
    native(True)
    monkeypatch.setenv(precision.ENV, "fp32")
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    assert precision.resolve_precision("bf16", "cpu") == "bf16"  # explicit wins
    monkeypatch.setenv(precision.ENV, "fp16")
    with pytest.raises(KinemaError, match="KINEMA_PRECISION='fp16'"):
        precision.resolve_precision("auto", "cpu")


def test_unknown_precision_is_one_line_error():
    with pytest.raises(KinemaError, match="unknown precision 'fp8'; valid: auto, fp32, bf16"):
        precision.resolve_precision("fp8")


def test_the_native_check_matches_torch_cpu_capabilities():
    cpu = torch.cpu
    want = cpu._is_amx_tile_supported() or cpu._is_avx512_bf16_supported()
    assert precision.bf16_native("cpu") is bool(want)
    assert precision.bf16_native("meta") is False


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 1)
        self.dtypes: list[torch.dtype] = []

    def loss(self, batch):
        y = self.lin(batch)
        self.dtypes.append(y.dtype)
        return y.float().pow(2).mean()


@pytest.mark.parametrize("has_bf16", [True, False])
def test_trainer_resolves_auto(native, tmp_path, has_bf16):
    native(has_bf16)
    model = _Tiny()
    data = [torch.randn(3) for _ in range(8)]
    cfg = TrainConfig(steps=1, batch_size=4, precision="auto", out_dir=str(tmp_path),
                      tensorboard=False, progress=False, save_every=0)  # fmt: skip
    trainer = Trainer(model, data, cfg)
    assert trainer.precision == ("bf16" if has_bf16 else "fp32")
    trainer.fit()
    assert model.dtypes == [torch.bfloat16 if has_bf16 else torch.float32]
