"""generate-e2e (BENCHMARKS.md): `kinema.generate` per method, cold start and warm, with adherence.

For each method (pyramid-flow, nbp, ntp) with a model (the shipped default, or
``--model METHOD=PATH``), one video per prompt and seed with the default options of
:func:`kinema.generate`. The prompts are worded like the physics and shapes training
captions (:data:`kinema.gallery.PROMPTS`, or ``--prompts-file``, one per line).
  cold   the first call: loading the model (and the text encoder) + generating
  warm   median of the other calls, run method after method (A B C A B C ...)
Each video is checked with the adherence detector (:mod:`kinema.eval.adherence`): does
it show the prompt's colour, moving the prompt's way? A model that reads no text but
continues given frames (the physics token LMs) continues a held-out physics clip with the
prompt as its caption (:func:`kinema.gallery.prompt_clip`) and only its generated frames
are checked; prompts with no such clip (shapes) are sampled unconditionally and not
checked. Methods without a model get a "not shipped" row.

Usage:
    kinema bench generate [--prompts-file FILE] [--seeds 0,1] [--model METHOD=PATH ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kinema.bench.common import emit, header
from kinema.errors import KinemaError
from kinema.eval.adherence import score_pair
from kinema.gallery import PROMPTS, generate_one, method_models
from kinema.hub import DEFAULT_MODELS


@dataclass
class MethodRun:
    """Timings (s) and adherence of one method's calls."""

    model: str
    scored: bool = False  # some call's video was checked against its prompt
    cold: float = 0.0
    warm: list[float] = field(default_factory=list)
    shape: tuple[int, ...] = ()
    colour: list[bool] = field(default_factory=list)
    direction: list[bool] = field(default_factory=list)

    def check(self, prompt: str, video: np.ndarray, given: int | None) -> None:
        """Score the generated frames (after ``given`` ones) against the prompt; a video
        the prompt played no part in (``given`` None) is not scored."""
        self.shape = video.shape
        if given is None:
            return
        self.scored = True
        item = score_pair(prompt, video[given:])
        if item.color_match is not None:
            self.colour.append(item.color_match)
        if item.direction_match is not None:
            self.direction.append(item.direction_match)

    def row(self, method: str, calls: str) -> str:
        def share(matches: list[bool]) -> str:
            if not self.scored:
                return "- (unconditional)"
            return f"{sum(matches)}/{len(matches)}" if matches else "-"

        t, h, w, _ = self.shape
        warm = f"{statistics.median(self.warm):.2f}" if self.warm else "-"
        return (
            f"| {method} | {self.model} | {calls} | {self.cold:.2f} | {warm} | {t} ({w}x{h}) | "
            f"{share(self.colour)} | {share(self.direction)} |"
        )


def read_prompts(path: Path) -> list[str]:
    """Prompts of a file, one per line; blank lines and ``#`` comments skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise KinemaError(f"--prompts-file '{path}': cannot read it ({e})") from None
    prompts = [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]
    if not prompts:
        raise KinemaError(f"--prompts-file '{path}' has no prompt (one per line)")
    return prompts


def parse_seeds(spec: str) -> list[int]:
    """``"0,1"`` -> ``[0, 1]``."""
    try:
        seeds = [int(s) for s in spec.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise KinemaError(f"--seeds must be integers >= 0 like 0,1,2, got '{spec}'")
    return seeds


def main(argv: list[str] | None = None) -> None:
    import kinema.sample.video as sample_video

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts-file", type=Path, help="prompts, one per line")
    ap.add_argument("--seeds", default="0,1", help="sampling seeds, e.g. 0,1,2")
    ap.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="METHOD=PATH",
        help=f"model of a method ({', '.join(DEFAULT_MODELS)}); default: the shipped one",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        raise KinemaError(f"--threads must be at least 1, got {args.threads}")
    prompts = read_prompts(args.prompts_file) if args.prompts_file else list(PROMPTS)
    seeds = parse_seeds(args.seeds)
    models = method_models(args.model)
    if args.threads:
        torch.set_num_threads(args.threads)
    calls = [(p, s) for s in seeds for p in prompts]

    runs: dict[str, MethodRun] = {}
    loaded = {}
    for method, folder in models.items():
        if folder is None:
            continue
        sample_video._text_encoder.cache_clear()  # each cold start loads it, as a new process
        start = time.perf_counter()
        loaded[method] = sample_video.load_model(folder)
        video, given = generate_one(loaded[method], *calls[0])
        run = runs[method] = MethodRun(folder.name)
        run.cold = time.perf_counter() - start
        run.check(calls[0][0], video, given)
    for prompt, seed in calls[1:]:
        for method, model in loaded.items():
            start = time.perf_counter()
            video, given = generate_one(model, prompt, seed)
            runs[method].warm.append(time.perf_counter() - start)
            runs[method].check(prompt, video, given)

    emit(header(f"kinema.generate, default options, batch 1, {len(prompts)} prompts"))
    emit(
        "\n| method | model | prompts | cold s | warm s (median) | frames | colour ok | "
        "direction ok |"
    )
    emit("|---|---|---|---|---|---|---|---|")
    calls_text = f"{len(prompts)} x {len(seeds)} seeds"
    for method, name in DEFAULT_MODELS.items():
        if method in runs:
            emit(runs[method].row(method, calls_text))
        else:
            emit(f"| {method} | {name}: not shipped | - | - | - | - | - | - |")


if __name__ == "__main__":
    main()
