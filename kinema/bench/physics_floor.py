"""Physics dataset: write speed of `kinema data make` and the ground-truth floor of the
velocity metric, measured by re-detecting the red ball in the decoded mp4 files.

Usage: kinema bench physics-floor [--n 1000] [--resolutions 64 128]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kinema.bench.common import emit
from kinema.eval.physics import velocity_errors
from kinema.io import read_video


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--resolutions", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--quality", default="lossless")
    args = ap.parse_args(argv)
    emit(
        f"# {time.strftime('%Y-%m-%d %H:%M')} | {platform.processor() or platform.machine()} "
        f"| torch {torch.__version__} | threads {torch.get_num_threads()}"
    )
    emit(
        "| res | clips | quality | write s | scenario | alpha floor | threshold floor | intervals |"
    )
    emit("|---|---|---|---|---|---|---|---|")
    for res in args.resolutions:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "phys"
            t0 = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "kinema.cli",
                    "data",
                    "make",
                    "physics",
                    "--n",
                    str(args.n),
                    "--out",
                    str(out),
                    "--resolution",
                    str(res),
                    "--quality",
                    args.quality,
                ],
                check=True,
                capture_output=True,
            )
            wall = time.perf_counter() - t0
            errs: dict[str, dict[str, list]] = {}
            for line in (out / "meta.jsonl").read_text().splitlines():
                rec = json.loads(line)
                frames = read_video(out / rec["file"])
                pos = np.array(rec["positions"], dtype=float)[:, 0]
                for method in ("alpha", "threshold"):
                    e = velocity_errors(
                        frames,
                        pos,
                        rec["radii"][0],
                        method=method,
                        collision_time=rec["collision_time"],
                    )
                    errs.setdefault(rec["scenario"], {}).setdefault(method, []).append(e)
            for scen, by in errs.items():
                a, t = np.concatenate(by["alpha"]), np.concatenate(by["threshold"])
                emit(
                    f"| {res} | {args.n} | {args.quality} | {wall:.1f} | {scen} | "
                    f"{a.mean():.4f} | {t.mean():.4f} | {len(a)} |"
                )


if __name__ == "__main__":
    main()
