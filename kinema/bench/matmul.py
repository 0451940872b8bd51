"""matmul: what this machine's linear layers can do, fp32 vs bf16, plain vs packed.

The two facts every other benchmark rests on: whether bf16 is native here (AMX /
AVX512-BF16: much faster than fp32) or emulated (much slower: ``precision="auto"`` picks
fp32), and how far the plain ``nn.Linear`` at decode sizes (a few rows) is from the packed
oneDNN kernel of :func:`kinema.nn.packed.packed_linears`. Shapes: a token LM's 64K-row
output head (384 wide) at 1 and 16 rows, a transformer MLP matrix (1536 x 384) at 64 and
1,024 rows. Figures are GFLOP/s (2 x rows x in x out per call), the median of interleaved
repeats; a bf16 row is skipped where bf16 is emulated unless ``--bf16`` is given.

Usage:
    kinema bench matmul [--repeats 5] [--threads N] [--bf16]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from kinema.bench.common import emit, header, parse_args, time_interleaved
from kinema.nn.packed import packed_linears
from kinema.nn.precision import bf16_native

SHAPES = (  # (name, rows, in, out)
    ("64K head, 1 row (NTP step)", 1, 384, 64_000),
    ("64K head, 16 rows (NBP step)", 16, 384, 64_000),
    ("MLP 384->1536, 64 rows", 64, 384, 1536),
    ("MLP 384->1536, 1024 rows", 1024, 384, 1536),
)


@torch.inference_mode()
def gflops(rows: int, d_in: int, d_out: int, dtype: torch.dtype, repeats: int) -> dict:
    """GFLOP/s of one linear, plain and packed."""
    torch.manual_seed(0)
    layer = nn.Linear(d_in, d_out, bias=False).to(dtype)
    x = torch.randn(rows, d_in, dtype=dtype)
    calls = max(1, int(2e8 // (rows * d_in * d_out)))  # ~0.2-0.4 GFLOP per timed run

    def run() -> None:
        for _ in range(calls):
            layer(x)

    plain = time_interleaved({"plain": run}, repeats)["plain"]
    with packed_linears(layer, rows_hint=rows) as n:
        packed = time_interleaved({"packed": run}, repeats)["packed"] if n else None
    work = 2 * rows * d_in * d_out * calls / 1e9
    return {"plain": work / plain, "packed": None if packed is None else work / packed}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bf16", action="store_true", help="time bf16 even where it is emulated")
    args = parse_args(ap, argv)
    dtypes = {"fp32": torch.float32}
    if bf16_native("cpu") or args.bf16:
        dtypes["bf16"] = torch.bfloat16
    emit(header("nn.Linear GFLOP/s, plain vs packed (oneDNN)"))
    emit("\n| shape | dtype | plain GFLOP/s | packed GFLOP/s | packed vs plain |")
    emit("|---|---|---|---|---|")
    for name, rows, d_in, d_out in SHAPES:
        for dname, dtype in dtypes.items():
            r = gflops(rows, d_in, d_out, dtype, args.repeats)
            packed = "-" if r["packed"] is None else f"{r['packed']:.1f}"
            ratio = "-" if r["packed"] is None else f"{r['packed'] / r['plain']:.2f}x"
            emit(f"| {name} | {dname} | {r['plain']:.1f} | {packed} | {ratio} |")
    if "bf16" not in dtypes:
        emit("\nbf16 rows skipped: bf16 is emulated on this CPU (--bf16 times them anyway)")


if __name__ == "__main__":
    main()
