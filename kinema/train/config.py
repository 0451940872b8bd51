"""Training configuration: one dataclass for every kinema model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kinema.errors import KinemaError
from kinema.modeling import config_from_dict, config_to_dict
from kinema.nn.precision import PRECISIONS

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Hyper-parameters and run settings of :class:`kinema.train.Trainer`.

    ``batch_size`` is the *global* batch of one optimizer step: it is split over
    ``grad_accum`` micro-batches and over all ranks, so each rank sees micro-batches of
    ``batch_size // (grad_accum * world_size)`` items and the result of a step does not
    depend on how many processes run it.
    """

    steps: int = 1000
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio
    grad_clip: float | None = 1.0  # max global grad norm; None or 0 = off
    # 'fp32' | 'bf16' (autocast; weights, grads, optimizer in fp32) | 'auto' (bf16 where the
    # device computes it natively, else fp32: kinema.nn.precision)
    precision: str = "fp32"
    ema_decay: float | None = None  # e.g. 0.999; None = no EMA
    seed: int = 0
    out_dir: str = "runs/train"
    save_every: int = 1000  # steps between checkpoints; 0 = only at the end
    keep_last: int | None = 3  # complete checkpoints kept; None or 0 = keep all
    log_every: int = 10
    num_workers: int = 0
    device: str = "auto"  # 'auto' | 'cpu' | 'cuda'
    resume: bool | str = False  # False | True (latest in out_dir, if any) | checkpoint folder
    # fine-tuning: weights to start from (a folder with model.safetensors: an exported model
    # or a checkpoint), same architecture; a resumed checkpoint takes precedence
    init_from: str | None = None
    shuffle: bool = True
    tensorboard: bool = True
    progress: bool = True  # rich progress bar (plain lines when not a terminal)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        positive = ("steps", "batch_size", "grad_accum", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise KinemaError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "save_every", "num_workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise KinemaError(f"TrainConfig.{name} must be an integer >= 0, got {value!r}")
        if self.keep_last is not None and self.keep_last < 0:
            raise KinemaError(f"TrainConfig.keep_last must be >= 0 or None, got {self.keep_last}")
        if self.lr <= 0:
            raise KinemaError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise KinemaError(
                f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}"
            )
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise KinemaError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas}")
        if self.precision not in PRECISIONS:
            raise KinemaError(
                f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}"
            )
        if self.device not in DEVICES:
            raise KinemaError(f"unknown device {self.device!r}; valid: {', '.join(DEVICES)}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise KinemaError(
                f"TrainConfig.ema_decay must be in (0, 1) or None, got {self.ema_decay}"
            )
        if self.grad_clip is not None and self.grad_clip < 0:
            raise KinemaError(f"TrainConfig.grad_clip must be >= 0 or None, got {self.grad_clip}")

    def micro_batch_size(self, world_size: int = 1) -> int:
        """Items per micro-batch on one rank; errors if the global batch does not split."""
        parts = self.grad_accum * world_size
        if self.batch_size % parts:
            valid = [b for b in range(parts, 4 * parts + 1, parts)]
            raise KinemaError(
                f"batch_size {self.batch_size} does not split into grad_accum {self.grad_accum} x "
                f"{world_size} rank(s); use a multiple of {parts}, e.g. {valid}"
            )
        return self.batch_size // parts

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        return config_from_dict(cls, data)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)
