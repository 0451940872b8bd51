"""The one training loop of kinema: tokenizer, token LM and flow DiT all train here.

A model plugs in by being an ``nn.Module`` with ``loss(batch)`` returning a scalar tensor or
a dict with a ``"loss"`` tensor plus extra scalars to log (a value of None: not measured on
this batch, e.g. the loss of a pyramid stage the batch did not train; each scalar is
averaged over the batches that report it); ``num_tokens(batch)`` (optional) feeds
tokens/s, else batch elements are counted. Run it as is in one process, or under
``torchrun --nproc_per_node=N`` to shard the model with FSDP2 over N processes.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kinema.errors import KinemaError
from kinema.nn.precision import autocast as precision_autocast
from kinema.nn.precision import resolve_precision
from kinema.train import checkpoint as ckpt
from kinema.train.config import TrainConfig
from kinema.train.data import SafeItems, SkipNoneCollate, StepSampler, batch_len, to_device
from kinema.train.distributed import (
    all_gather_objects,
    all_reduce_sum,
    any_rank,
    barrier,
    gather_model_state,
    gather_optimizer_state,
    load_model_state,
    load_optimizer_state,
    setup,
    shard_model,
)
from kinema.train.ema import EMA
from kinema.train.logger import TrainLogger
from kinema.train.optim import build_optimizer, build_scheduler
from kinema.utils.seed import seed_everything


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    step: int  # optimizer steps done in total (including those before a resume)
    history: list[dict[str, float]]  # the rows logged during this call ({"step", "loss", ...})
    final: dict[str, float]  # the last of them ({} if nothing ran)
    interrupted: bool  # stopped early by SIGINT / SIGTERM / request_stop()
    checkpoint: Path | None  # the last checkpoint written by this call
    out_dir: Path = field(default_factory=Path)


class Trainer:
    """``Trainer(model, dataset, config).fit()``: AdamW, warmup + cosine, EMA, checkpoints.

    Construction joins the torchrun process group if there is one, moves the model to the
    device (sharding it with FSDP2 when distributed: see
    :func:`kinema.train.distributed.shard_model`), builds the optimizer, scheduler and EMA,
    seeds every RNG with ``config.seed + rank``, and, if ``config.resume`` says so, loads
    the checkpoint to continue from. ``model`` is modified in place.

    Exact resume: data order (seeded sampler + position), RNG states, optimizer,
    scheduler and EMA are restored, so an interrupted and resumed run reproduces the
    losses of an uninterrupted one. Randomness inside ``num_workers > 0`` data workers is
    the exception: derive it from the item index for bitwise reproducibility.

    ``batch_sampler``: a factory for a sampler that yields whole micro-batches (lists of
    indices) instead of the default :class:`StepSampler`, e.g. the one-task-per-step
    :func:`kinema.lm.agd.agd_sampler`. It is called as ``batch_sampler(dataset,
    global_batch=, micro_batch=, num_replicas=, rank=, seed=, steps=)`` and must yield
    ``grad_accum`` micro-batches per step and have ``steps_per_epoch``, ``dataset_len`` and
    ``set_position(epoch, step_in_epoch)`` (the resume protocol).

    A model with a ``set_train_step(step)`` method is told the number of optimizer steps
    done before each step (also after a resume), for loss schedules that depend on it
    (e.g. :class:`kinema.audio.AudioCodec`'s ``vq_start``).
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: Dataset,
        config: TrainConfig,
        collate_fn: Any = None,
        *,
        mp_policy: Any = None,
        batch_sampler: Callable[..., Any] | None = None,
    ) -> None:
        if not callable(getattr(model, "loss", None)):
            raise KinemaError(
                f"{type(model).__name__} has no loss(batch) method; the trainer needs one "
                "returning a scalar tensor or a dict with a 'loss' tensor"
            )
        self.config = config
        self.env = setup(config.device)
        self.device = self.env.device
        self.precision = resolve_precision(config.precision, self.device)  # 'auto' resolved
        self.micro_batch = config.micro_batch_size(self.env.world_size)
        self.out_dir = Path(config.out_dir)
        self.model_type = type(model).__name__
        model_config = getattr(model, "config", None)
        self.model_config = model_config if dataclasses.is_dataclass(model_config) else None
        self._tied_groups = _tied_groups(model)
        self._tied_names = {n for group in self._tied_groups for n in group}

        seed_everything(config.seed + self.env.rank)
        if config.init_from:
            ckpt.load_init_weights(model, config.init_from)
        model.to(self.device)
        if self.env.is_distributed:
            shard_model(model, self.env, mp_policy)
        self.model = model
        self.optimizer = build_optimizer(model, config)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.ema = EMA(model, config.ema_decay) if config.ema_decay else None

        self.dataset = dataset
        self._items = SafeItems(dataset)
        self.collate = SkipNoneCollate(collate_fn)
        split = dict(
            global_batch=config.batch_size,
            num_replicas=self.env.world_size,
            rank=self.env.rank,
            seed=config.seed,
        )
        self._yields_batches = batch_sampler is not None
        if batch_sampler is None:
            self.sampler = StepSampler(dataset, **split, shuffle=config.shuffle)
        else:
            self.sampler = batch_sampler(
                dataset, **split, micro_batch=self.micro_batch, steps=config.steps
            )
        self.step = 0
        self.skipped_total = 0
        self.last_metrics: dict[str, float] = {}
        self.resumed_from: Path | None = None
        self._stop = False
        self._stop_reason = ""
        self._last_batch: Any = None
        self._extra_keys: list[str] | None = None
        self._resume()

    # ------------------------------------------------------------------ public

    @property
    def is_main(self) -> bool:
        return self.env.is_main

    def request_stop(self) -> None:
        """Ask :meth:`fit` to finish the current step, save a checkpoint and return."""
        self._stop = True
        self._stop_reason = self._stop_reason or "request_stop()"

    def fit(self, until_step: int | None = None) -> TrainResult:
        """Train to ``config.steps`` (or only up to ``until_step``), checkpointing on the way.

        Returns normally (with ``interrupted=True``) after SIGINT / SIGTERM: the step in
        flight is finished and a checkpoint written first. A second signal aborts at once.
        """
        cfg = self.config
        end = cfg.steps if until_step is None else min(until_step, cfg.steps)
        history: list[dict[str, float]] = []
        saved: Path | None = None
        interrupted = False
        if self.step >= end:
            return self._result(history, saved, interrupted)
        logger = TrainLogger(
            self.out_dir,
            total_steps=cfg.steps,
            start_step=self.step,
            enabled=self.is_main,
            tensorboard=cfg.tensorboard,
            progress=cfg.progress,
        )
        self._logger = logger
        logger.info(self._banner(end))
        old_handlers = self._install_signal_handlers()
        micro_batches = self._micro_batches()
        self.model.train()
        self._reset_window()
        try:
            while self.step < end:
                self._train_step(micro_batches)
                self.step += 1
                logger.advance(self.step)
                stop = any_rank(self._stop, self.device)
                if stop or self.step % cfg.log_every == 0 or self.step == end:
                    row = self._log_window()
                    history.append(row)
                    logger.log(self.step, row)
                periodic = cfg.save_every and self.step % cfg.save_every == 0
                if stop or periodic or self.step == end:
                    saved = self.save_checkpoint()
                if stop:
                    interrupted = True
                    logger.info(
                        f"stopped by {self._stop_reason or 'another rank'} at step {self.step}; "
                        f"checkpoint {saved}; continue with resume=True"
                    )
                    break
        finally:
            _restore_signal_handlers(old_handlers)
            self._stop, self._stop_reason = False, ""
            micro_batches.close()
            logger.close(plot=True)
            self._logger = None
        return self._result(history, saved, interrupted)

    def save_checkpoint(self) -> Path:
        """Write ``out_dir/checkpoints/step_<step>/`` (collective; rank 0 writes) and prune."""
        model_state = gather_model_state(self.model)
        optim_state = gather_optimizer_state(self.model, self.optimizer)
        ema_state = self.ema.full_state_dict() if self.ema is not None else None
        rng = all_gather_objects(ckpt.capture_rng_state())
        path = ckpt.step_dir(self.out_dir, self.step)
        if self.is_main:
            epoch, pos = divmod(self.step, self.sampler.steps_per_epoch)
            trainer_state = {
                "step": self.step,
                "epoch": epoch,
                "step_in_epoch": pos,
                "steps_per_epoch": self.sampler.steps_per_epoch,
                "dataset_len": self.sampler.dataset_len,
                "batch_size": self.config.batch_size,
                "world_size": self.env.world_size,
                "model_type": self.model_type,
                "skipped_total": self.skipped_total,
                "scheduler": self.scheduler.state_dict(),
                "metrics": self.last_metrics,
                "rng": rng,
            }
            for group in self._tied_groups:  # one name per shared tensor, any world size
                for name in group[1:]:
                    model_state.pop(name, None)
            state = ckpt.CheckpointState(
                model=model_state,
                trainer=trainer_state,
                optimizer=optim_state,
                ema=self._ema_full(model_state, ema_state) if ema_state is not None else None,
                train_config=self.config.to_dict(),
                model_config=self.model_config,
                model_type=self.model_type,
            )
            ckpt.save_checkpoint(path, state)
            ckpt.write_latest(self.out_dir, path)
            ckpt.prune_checkpoints(self.out_dir, self.config.keep_last)
        barrier()
        return path

    # ------------------------------------------------------------------ resume

    def _resume(self) -> None:
        cfg = self.config
        if self.is_main:
            ckpt.remove_partial(self.out_dir)
        barrier()
        if cfg.resume is False or cfg.resume is None or cfg.resume == "":
            existing = ckpt.list_checkpoints(self.out_dir)
            if existing:
                raise KinemaError(
                    f"'{self.out_dir}' already holds checkpoints (up to step {existing[-1][0]}); "
                    "set resume=True to continue that run, or choose another out_dir"
                )
            return
        if cfg.resume is True or cfg.resume in ("auto", "latest"):
            path = ckpt.latest_checkpoint(self.out_dir)
            if path is None:
                return  # nothing to resume: a fresh run
        else:
            path = ckpt.resolve_checkpoint(cfg.resume)
        self.load_checkpoint(path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Continue from a checkpoint: weights, optimizer, scheduler, EMA, RNG, data position."""
        state = ckpt.load_checkpoint(path)
        path = ckpt.resolve_checkpoint(path)
        info = state.trainer
        if info.get("model_type") not in (None, self.model_type):
            raise KinemaError(f"'{path}' holds a {info['model_type']}, not a {self.model_type}")
        load_model_state(self.model, state.model, ignore=self._tied_names)
        if state.optimizer is not None:
            load_optimizer_state(self.model, self.optimizer, state.optimizer)
        self.scheduler.load_state_dict(info["scheduler"])
        if self.ema is not None:
            if state.ema is not None:
                self.ema.load_full_state_dict(state.ema)
            else:
                self._warn(f"'{path}' has no EMA weights; EMA restarts from the model weights")
                self.ema = EMA(self.model, self.config.ema_decay)
        self.step = int(info["step"])
        self.skipped_total = int(info.get("skipped_total", 0))
        self.last_metrics = dict(info.get("metrics", {}))
        same_data = (info.get("dataset_len"), info.get("batch_size")) == (
            self.sampler.dataset_len,
            self.config.batch_size,
        )
        if not same_data:
            self._warn(
                f"dataset length / batch size changed since '{path}' "
                f"({info.get('dataset_len')}/{info.get('batch_size')} -> "
                f"{self.sampler.dataset_len}/{self.config.batch_size}); data order will differ"
            )
        rng = info.get("rng") or []
        if len(rng) == self.env.world_size:
            ckpt.restore_rng_state(rng[self.env.rank])
        else:
            self._warn(
                f"'{path}' was written by {len(rng)} rank(s), this run has "
                f"{self.env.world_size}; RNG streams are reseeded, not restored"
            )
            seed_everything(self.config.seed + self.env.rank + 7919 * self.step)
        self.resumed_from = path

    # ------------------------------------------------------------------ steps

    def _micro_batches(self) -> Iterator[Any]:
        """Endless micro-batches of this rank, starting at the data position of ``self.step``."""
        epoch, pos = divmod(self.step, self.sampler.steps_per_epoch)
        while True:
            self.sampler.set_position(epoch, pos)
            gen = torch.Generator()  # worker seeds; keeps the global RNG untouched
            gen.manual_seed((self.config.seed * 1_000_003 + epoch * 1009 + self.env.rank) % 2**62)
            if self._yields_batches:
                batching: dict[str, Any] = dict(batch_sampler=self.sampler)
            else:
                batching = dict(batch_size=self.micro_batch, sampler=self.sampler, drop_last=True)
            loader = DataLoader(
                self._items,
                **batching,
                collate_fn=self.collate,
                num_workers=self.config.num_workers,
                pin_memory=self.device.type == "cuda",
                generator=gen,
            )
            yield from loader
            epoch, pos = epoch + 1, 0

    def _next_batch(self, micro_batches: Iterator[Any]) -> tuple[Any, float]:
        """The next usable micro-batch on the device and its weight (0 for a stand-in)."""
        bad_items = 0
        while True:
            collated = next(micro_batches)
            self.skipped_total += collated.skipped
            self._win_skipped += collated.skipped
            bad_items += collated.skipped
            if bad_items > self.sampler.dataset_len:
                raise KinemaError(
                    f"no usable item in {bad_items} consecutive dataset items (all None or "
                    "undecodable); check the data files"
                )
            if collated.batch is not None:
                self._last_batch = to_device(collated.batch, self.device)
                return self._last_batch, 1.0
            if self._last_batch is not None:
                # every item was bad: rerun the previous batch with zero weight so that all
                # ranks still run the same forward/backward collectives
                return self._last_batch, 0.0

    def _train_step(self, micro_batches: Iterator[Any]) -> None:
        cfg = self.config
        autocast = precision_autocast(self.device, self.precision)
        if callable(set_step := getattr(self.model, "set_train_step", None)):
            set_step(self.step)
        for _ in range(cfg.grad_accum):
            batch, weight = self._next_batch(micro_batches)
            with autocast:
                out = self.model.loss(batch)
            loss, extras = _split_loss(out, self.model_type)
            (loss * (weight / cfg.grad_accum)).backward()
            self._accumulate(loss, extras, weight, batch)
        if cfg.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
            self._win_grad_norm = self._win_grad_norm + norm.detach().double()
        self._win_lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update()
        self._win_steps += 1

    # ------------------------------------------------------------------ metrics

    def _reset_window(self) -> None:
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        self._win_loss = zero
        self._win_weight = 0.0
        self._win_extras: dict[str, torch.Tensor] = {}
        self._win_extra_weight: dict[str, float] = {}
        self._win_grad_norm = zero
        self._win_tokens = 0
        self._win_skipped = 0
        self._win_steps = 0
        self._win_lr = 0.0
        self._win_start = time.perf_counter()

    def _accumulate(self, loss: torch.Tensor, extras: dict, weight: float, batch: Any) -> None:
        if self._extra_keys is None:
            self._extra_keys = sorted(extras)
        self._win_loss = self._win_loss + loss.detach().double() * weight
        for key in self._extra_keys:
            if extras.get(key) is not None:
                value = torch.as_tensor(extras[key], device=self.device).detach().double()
                prev = self._win_extras.get(key, 0.0)
                self._win_extras[key] = prev + value.mean() * weight
                self._win_extra_weight[key] = self._win_extra_weight.get(key, 0.0) + weight
        self._win_weight += weight
        if weight:
            count = getattr(self.model, "num_tokens", None)
            self._win_tokens += int(count(batch)) if callable(count) else batch_len(batch)

    def _log_window(self) -> dict[str, float]:
        """Average the metrics since the last log over steps, micro-batches and ranks."""
        keys = self._extra_keys or []
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        head = [
            self._win_loss,
            torch.tensor(self._win_weight, dtype=torch.float64, device=self.device),
            self._win_grad_norm,
            torch.tensor(float(self._win_tokens), dtype=torch.float64, device=self.device),
            torch.tensor(float(self._win_skipped), dtype=torch.float64, device=self.device),
        ]
        weights = [self._win_extra_weight.get(k, 0.0) for k in keys]
        vec = torch.stack(
            head
            + [self._win_extras.get(k, zero) for k in keys]
            + [torch.tensor(w, dtype=torch.float64, device=self.device) for w in weights]
        )
        values = all_reduce_sum(vec).tolist()
        loss_sum, weight, grad_norm, tokens, skipped = values[:5]
        elapsed = time.perf_counter() - self._win_start
        row: dict[str, float] = {
            "loss": loss_sum / weight if weight else float("nan"),
            "lr": self._win_lr,
        }
        if self.config.grad_clip:
            row["grad_norm"] = grad_norm / (self._win_steps * self.env.world_size)
        row["tokens_per_s"] = tokens / elapsed if elapsed > 0 else 0.0
        row["skipped"] = int(skipped)
        sums, weights = values[5 : 5 + len(keys)], values[5 + len(keys) :]
        for key, value, w in zip(keys, sums, weights, strict=True):
            row[key] = value / w if w else float("nan")
        row["elapsed_s"] = elapsed
        row = {"step": self.step, **row}
        self.last_metrics = row
        self._reset_window()
        return row

    # ------------------------------------------------------------------ helpers

    def _ema_full(
        self, model_state: dict[str, torch.Tensor], ema_state: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """A full state dict with EMA parameters (tied names share one) and model buffers."""
        full = dict(model_state)
        full.update(ema_state)
        for group in self._tied_groups:
            source = next((n for n in group if n in ema_state), None)
            if source is not None:
                for name in group:
                    full[name] = ema_state[source]
        return full

    def _result(self, history: list, saved: Path | None, interrupted: bool) -> TrainResult:
        return TrainResult(
            step=self.step,
            history=history,
            final=history[-1] if history else {},
            interrupted=interrupted,
            checkpoint=saved,
            out_dir=self.out_dir,
        )

    def _banner(self, end: int) -> str:
        n_params = sum(p.numel() for p in self.model.parameters())
        cfg = self.config
        start = (
            f"resumed from {self.resumed_from} at step {self.step}"
            if self.resumed_from
            else (f"from {cfg.init_from}" if cfg.init_from else "from scratch")
        )
        return (
            f"training {self.model_type} ({n_params / 1e6:.2f}M params) on {self.device}, "
            f"{self.env.world_size} rank(s): batch {cfg.batch_size} = {self.micro_batch} x "
            f"{cfg.grad_accum} accum x {self.env.world_size} rank(s), {self.precision}; "
            f"steps {self.step} -> {end} of {cfg.steps}, {start}; out_dir {self.out_dir}"
        )

    def _warn(self, message: str) -> None:
        if self.is_main:
            logger = getattr(self, "_logger", None)
            if logger is not None:
                logger.warn(message)
            else:
                from rich.console import Console

                Console(stderr=True).print(f"warning: {message}", style="yellow", markup=False)

    def _install_signal_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)
        self._old_handlers = old
        return old

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop:  # second signal: give up at once
            _restore_signal_handlers(self._old_handlers)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self._stop = True
        self._stop_reason = signal.Signals(signum).name


def _restore_signal_handlers(old: dict) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _split_loss(out: Any, model_type: str) -> tuple[torch.Tensor, dict]:
    if isinstance(out, torch.Tensor):
        return out, {}
    if isinstance(out, dict) and isinstance(out.get("loss"), torch.Tensor):
        return out["loss"], {k: v for k, v in out.items() if k != "loss"}
    raise KinemaError(
        f"{model_type}.loss(batch) returned {type(out).__name__}; expected a scalar tensor "
        "or a dict with a 'loss' tensor"
    )


def _tied_groups(model: nn.Module) -> list[list[str]]:
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return [names for names in groups.values() if len(names) > 1]
