"""Train-step throughput of the shared trainer on a ~50M-parameter transformer core.

Batch 16 x 320 tokens, AdamW, fp32 vs bf16 autocast, 1 process vs 2 processes (torchrun,
FSDP2, gloo on CPU / NCCL on GPU). Each configuration runs in a fresh process; the figure is
the median tokens/s over the timed steps (the first step, with its warm-up, is dropped).

Usage:
    kinema bench train-throughput                 # the whole matrix, prints a table
    kinema bench train-throughput --worker --precision bf16   # one run (torchrun-able)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from kinema.bench.common import emit
from kinema.modeling import ModelMixin
from kinema.nn import Transformer, TransformerConfig
from kinema.train import TrainConfig, Trainer


@dataclass
class CoreLMConfig:
    vocab: int = 8192
    seq_len: int = 320
    core: dict = field(default_factory=lambda: {"dim": 512, "n_layers": 12, "n_heads": 8})


class CoreLM(ModelMixin):
    """Embedding -> kinema.nn.Transformer (causal, 1D rotary) -> head; next-token loss."""

    config_class = CoreLMConfig

    def __init__(self, config: CoreLMConfig) -> None:
        super().__init__()
        self.config = config
        self.core = Transformer(TransformerConfig(**config.core, max_seq_len=config.seq_len))
        dim = self.core.config.dim
        self.embed = nn.Embedding(config.vocab, dim)
        self.head = nn.Linear(dim, config.vocab, bias=False)
        n = config.seq_len
        self.register_buffer("mask", torch.ones(n, n, dtype=torch.bool).tril(), persistent=False)
        self.register_buffer("pos", torch.arange(n, dtype=torch.float32), persistent=False)

    def fsdp_units(self) -> list[nn.Module]:
        return list(self.core.layers)

    def loss(self, batch: dict) -> torch.Tensor:
        tokens = batch["tokens"]  # (B, N + 1)
        x, y = tokens[:, :-1], tokens[:, 1:]
        n = x.shape[1]
        h = self.core(self.embed(x), self.pos[:n], mask=self.mask[:n, :n])
        return F.cross_entropy(self.head(h).flatten(0, 1).float(), y.flatten())

    def num_tokens(self, batch: dict) -> int:
        return batch["tokens"][:, 1:].numel()


class RandomTokens(Dataset):
    def __init__(self, vocab: int, seq_len: int, length: int = 100_000) -> None:
        self.vocab, self.seq_len, self.length = vocab, seq_len, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"tokens": torch.randint(self.vocab, (self.seq_len + 1,), generator=g)}


def worker(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model = CoreLM(CoreLMConfig())
    n_params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            steps=args.steps,
            batch_size=16,
            lr=3e-4,
            warmup_steps=0,
            precision=args.precision,
            out_dir=tmp,
            save_every=0,
            log_every=1,
            tensorboard=False,
            progress=False,
            keep_last=1,
        )
        trainer = Trainer(model, RandomTokens(8192, 320), cfg)
        res = trainer.fit(until_step=args.steps)
        rates = [row["tokens_per_s"] for row in res.history[1:]]
        if trainer.is_main:
            emit(
                json.dumps(
                    {
                        "params": n_params,
                        "tokens_per_s": statistics.median(rates),
                        "all": rates,
                        "world": int(os.environ.get("WORLD_SIZE", 1)),
                        "threads": torch.get_num_threads(),
                    }
                )
            )


def run(precision: str, nproc: int, steps: int) -> dict:
    base = [
        "-m",
        "kinema.bench.train_throughput",
        "--worker",
        "--precision",
        precision,
        "--steps",
        str(steps),
    ]
    env = dict(os.environ)
    if nproc == 1:
        cmd = [sys.executable, *base]
    else:
        threads = max(1, (os.cpu_count() or 2) // nproc)
        env["OMP_NUM_THREADS"] = str(threads)
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={nproc}",
            "--master_addr=127.0.0.1",
            "--master_port=29533",
            *base,
        ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return
    emit(
        f"# {time.strftime('%Y-%m-%d %H:%M')} | {platform.processor() or platform.machine()} "
        f"| {os.cpu_count()} CPUs | torch {torch.__version__}"
    )
    configs = [(p, n) for n in (1, 2) for p in ("fp32", "bf16")]
    results: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    params = 0
    for _ in range(args.rounds):  # interleaved rounds: A B C D A B C D
        for prec, nproc in configs:
            r = run(prec, nproc, args.steps)
            results[(prec, nproc)].append(r["tokens_per_s"])
            params = r["params"]
    emit(
        f"model: {params / 1e6:.1f}M parameters, batch 16 x 320 tokens, "
        f"{args.steps} steps per run (first dropped), {args.rounds} rounds"
    )
    emit("| precision | processes | tokens/s (median of rounds) | runs |")
    emit("|---|---|---|---|")
    for prec, nproc in configs:
        vals = results[(prec, nproc)]
        emit(
            f"| {prec} | {nproc} | {statistics.median(vals):.0f} | "
            f"{', '.join(f'{v:.0f}' for v in vals)} |"
        )


if __name__ == "__main__":
    main()
