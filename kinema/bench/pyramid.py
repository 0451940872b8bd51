"""pyramid-sample (BENCHMARKS.md): one latent frame, 3-stage pyramid vs single resolution.

The same PyramidDiT weights (the ``small`` preset widths, no text) sample one 64 x 64
latent frame (8 channels, patch 2: 1,024 tokens at full resolution, no history) through
the same Euler sampler (:func:`kinema.sample.flow.sample_pyramid`):
  pyramid   K = 3 schedule, [n, n, n] steps at 16x16, 32x32, 64x64 latents
  single    K = 1 schedule, 3n steps at 64x64 (plain rectified flow)
The paper says the pyramid costs "almost 1/K"; kinema aims for >= 2.3x. The two run
A B A B ... ``--repeats`` times after a warm-up; the figure is the median wall time. bf16
rows keep the weights in bf16 (cast once, no autocast; packed for oneDNN, as
:func:`kinema.sample.flow.generate_latents` does). ``--compile`` adds rows for the same DiT
under :class:`kinema.nn.compiled.InferenceCompiled` (fused kernels, frozen weights; the
warm-up compiles each stage's shape once, not timed).

Usage:
    kinema bench pyramid [--n 10] [--dtypes fp32,bf16] [--repeats 5] [--compile]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from torch import nn

from kinema.bench.common import default_dtypes, emit, header, parse_args, time_interleaved
from kinema.flow import PyramidDiT, PyramidSchedule, preset
from kinema.nn.compiled import InferenceCompiled
from kinema.nn.packed import packed_linears
from kinema.sample.decode import cast_parameters_
from kinema.sample.flow import sample_pyramid

RESOLUTION = 64


def model() -> PyramidDiT:
    torch.manual_seed(0)
    return PyramidDiT(preset("small", resolution=RESOLUTION, text_dim=0)).eval()


@torch.inference_mode()
def sample(
    dit: PyramidDiT,
    schedule: PyramidSchedule,
    steps: list[int],
    compiled: InferenceCompiled | None = None,
) -> torch.Tensor:
    """One ``(1, C, 64, 64)`` latent frame; ``compiled`` (of ``dit``) runs the steps if given."""
    shape = (1, dit.config.latent_channels, RESOLUTION, RESOLUTION)
    net = dit if compiled is None else compiled
    rows = (RESOLUTION // dit.config.patch_size) ** 2
    # eager: packed as sampling does; compiled: Inductor packs the frozen weights itself
    with packed_linears(dit if compiled is None else nn.Module(), rows_hint=rows):
        return sample_pyramid(
            lambda x, t, stage: net(x, t),
            shape,
            schedule,
            steps,
            generator=torch.Generator().manual_seed(0),
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10, help="Euler steps per pyramid stage")
    ap.add_argument(
        "--dtypes", default=default_dtypes(), help="default: bf16 too where it is native"
    )
    ap.add_argument("--compile", action="store_true", help="also time the compiled DiT")
    args = parse_args(ap, argv)
    dit = model()
    params = sum(p.numel() for p in dit.parameters()) / 1e6
    emit(header(f"one {RESOLUTION}x{RESOLUTION} latent frame, batch 1, {params:.1f}M DiT"))
    emit("\n| dtype | mode | pyramid 3 x [n] (s) | single 1 x [3n] (s) | n | speed-up |")
    emit("|---|---|---|---|---|---|")
    modes = ["eager", "compiled"] if args.compile else ["eager"]
    for dname in args.dtypes.split(","):
        cast_parameters_(dit, {"fp32": torch.float32, "bf16": torch.bfloat16}[dname])
        for mode in modes:
            torch.compiler.reset()  # the frozen graphs of the other dtype are stale
            compiled = InferenceCompiled(dit) if mode == "compiled" else None
            runs = {
                "pyramid": partial(
                    sample, dit, dit.schedule, [args.n] * dit.config.stages, compiled
                ),
                "single": partial(
                    sample, dit, PyramidSchedule(stages=1), [args.n * dit.config.stages], compiled
                ),
            }
            med = time_interleaved(runs, args.repeats)
            emit(
                f"| {dname} | {mode} | {med['pyramid']:.3f} | {med['single']:.3f} | {args.n} | "
                f"{med['single'] / med['pyramid']:.2f}x |",
            )


if __name__ == "__main__":
    main()
