"""Per-task checks of a multitask (VideoPoet) token LM on held-out physics clips.

The clips are :class:`~kinema.data.physics.PhysicsDataset` items of seed
:data:`~kinema.eval.physics_eval.EVAL_SEED` (training uses seed 0) with their synthetic
sound, at the model's clip size. Every task the model has is run through
:func:`kinema.sample.extend.chain` and scored against what the clip itself gives, next to a
ceiling (what the tokenizer or codec alone achieves) and, where a score has one, chance (the
same score against another clip of the set):

- ``continuation``: velocity error of the generated frames (the physics benchmark,
  :func:`~kinema.eval.physics_eval.evaluate_physics_model`, alpha detector).
- ``t2v``: prompt adherence (ball colour and initial direction) to the clip's caption.
- ``inpaint`` / ``outpaint``: PSNR inside and outside the hidden region (the task's default
  mask: the central half / a quarter-wide border, in latent cells mapped to pixels).
- ``stylize:edges``: edge F1 between the output's edges and the control (the clip's edges),
  1-pixel tolerance.
- ``v2a``: click-timing error (mean |onset - impact time| over matched pairs, 50 ms
  tolerance) and the counts of matched, missed and extra clicks.
- super-resolution (with ``sr_model``): PSNR against the clip at the high size of the SR
  cascade's output and of bicubic upsampling of (a) the clip rendered at the low size and
  (b) the low-res tokenizer's reconstruction of it: what the SR model is given, the
  like-for-like baseline of a cascade after a token generator.
- long video (with ``long_times``): repeated extension from the clip; ball radius and
  colour in the first and the last clip-length of frames.

>>> results = evaluate_multitask("runs/mt/model", n=32, sr_model="runs/sr/model")
>>> print(results.markdown())
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from kinema.data.physics import PhysicsDataset
from kinema.data.physics_audio import PhysicsAudioVisualDataset
from kinema.errors import KinemaError
from kinema.eval.physics import ball_weights
from kinema.eval.physics_eval import DT, EVAL_SEED
from kinema.utils.jsonable import jsonable

if TYPE_CHECKING:
    from kinema.audio.metrics import ClickTally

log = logging.getLogger(__name__)

# the tasks scored here besides stylize:CONTROL (i2v, t2i, a2v, unconditional: not scored)
SCORED = ("continuation", "t2v", "inpaint", "outpaint", "v2a")
EDGE_TOLERANCE = 1  # pixels an edge may be off and still match
LONG_BALL_WEIGHT = 0.5  # alpha weight above which a pixel counts for the ball's colour


@dataclass
class TaskScore:
    """One measured figure: ``model`` (the task's output), ``ceiling`` (the tokenizer's or
    codec's reconstruction of the truth, None where it does not apply), ``chance`` (another
    clip's truth, None where it does not apply), over ``n`` clips."""

    task: str
    metric: str
    model: float
    ceiling: float | None = None
    chance: float | None = None
    n: int = 0


@dataclass
class MultitaskResults:
    """Every :class:`TaskScore` of a run and what was run (``source``)."""

    scores: list[TaskScore]
    source: dict = field(default_factory=dict)
    metric: str = "multitask"

    def to_dict(self) -> dict:
        return jsonable(asdict(self))

    def markdown(self) -> str:
        def num(x: float | None) -> str:
            return "-" if x is None else f"{x:.4g}"

        lines = [
            "| task | metric | model | ceiling | chance | clips |",
            "|---|---|---|---|---|---|",
        ]
        for s in self.scores:
            lines.append(
                f"| {s.task} | {s.metric} | {num(s.model)} | {num(s.ceiling)} | "
                f"{num(s.chance)} | {s.n} |"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------- metrics
def latent_to_pixel_mask(
    hidden: torch.Tensor, temporal: int, spatial: int, frames: int
) -> torch.Tensor:
    """``(..., t, h, w)`` latent-cell mask -> ``(..., frames, h * spatial, w * spatial)``
    pixel mask of a causal tokenizer: latent frame 0 is video frame 0, latent frame
    ``k >= 1`` covers frames ``1 + temporal * (k - 1) .. temporal * k``."""
    f = torch.arange(frames, device=hidden.device)
    t_index = torch.where(f == 0, 0, 1 + (f - 1).clamp(min=0) // temporal)
    out = hidden.index_select(-3, t_index)
    return out.repeat_interleave(spatial, dim=-2).repeat_interleave(spatial, dim=-1)


def region_mse(x: torch.Tensor, y: torch.Tensor, region: torch.Tensor) -> tuple[float, int]:
    """Summed squared error of ``x``, ``y (B, C, T, H, W)`` over the pixels where ``region
    (B, T, H, W)`` is True (all channels), and the number of values summed."""
    sq = (x.double() - y.double()).pow(2).sum(1)  # (B, T, H, W)
    return float(sq[region].sum()), int(region.sum()) * x.shape[1]


def psnr_of(sse: float, count: int, data_range: float = 2.0) -> float:
    """PSNR (dB) of a summed squared error over ``count`` values in [-1, 1]."""
    if count == 0:
        return math.nan
    mse = sse / count
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


def edge_map(video: torch.Tensor) -> torch.Tensor:
    """``(B, 3, T, H, W)`` in [-1, 1] -> bool ``(B, T, H, W)``: the ``edges`` control."""
    from kinema.lm.controls import edges

    return edges(video.float())[:, 0] > 0


def edge_counts(pred: torch.Tensor, ref: torch.Tensor, tolerance: int = EDGE_TOLERANCE):
    """``(true positives of pred, |pred|, true positives of ref, |ref|)`` of bool edge maps
    ``(B, T, H, W)``: a predicted edge pixel counts if a reference edge lies within
    ``tolerance`` pixels (and vice versa)."""

    def grow(e: torch.Tensor) -> torch.Tensor:
        if not tolerance:
            return e
        k = 2 * tolerance + 1
        flat = rearrange(e.float(), "b t h w -> (b t) 1 h w")
        grown = F.max_pool2d(flat, k, stride=1, padding=tolerance) > 0
        return rearrange(grown, "(b t) 1 h w -> b t h w", b=e.shape[0])

    return (
        int((pred & grow(ref)).sum()),
        int(pred.sum()),
        int((ref & grow(pred)).sum()),
        int(ref.sum()),
    )


def f1_of(counts: Sequence[int]) -> float:
    """F1 from summed :func:`edge_counts` (precision = tp_pred / |pred|, recall = tp_ref /
    |ref|); 0 when either map is empty."""
    tp_p, n_p, tp_r, n_r = counts
    if not n_p or not n_r:
        return 0.0
    p, r = tp_p / n_p, tp_r / n_r
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def ball_stats(
    frames: np.ndarray, color: str = "red", whole: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame of uint8 ``(T, H, W, 3)``: the ball's radius in pixels from its detected
    area (sum of alpha weights, ``sqrt(area / pi)``; NaN where not seen) ``(T,)`` and the
    mean RGB of its confident pixels (weight >= 0.5) ``(T, 3)`` (NaN where none). With
    ``whole`` also NaN where the ball touches the frame's border (partly outside the view, so
    its visible area says nothing about its size)."""
    w = ball_weights(frames, color, "alpha")  # (T, H, W)
    area = w.sum((1, 2))
    seen = area > 0
    if whole:
        edge = np.ones(w.shape[1:], dtype=bool)
        edge[1:-1, 1:-1] = False
        seen &= ~(w[:, edge] > 0).any(-1)
    radius = np.where(seen, np.sqrt(area / np.pi), np.nan)
    core = (w >= LONG_BALL_WEIGHT) & seen[:, None, None]
    counts = core.sum((1, 2))
    rgb = np.full((len(frames), 3), np.nan)
    for i in np.flatnonzero(counts):
        rgb[i] = frames[i][core[i]].astype(np.float64).mean(0)
    return radius, rgb


def click_scores(
    task: str,
    model: ClickTally,
    ceiling: ClickTally | None = None,
    chance: ClickTally | None = None,
    n: int = 0,
) -> list[TaskScore]:
    """The click rows of :class:`~kinema.audio.metrics.ClickTally` totals: timing error of
    the matched clicks (ms), then the matched, missed and extra counts."""

    def of(tally: ClickTally | None, what: str) -> float | None:
        if tally is None:
            return None
        return tally.mean_ms if what == "timing" else float(getattr(tally, what))

    metrics = {
        "timing": "click-timing error of matched clicks (ms)",
        **{w: f"clicks {w} (count)" for w in ("matched", "missed", "extra")},
    }
    return [
        TaskScore(task, label, of(model, w), ceiling=of(ceiling, w), chance=of(chance, w), n=n)
        for w, label in metrics.items()
    ]


# ---------------------------------------------------------------------- the run
@dataclass
class _Clips:
    """A batch of held-out clips: ``video (B, 3, T, H, W)`` in [-1, 1], their captions,
    sound ``(B, 1, S)``, impact times (NaN padded) ``(B, E)`` and ball-0 radii (world)."""

    video: torch.Tensor
    captions: list[str]
    audio: torch.Tensor
    events: torch.Tensor
    start: int


def _batches(data: PhysicsAudioVisualDataset, n: int, batch: int):
    for start in range(0, n, batch):
        items = [data[i] for i in range(start, min(n, start + batch))]
        yield _Clips(
            torch.stack([it["video"] for it in items]),
            [it["caption"] for it in items],
            torch.stack([it["audio"] for it in items]),
            torch.stack([it["events"] for it in items]),
            start,
        )


def evaluate_multitask(
    model: str | os.PathLike,
    *,
    tasks: Sequence[str] | None = None,
    n: int = 32,
    batch: int = 8,
    seed: int = EVAL_SEED,
    sr_model: str | os.PathLike | None = None,
    long_times: int = 0,
    long_n: int = 8,
    long_scenario: str = "bounce",
    on_step: Callable[[str], None] | None = None,
    **sampling,
) -> MultitaskResults:
    """Score a multitask token LM folder per task on ``n`` held-out clips (all scenarios).

    tasks: which of the model's tasks to run (default: every task this module scores).
    sr_model: a super-resolution folder (:func:`kinema.api.load_superres`); its input is
        each clip rendered at the LM's frame size divided by the SR factor, its output is
        compared with the clip at the LM's size.
    long_times: extension rounds of the long-video check (0: skip), on ``long_n`` clips of
        ``long_scenario`` (:mod:`kinema.eval.long_video`).
    sampling: ``temperature`` / ``top_k`` / ``top_p`` / ``cfg_scale`` for every task.
    on_step: called with a task name before it runs (progress).
    """
    from kinema.api import load_audio_codec
    from kinema.sample.video import load_lm, model_dtype

    if not 1 <= n <= 10_000 or not 1 <= batch <= 1024 or not 0 <= long_times <= 1000:
        raise KinemaError(
            f"n must be in [1, 10000], batch in [1, 1024], long_times in [0, 1000]; got "
            f"{n}, {batch}, {long_times}"
        )
    net, tok = load_lm(model)
    c = net.config
    if c.vocabulary is None:
        raise KinemaError(f"'{model}' is not a multitask token LM (no task vocabulary)")
    have = list(c.vocabulary.tasks)
    scored = [t for t in have if t in SCORED or t.startswith("stylize:")]
    chosen = list(tasks) if tasks is not None else scored
    bad = [t for t in chosen if t not in scored]
    if bad:
        raise KinemaError(f"tasks {bad} cannot be scored here; this model's: {', '.join(scored)}")
    frames = 1 + tok.config.temporal_compression * (c.latent_shape[0] - 1)
    size = tok.config.spatial_compression * c.latent_shape[1]
    physics = PhysicsDataset("all", "id", n, size, frames, DT, 1, seed)
    data = PhysicsAudioVisualDataset(physics)
    run = _Run(net, tok, c, frames, {"dtype": model_dtype(net), **sampling}, seed)
    if "v2a" in chosen:
        run.codec = load_audio_codec(model)
    scores: list[TaskScore] = []
    batches = list(_batches(data, n, batch))  # rendered once, shared by the tasks
    for task in chosen:
        if on_step is not None:
            on_step(task)
        if task == "continuation":
            scores += run.continuation(n, batch)
            continue
        scores += run.score(task, batches, n)
    if sr_model is not None:
        if on_step is not None:
            on_step("super-resolution")
        scores += run.superres(sr_model, batches, size, n)
    if long_times:
        if on_step is not None:
            on_step("long video")
        scores += run.long_video(long_n, long_times, long_scenario)
    source = {
        "model": str(model),
        "tasks": chosen,
        "n": n,
        "seed": seed,
        "frames": frames,
        "resolution": size,
        "sr_model": None if sr_model is None else str(sr_model),
        "long_times": long_times,
        "long_n": long_n if long_times else 0,
        "long_scenario": long_scenario if long_times else None,
        "sampling": jsonable(sampling),
    }
    return MultitaskResults(scores, source)


class _Run:
    """The model, tokenizer and options of one :func:`evaluate_multitask` call."""

    def __init__(self, net, tok, config, frames: int, options: dict, seed: int) -> None:
        self.net, self.tok, self.c, self.frames = net, tok, config, frames
        self.options, self.seed = options, seed
        self.codec = None

    # -------------------------------------------------------------- helpers
    def _chain(self, steps: list, clips: _Clips, text: bool) -> object:
        from kinema.sample.extend import chain
        from kinema.sample.video import lm_conditions

        cond = dict(self.options)
        if text and self.c.text_dim:
            cond.update(lm_conditions(self.c, len(clips.captions), clips.captions, None))
        return chain(
            self.net, self.tok, steps, video=clips.video, batch_size=len(clips.captions),
            seed=self.seed + clips.start, **cond,
        )  # fmt: skip

    # -------------------------------------------------------------- tasks
    def continuation(self, n: int, batch: int) -> list[TaskScore]:
        from kinema.eval.physics_eval import evaluate_physics_model

        res = evaluate_physics_model(
            (self.net, self.tok), scenario="all", split="id", n=n, batch=batch,
            seed=self.seed, detectors=("alpha",),
            **{k: v for k, v in self.options.items() if k != "dtype"},
        )  # fmt: skip
        out = []
        for row in res.rows:
            out.append(
                TaskScore(
                    "continuation",
                    f"velocity error {row.scenario} (units/s)",
                    row.error,
                    ceiling=row.floor,
                    n=row.clips,
                )
            )
        return out

    def score(self, task: str, batches: list[_Clips], n: int) -> list[TaskScore]:
        if task == "t2v":
            return self._t2v(batches, n)
        if task in ("inpaint", "outpaint"):
            return self._masked(task, batches, n)
        if task.startswith("stylize:"):
            return self._stylize(task, batches, n)
        return self._v2a(batches, n)

    def _t2v(self, batches: list[_Clips], n: int) -> list[TaskScore]:
        from kinema.eval.adherence import score_pair
        from kinema.io import to_uint8

        hits = {"colour": [], "direction": []}
        truth = {"colour": [], "direction": []}
        for clips in batches:
            state = self._chain(["t2v"], clips, text=True)
            for video, gt, cap in zip(state.video, clips.video, clips.captions, strict=True):
                for store, v in ((hits, video), (truth, gt)):
                    item = score_pair(cap, to_uint8(v))
                    if item.color_match is not None:
                        store["colour"].append(item.color_match)
                    if item.direction_match is not None:
                        store["direction"].append(item.direction_match)
        return [
            TaskScore(
                "t2v",
                f"{what} adherence (fraction)",
                float(np.mean(hits[what])) if hits[what] else math.nan,
                ceiling=float(np.mean(truth[what])) if truth[what] else None,
                n=len(hits[what]),
            )
            for what in ("colour", "direction")
        ]

    def _masked(self, task: str, batches: list[_Clips], n: int) -> list[TaskScore]:
        from kinema.lm.tasks import default_mask

        cfg = self.tok.config
        hidden = default_mask(task, self.c.latent_shape)
        pixels = latent_to_pixel_mask(
            hidden, cfg.temporal_compression, cfg.spatial_compression, self.frames
        )
        sums = {k: [0.0, 0] for k in ("in", "out", "in_rec", "out_rec")}
        for clips in batches:
            state = self._chain([task], clips, text=False)
            region = pixels.expand(len(clips.captions), *pixels.shape)
            rec = reconstruct(self.tok, clips.video)
            for key, out, mask in (
                ("in", state.video.cpu(), region),
                ("out", state.video.cpu(), ~region),
                ("in_rec", rec, region),
                ("out_rec", rec, ~region),
            ):
                sse, count = region_mse(out, clips.video, mask)
                sums[key][0] += sse
                sums[key][1] += count
        return [
            TaskScore(
                task,
                f"PSNR {where} the mask (dB)",
                psnr_of(*sums[key]),
                ceiling=psnr_of(*sums[f"{key}_rec"]),
                n=n,
            )
            for key, where in (("in", "inside"), ("out", "outside"))
        ]

    def _stylize(self, task: str, batches: list[_Clips], n: int) -> list[TaskScore]:
        totals = {k: np.zeros(4, dtype=np.int64) for k in ("model", "rec", "chance")}
        for clips in batches:
            state = self._chain([task], clips, text=True)
            ref = edge_map(clips.video)
            other = edge_map(clips.video.roll(1, dims=0))
            rec = edge_map(reconstruct(self.tok, clips.video))
            for key, pred in (("model", edge_map(state.video.cpu())), ("rec", rec)):
                totals[key] += edge_counts(pred, ref)
            totals["chance"] += edge_counts(other, ref)
        return [
            TaskScore(
                task,
                f"edge F1 vs the control ({EDGE_TOLERANCE} px tolerance)",
                f1_of(totals["model"]),
                ceiling=f1_of(totals["rec"]),
                chance=f1_of(totals["chance"]),
                n=n,
            )
        ]

    def _v2a(self, batches: list[_Clips], n: int) -> list[TaskScore]:
        from kinema.audio.metrics import ClickTally, click_timing_error

        codec = self.codec
        sr = codec.config.sample_rate
        span = self.c.audio_frames * codec.hop_length / sr  # seconds of audio generated
        tally = {k: ClickTally() for k in ("model", "rec", "chance")}
        for clips in batches:
            state = self._chain(["v2a"], clips, text=False)
            param = next(codec.parameters())
            gen = codec.tokens_to_wave(state.audio.to(param.device)).float().cpu()
            rec = (
                codec.tokens_to_wave(
                    codec.clip_tokens(clips.audio.to(param.device), self.c.audio_frames)
                )
                .float()
                .cpu()
            )
            other = clips.audio.roll(1, dims=0)
            events = clips.events.numpy()
            for b in range(len(clips.captions)):
                true = events[b][events[b] < span]
                for key, wave in (
                    ("model", gen[b, 0]),
                    ("rec", rec[b, 0]),
                    ("chance", other[b, 0]),
                ):
                    tally[key].add(click_timing_error(wave[: round(span * sr)], true, sr))
        return click_scores("v2a", tally["model"], tally["rec"], tally["chance"], n)

    def superres(self, sr_model, batches: list[_Clips], high: int, n: int) -> list[TaskScore]:
        from kinema.api import load_superres
        from kinema.io import to_tensor
        from kinema.sample.superres import upscale_video

        sr, lr_tok, hr_tok = load_superres(sr_model)
        scale = (
            sr.config.scale * hr_tok.config.spatial_compression // lr_tok.config.spatial_compression
        )
        sr_frames = 1 + lr_tok.config.temporal_compression * (sr.config.lr_shape[0] - 1)
        if high % scale or sr_frames != self.frames:
            raise KinemaError(
                f"the SR model upscales {sr_frames}-frame clips {scale}x; the LM makes "
                f"{self.frames}-frame clips of {high} pixels"
            )
        low = PhysicsDataset("all", "id", n, high // scale, self.frames, DT, 1, self.seed)
        sums = {k: [0.0, 0] for k in ("sr", "bicubic", "bicubic_tok", "rec")}
        for clips in batches:
            hr, b = clips.video, clips.video.shape[0]  # (B, 3, T, H, W)
            idx = range(clips.start, clips.start + b)
            lr_frames = np.concatenate([low.frames(i)[0] for i in idx])  # uint8 (B*T, h, w, 3)
            # one call: upscale_video cuts a video into clips of T frames and upscales them
            # as one batch, so the B clips laid end to end come back as B clips
            up = upscale_video(sr, lr_tok, hr_tok, lr_frames, seed=self.seed + clips.start)
            up = rearrange(to_tensor(up), "c (b t) h w -> b c t h w", b=b)
            lr = rearrange(to_tensor(lr_frames), "c (b t) h w -> b c t h w", b=b)
            # bicubic of the exact low-res pixels, and of what the SR model is given: the
            # low-res tokens (decoded), the input of a cascade after a token generator
            bic, bic_tok = (bicubic(x, scale) for x in (lr, reconstruct(lr_tok, lr)))
            rec = reconstruct(hr_tok, hr)
            everywhere = torch.ones(hr.shape[0], *hr.shape[2:], dtype=torch.bool)
            pairs = (("sr", up), ("bicubic", bic), ("bicubic_tok", bic_tok), ("rec", rec))
            for key, x in pairs:
                sse, count = region_mse(x, hr, everywhere)
                sums[key][0] += sse
                sums[key][1] += count
        task = f"super-resolution {scale}x"
        sr_psnr, ceiling = psnr_of(*sums["sr"]), psnr_of(*sums["rec"])
        return [
            TaskScore(
                task, f"PSNR vs the {high}x{high} clip (dB): SR / bicubic of the low-res pixels",
                sr_psnr, ceiling=ceiling, chance=psnr_of(*sums["bicubic"]), n=n,
            ),
            TaskScore(
                task, "PSNR (dB): SR / bicubic of the low-res tokens' decoding (the SR's input)",
                sr_psnr, ceiling=ceiling, chance=psnr_of(*sums["bicubic_tok"]), n=n,
            ),
        ]  # fmt: skip

    def long_video(self, n: int, times: int, scenario: str) -> list[TaskScore]:
        from kinema.eval.long_video import long_video_check

        return long_video_check(
            self.net, self.tok, times=times, n=n, batch=n, scenario=scenario, seed=self.seed,
            **self.options,
        )  # fmt: skip


def _nanmean(x, axis: int | None = None):
    """Mean over the finite entries (NaN where there are none), without numpy's warning."""
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    count = ok.sum(axis)
    total = np.where(ok, x, 0.0).sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return float(out) if out.ndim == 0 else out


def bicubic(video: torch.Tensor, scale: int) -> torch.Tensor:
    """``(B, 3, T, h, w)`` in [-1, 1] -> ``(B, 3, T, scale*h, scale*w)``, per frame, clamped."""
    b = video.shape[0]
    frames = rearrange(video, "b c t h w -> (b t) c h w")
    up = F.interpolate(frames, scale_factor=scale, mode="bicubic", align_corners=False)
    return rearrange(up.clamp(-1, 1), "(b t) c h w -> b c t h w", b=b)


def reconstruct(tok, video: torch.Tensor) -> torch.Tensor:
    """:meth:`Tokenizer.reconstruct <kinema.tokenizer.Tokenizer.reconstruct>` of ``video
    (B, 3, T, H, W)`` on the tokenizer's device and dtype, back as fp32 on the CPU: the best
    any model decoding through it can do."""
    param = next(tok.parameters())
    return tok.reconstruct(video.to(param.device, param.dtype)).float().cpu()


__all__ = [
    "MultitaskResults",
    "TaskScore",
    "ball_stats",
    "edge_counts",
    "edge_map",
    "evaluate_multitask",
    "f1_of",
    "latent_to_pixel_mask",
    "psnr_of",
    "region_mse",
]
