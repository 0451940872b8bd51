"""Long-video drift of a token LM: extend held-out physics clips many times and watch the ball.

VideoPoet makes long videos by repeated extension, each round conditioned on the last latent
frames (:func:`kinema.sample.extend.extend`); errors that compound show up as a ball that
shrinks, grows or changes colour. Any token LM that can continue a clip works: a multitask
model through its ``continuation`` task, a single-task one through its conditioning frames.

From each held-out clip (physics seed :data:`~kinema.eval.physics_eval.EVAL_SEED`)
``times`` rounds are generated; the red ball's radius (from its alpha-weighted area) and
colour are read per frame where the whole ball is in view
(:func:`kinema.eval.multitask.ball_stats`) and the last clip-length of frames, all
generated, is compared with the first, the given clip. The default scenario is ``bounce``,
a ball in a box: it stays in view, and its simulated truth of the whole length is the same
item rendered longer, so the ball's centre is also compared with the truth's. In the
paper's scenarios the ball leaves the view within a few clips: no truth, and a model asked
to continue them is asked for frames it never saw in training.

>>> results = evaluate_long_video("lm-physics-multitask", times=13, n=8)
"""

from __future__ import annotations

import os

import numpy as np
import torch

from kinema.data.physics import PhysicsDataset
from kinema.errors import KinemaError
from kinema.eval.multitask import MultitaskResults, TaskScore, _nanmean, ball_stats
from kinema.eval.physics import ball_weights, weighted_centroids
from kinema.eval.physics_eval import DT, EVAL_SEED
from kinema.utils.jsonable import jsonable


def drift_scores(
    videos: list[np.ndarray],
    clip: int,
    n: int | None = None,
    truths: list[np.ndarray] | None = None,
) -> list[TaskScore]:
    """The drift rows of uint8 videos ``(T, H, W, 3)`` whose first ``clip`` frames were given:
    the ball's radius and colour in the last ``clip`` frames against the first ``clip``,
    read only where the whole ball is in view (a ball leaving the frame is not shrinking).
    With ``truths`` (the true videos of the same length) also the mean distance in pixels
    between the generated and the true ball centre over the last ``clip`` frames."""
    rows: dict[str, list] = {k: [] for k in ("r0", "r1", "c0", "c1", "seen", "whole")}
    total = clip
    for video in videos:
        total = len(video)
        radius, rgb = ball_stats(video, whole=True)
        rows["r0"].append(_nanmean(radius[:clip]))
        rows["r1"].append(_nanmean(radius[-clip:]))
        rows["c0"].append(_nanmean(rgb[:clip], 0))
        rows["c1"].append(_nanmean(rgb[-clip:], 0))
        rows["seen"].append(float(np.isfinite(ball_stats(video)[0][-clip:]).mean()))
        rows["whole"].append(float(np.isfinite(radius[-clip:]).mean()))
    errors = []
    for video, truth in zip(videos, truths or [], strict=False):
        centre = weighted_centroids(ball_weights(video[-clip:]))
        true = weighted_centroids(ball_weights(truth[-clip:]))
        errors.append(_nanmean(np.linalg.norm(centre - true, axis=-1)))
    r0, r1 = np.array(rows["r0"]), np.array(rows["r1"])
    c0, c1 = np.array(rows["c0"]), np.array(rows["c1"])
    name = f"long video ({total} frames = {total / clip:.1f}x the clip)"
    count = len(videos) if n is None else n

    def score(metric: str, value, ceiling=None) -> TaskScore:
        return TaskScore(name, metric, _nanmean(value), ceiling, n=count)

    out = [
        score("ball radius, last clip (px; ceiling: the given clip's)", r1, _nanmean(r0)),
        score("ball radius, last / first clip (ratio)", r1 / r0),
        score("ball colour, last vs first clip (RGB distance)", np.linalg.norm(c1 - c0, axis=-1)),
        score("frames of the last clip with the ball seen (fraction)", rows["seen"]),
        score("frames of the last clip with the whole ball seen (fraction)", rows["whole"]),
    ]
    if truths is not None:
        out.append(score("ball centre vs the simulated truth, last clip (px)", errors))
    return out


@torch.no_grad()
def extend_clips(
    net, tok, video: torch.Tensor, times: int, seed: int, **sampling
) -> list[np.ndarray]:
    """``times`` extension rounds of ``video (B, 3, T, H, W)`` in [-1, 1] -> uint8 videos."""
    from kinema.io import to_uint8
    from kinema.lm.tasks import default_given
    from kinema.sample.extend import extend

    c = net.config
    overlap = c.cond_frames or default_given(c)
    ext = extend(net, tok, video, times=times, overlap_latent_frames=overlap, seed=seed, **sampling)
    return [to_uint8(v) for v in ext.video]


def long_video_check(
    net, tok, *, times: int, n: int, batch: int, scenario: str, seed: int, **options
) -> list[TaskScore]:
    """:func:`drift_scores` of ``n`` held-out ``scenario`` clips of the LM's clip size, each
    extended ``times`` rounds by ``net`` / ``tok`` (``options``: ``dtype`` and sampling)."""
    c = net.config
    # a clip: the conditioning latent frames (single-task models with cond_frames) + the rest
    frames = 1 + tok.config.temporal_compression * (c.cond_frames + c.latent_shape[0] - 1)
    size = tok.config.spatial_compression * c.latent_shape[1]
    try:
        data = PhysicsDataset(scenario, "id", n, size, frames, DT, 1, seed)
    except ValueError as e:
        raise KinemaError(str(e)) from None
    videos: list[np.ndarray] = []
    for start in range(0, n, batch):
        clips = torch.stack([data[i]["video"] for i in range(start, min(n, start + batch))])
        videos += extend_clips(net, tok, clips, times, seed + start, **options)
    truths = None
    if scenario == "bounce":  # the same items, rendered for the whole length
        whole = PhysicsDataset(scenario, "id", n, size, len(videos[0]), DT, 1, seed)
        truths = [whole.frames(i)[0] for i in range(n)]
    return drift_scores(videos, frames, n, truths)


def evaluate_long_video(
    model: str | os.PathLike,
    *,
    times: int = 13,
    n: int = 8,
    batch: int = 8,
    scenario: str = "bounce",
    seed: int = EVAL_SEED,
    **sampling,
) -> MultitaskResults:
    """:func:`long_video_check` of the token LM folder ``model`` on ``n`` held-out clips of
    ``scenario`` (``bounce``: with the truth's row); ``sampling``: ``temperature`` /
    ``top_k`` / ``top_p`` / ``cfg_scale``."""
    from kinema.sample.video import load_lm, model_dtype

    if not 1 <= n <= 10_000 or not 1 <= batch <= 1024 or not 1 <= times <= 1000:
        raise KinemaError(
            f"n must be in [1, 10000], batch in [1, 1024], times in [1, 1000]; got {n}, "
            f"{batch}, {times}"
        )
    net, tok = load_lm(model)
    scores = long_video_check(
        net, tok, times=times, n=n, batch=batch, scenario=scenario, seed=seed,
        dtype=model_dtype(net), **sampling,
    )  # fmt: skip
    source = {"model": str(model), "times": times, "n": n, "scenario": scenario,
              "seed": seed, "sampling": jsonable(sampling)}  # fmt: skip
    return MultitaskResults(scores, source, metric="long-video")
