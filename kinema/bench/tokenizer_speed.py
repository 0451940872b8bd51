"""Tokenizer encode + decode throughput (frames/s) and the paper preset's size.

One 17-frame clip at a time (batch 1) at 64x64 and 128x128. Two ways of running bf16 are
compared side by side (A B A B ..., median of the repeats):
  autocast  fp32 weights under ``torch.autocast(bfloat16)`` and ``no_grad``
  bf16      weights and input cast to bfloat16 once, ``inference_mode``
plus fp32 as the baseline. Parameter counts of every preset come from the meta device (no
memory is allocated), so the 243M-parameter ``magvit2-paper`` preset costs nothing.

Usage:
    kinema bench tokenizer-speed [--tokenizer tokenizer-cpu-fsq] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from kinema.bench.common import emit, header, parse_args
from kinema.tokenizer import PRESETS, Tokenizer, preset


def param_counts() -> list[tuple[str, int, int, int]]:
    """(preset, total, encoder + quantizer + decoder, discriminator) on the meta device."""
    rows = []
    for name in PRESETS:
        with torch.device("meta"):
            tok = Tokenizer(preset(name))
        total = sum(p.numel() for p in tok.parameters())
        disc = sum(p.numel() for p in tok.discriminator.parameters()) if tok.discriminator else 0
        rows.append((name, total, total - disc, disc))
    return rows


def time_once(tok: Tokenizer, video: torch.Tensor, mode: str) -> float:
    start = time.perf_counter()
    if mode == "autocast":
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
            tok.decode(tok.encode(video))
    else:
        with torch.inference_mode():
            tok.decode(tok.encode(video))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", default="tokenizer-cpu-fsq")
    args = parse_args(ap, argv)
    emit(header(f"tokenizer {args.tokenizer}"))
    emit("\n| preset | parameters | encoder+quantizer+decoder | discriminator |")
    emit("|---|---|---|---|")
    for name, total, ae, disc in param_counts():
        emit(f"| {name} | {total / 1e6:.2f}M | {ae / 1e6:.2f}M | {disc / 1e6:.2f}M |")

    models = {
        "fp32": Tokenizer.from_pretrained(args.tokenizer).eval(),
        "autocast": Tokenizer.from_pretrained(args.tokenizer).eval(),
        "bf16": Tokenizer.from_pretrained(args.tokenizer).eval().to(torch.bfloat16),
    }
    emit("\n| clip | fp32 frames/s | bf16 autocast frames/s | bf16 weights frames/s |")
    emit("|---|---|---|---|")
    for size in (64, 128):
        gen = torch.Generator().manual_seed(0)
        video = torch.rand(1, 3, 17, size, size, generator=gen) * 2 - 1
        inputs = {"fp32": video, "autocast": video, "bf16": video.to(torch.bfloat16)}
        times: dict[str, list[float]] = {m: [] for m in models}
        for m in models:  # warm-up
            time_once(models[m], inputs[m], m)
        for _ in range(args.repeats):
            for m in models:
                times[m].append(time_once(models[m], inputs[m], m))
        fps = {m: 17 / statistics.median(t) for m, t in times.items()}
        emit(
            f"| 17x{size}x{size} | {fps['fp32']:.1f} | {fps['autocast']:.1f} | {fps['bf16']:.1f} |"
        )


if __name__ == "__main__":
    main()
