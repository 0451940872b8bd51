"""A tiny model + dataset for the trainer tests, and a script that trains it.

Imported by ``tests/test_train_*.py``; run as a subprocess (signals) or under
``python -m torch.distributed.run --nproc_per_node=2`` (FSDP2). Writes a JSON result
(rank 0) with the logged losses so the tests can compare runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from kinema.errors import KinemaError, VideoDecodeError
from kinema.modeling import ModelMixin
from kinema.train import TrainConfig, Trainer


@dataclass
class TinyConfig:
    vocab: int = 16
    dim: int = 32
    depth: int = 2
    seq: int = 8
    dropout: float = 0.0


class Block(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.norm(x)))))


class TinyLM(ModelMixin):
    """Next-token model over (B, N) tokens: embeddings, MLP blocks, tied output head."""

    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab, config.dim)
        self.pos = nn.Parameter(torch.randn(config.seq, config.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(config.dim, config.dropout) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.vocab, bias=False)
        self.head.weight = self.embed.weight  # tied
        nn.init.normal_(self.embed.weight, std=0.1)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N) tokens -> (B, N, vocab) logits."""
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        tokens = batch["tokens"]
        logits = self(tokens[:, :-1]).float()
        target = tokens[:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        acc = (logits.argmax(-1) == target).float().mean()
        return {"loss": loss, "acc": acc}

    def num_tokens(self, batch: dict) -> int:
        return batch["tokens"][:, 1:].numel()


class ToySequences(Dataset):
    """Item i: an arithmetic token sequence. ``bad_every=k``: items i % k == 0 are None,
    i % k == 1 raise VideoDecodeError (both must be skipped by the trainer)."""

    def __init__(
        self, n: int = 64, seq: int = 8, vocab: int = 16, bad_every: int = 0, delay: float = 0.0
    ) -> None:
        self.n, self.seq, self.vocab, self.bad_every, self.delay = n, seq, vocab, bad_every, delay

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if self.delay:
            time.sleep(self.delay)
        if self.bad_every and i % self.bad_every == 0:
            return None
        if self.bad_every and i % self.bad_every == 1:
            raise VideoDecodeError(f"clip_{i}.mp4", "moov atom not found")
        start, stride = (i * 7) % self.vocab, 1 + i % 3
        return {"tokens": (start + stride * torch.arange(self.seq)) % self.vocab}


def build(init_seed: int = 0, dropout: float = 0.0) -> TinyLM:
    torch.manual_seed(init_seed)
    return TinyLM(TinyConfig(dropout=dropout))


def make_config(out: str | Path, **changes) -> TrainConfig:
    """The script's training config (tests build the same one in-process)."""
    base = dict(
        steps=12,
        batch_size=8,
        lr=3e-3,
        warmup_steps=3,
        keep_last=0,
        log_every=1,
        out_dir=str(out),
        device="cpu",
        tensorboard=False,
    )
    return TrainConfig(**{**base, **changes})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--result", default=None)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--save-every", type=int, default=0)
    p.add_argument("--keep-last", type=int, default=0)
    p.add_argument("--ema", type=float, default=None)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--delay", type=float, default=0.0, help="seconds per data item")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--resume-after", type=int, default=None, help="split the run here")
    p.add_argument("--bf16-check", action="store_true")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    cfg = make_config(
        args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        ema_decay=args.ema,
        save_every=args.save_every,
        keep_last=args.keep_last,
        resume=args.resume,
    )
    data = ToySequences(n=64, delay=args.delay)
    trainer = Trainer(build(0, args.dropout), data, cfg)
    result = trainer.fit(until_step=args.resume_after)
    history = list(result.history)
    interrupted = result.interrupted
    if args.resume_after is not None and not interrupted:
        # continue in a new trainer from the checkpoint, with differently initialised weights
        trainer = Trainer(build(123, args.dropout), data, cfg.replace(resume=True))
        result = trainer.fit()
        history += result.history
        interrupted = result.interrupted
    out = {
        "world_size": trainer.env.world_size,
        "steps": [r["step"] for r in history],
        "losses": [r["loss"] for r in history],
        "step": result.step,
        "interrupted": interrupted,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
    }
    if args.bf16_check:
        bf16 = Trainer(
            build(0),
            data,
            cfg.replace(
                steps=2, precision="bf16", out_dir=str(Path(args.out) / "bf16"), resume=False
            ),
        ).fit()
        out["bf16_losses"] = [r["loss"] for r in bf16.history]
    if args.result and trainer.is_main:
        Path(args.result).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KinemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
