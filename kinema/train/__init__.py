"""One trainer for every kinema model: single process, or torchrun + FSDP2.

>>> trainer = Trainer(model, dataset, TrainConfig(steps=1000, batch_size=32, out_dir="runs/x"))
>>> result = trainer.fit()

``model`` needs ``loss(batch) -> Tensor | dict`` (``"loss"`` plus extra scalars to log) and
optionally ``num_tokens(batch) -> int``. Checkpoints land in ``out_dir/checkpoints/step_*``
and load with ``Model.from_pretrained(folder)``.
"""

from kinema.train.checkpoint import latest_checkpoint, list_checkpoints, load_weights
from kinema.train.config import TrainConfig
from kinema.train.data import SkipNoneCollate, StepSampler
from kinema.train.ema import EMA
from kinema.train.logger import TrainLogger, plot_metrics, read_metrics
from kinema.train.optim import build_optimizer, build_scheduler, lr_factor, split_decay_params
from kinema.train.trainer import Trainer, TrainResult

__all__ = [
    "EMA",
    "SkipNoneCollate",
    "StepSampler",
    "TrainConfig",
    "TrainLogger",
    "TrainResult",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "latest_checkpoint",
    "list_checkpoints",
    "load_weights",
    "lr_factor",
    "plot_metrics",
    "read_metrics",
    "split_decay_params",
]
