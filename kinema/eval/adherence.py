"""Text adherence on captioned synthetic data (shapes, digits, physics; DATA.md): does a
generated video show the colours its prompt names, moving the way the prompt says?

The prompt's words are matched against the datasets' vocabulary: palette colours
(``kinema.data.toys.COLORS``, which holds the physics balls' pure red and blue) in order of
appearance, and the first of the eight direction words (``right``, ``up-left``, ...).

Detection, per uint8 ``(T, H, W, 3)`` video:
- background: the median colour of each frame;
- colour: every pixel is explained as a blend ``bg + a (c - bg)`` of the background with
  each palette colour ``c``; it belongs to the colour with the smallest residual, with
  weight ``a``, if ``a >= 0.5`` and the residual is small. Unmixing keeps anti-aliased
  edges (pink on white, dark red on black) from voting for the wrong colour, and a
  per-pixel vote (rather than the mean foreground colour) keeps two objects apart;
- object colours: palette colours covering at least ``min_area`` of the frame, largest
  first; the dominant one is the first;
- motion: the weighted centroid track (:func:`~kinema.eval.physics.weighted_centroids`) of
  the prompt's first colour (else the dominant one). The toys bounce off the walls and
  captions name the initial direction, so the velocity is that of the first ``window``
  frames, cut at the first reversal on each axis, from a least-squares quadratic (exact
  for constant velocity and for the physics parabola, which starts horizontally); it is
  binned to the nearest of the eight directions, or ``None`` below ``MIN_SPEED``.

Scores per (prompt, video) pair: colour (the prompt's colours are the most-covering
detected ones: the dominant one for single-object prompts), direction (of the tracked
object), both; each averaged over the pairs whose prompt names a colour / a direction.

Ground truth scored against its own captions (200 clips each, 64 x 64 x 17): colour 100%
everywhere; direction 94.5% for shapes and digits (the ~5% of clips that bounce within
their first frame interval move against their caption from the start), 99.3% for physics
in-distribution, 93% out of distribution (the slowest OOD balls barely move). These are
the ceilings a generator can reach; chance is 1/6 for colour and 1/8 for direction.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kinema.data.toys import COLORS, DIRECTIONS
from kinema.errors import KinemaError
from kinema.eval.physics import weighted_centroids
from kinema.utils.jsonable import jsonable

log = logging.getLogger(__name__)

MIN_ALPHA = 0.5  # a pixel is the colour if it is at least half way from the background
TOLERANCE = 0.35  # largest residual off the blend line, as a fraction of |c - bg|
MIN_AREA = 0.001  # of the frame (4 pixels at 64 x 64): smaller blobs are not objects
WINDOW = 8  # frames of initial motion
MIN_SPEED = 0.002  # of the frame width per frame; slower is "still" (no direction)
_WORDS = re.compile(r"[a-z]+(?:-[a-z]+)*")


@dataclass(frozen=True)
class PromptSpec:
    """What a prompt asks for: colours in order of appearance, the first direction word."""

    colors: tuple[str, ...]
    direction: str | None


def parse_prompt(prompt: str) -> PromptSpec:
    """``"a red ball moving right hits a blue ball"`` -> ``(("red", "blue"), "right")``."""
    words = _WORDS.findall(prompt.lower())
    colors = tuple(dict.fromkeys(w for w in words if w in COLORS))
    direction = next((w for w in words if w in DIRECTIONS), None)
    return PromptSpec(colors, direction)


def color_weights(video: np.ndarray, palette: dict[str, tuple[int, int, int]] = COLORS):
    """Per-pixel membership ``(T, H, W, K)`` in each of the ``K`` palette colours (at most
    one non-zero per pixel: its blend weight ``a``), see the module docstring."""
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"expected uint8 (T, H, W, 3) video, got shape {video.shape}")
    x = video.astype(np.float32)
    bg = np.median(x.reshape(len(x), -1, 3), axis=1)[:, None, None]  # (T, 1, 1, 3)
    d = x - bg
    alpha, resid = [], []
    for rgb in palette.values():  # K is small; each step is vectorised over all pixels
        e = np.asarray(rgb, np.float32) - bg
        ee = (e * e).sum(-1, keepdims=True)
        visible = ee[..., 0] > 64.0**2  # a colour close to the background cannot be seen
        a = np.clip((d * e).sum(-1) / np.maximum(ee[..., 0], 1.0), 0.0, 1.0)
        r = np.linalg.norm(d - a[..., None] * e, axis=-1) / np.sqrt(np.maximum(ee[..., 0], 1.0))
        alpha.append(a)
        resid.append(np.where(visible, r, np.inf))
    alpha_k, resid_k = np.stack(alpha, -1), np.stack(resid, -1)
    best = resid_k.argmin(-1)[..., None]
    a = np.take_along_axis(alpha_k, best, -1)[..., 0]
    r = np.take_along_axis(resid_k, best, -1)[..., 0]
    w = np.where((a >= MIN_ALPHA) & (r <= TOLERANCE), a, 0.0)
    out = np.zeros(alpha_k.shape, np.float32)
    np.put_along_axis(out, best, w[..., None], -1)
    return out


def initial_velocity(track: np.ndarray, window: int = WINDOW) -> np.ndarray | None:
    """Velocity ``(2,)`` where a centroid ``track (T, 2)`` (NaN: not seen) is first seen,
    in its units per frame, from the first ``window`` frames of that run of seen frames,
    each axis cut at its first reversal (a bounce); None if no two consecutive frames."""
    seen = np.isfinite(track).all(-1)
    if not seen.any():
        return None
    track = track[int(np.argmax(seen)) :]  # objects may enter the view later
    run = np.isfinite(track).all(-1)
    n = min(window, int(np.argmin(run)) if not run.all() else len(track))
    if n < 2:
        return None
    v = np.zeros(2)
    for axis in range(2):
        p = track[:n, axis]
        step = np.diff(p)
        eps = 0.05 * max(np.abs(step).max(), 1e-9)  # steps this small have no sign
        signs = np.sign(np.where(np.abs(step) > eps, step, 0.0))
        moving = signs[signs != 0]
        reverse = np.flatnonzero(signs == -moving[0]) if len(moving) else []
        m = int(reverse[0]) + 1 if len(reverse) else n  # points before the reversal
        t = np.arange(m, dtype=np.float64)
        coef = np.polyfit(t, p[:m], 2 if m >= 4 else 1)  # highest degree first
        v[axis] = coef[-2]  # derivative at t = 0
    return v


def direction_of(velocity: np.ndarray | None, min_speed: float) -> str | None:
    """Nearest of the eight direction words to ``(vx, vy)`` (y up); None if slower."""
    if velocity is None or np.hypot(*velocity) < min_speed:
        return None
    names = list(DIRECTIONS)
    units = np.array([DIRECTIONS[k] for k in names], np.float64)
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    return names[int((units @ velocity).argmax())]


@dataclass
class Detection:
    """colors: palette colours covering at least ``min_area`` of the frame (mean over
    frames), largest first; dominant: the first; tracked: the colour whose motion was
    measured; velocity: its initial velocity (pixels per frame, x right, y up)."""

    colors: dict[str, float]
    dominant: str | None
    tracked: str | None
    velocity: list[float] | None
    direction: str | None


def detect(
    video: np.ndarray,
    track: str | None = None,
    *,
    min_area: float = MIN_AREA,
    window: int = WINDOW,
) -> Detection:
    """Object colours and the motion of colour ``track`` (default: the dominant one) in a
    uint8 ``(T, H, W, 3)`` video."""
    w = color_weights(video)
    t, h, wd, _ = w.shape
    share = w.sum((0, 1, 2)) / (t * h * wd)
    names = list(COLORS)
    colors = {
        names[k]: float(share[k]) for k in np.argsort(-share, kind="stable") if share[k] >= min_area
    }
    dominant = next(iter(colors), None)
    tracked = track if track in colors else dominant
    velocity = None
    if tracked is not None:
        centre = weighted_centroids(w[..., names.index(tracked)])
        v = initial_velocity(centre, window)
        velocity = None if v is None else np.array([v[0], -v[1]])  # image y grows down
    direction = direction_of(velocity, MIN_SPEED * wd)
    vel = None if velocity is None else [float(x) for x in velocity]
    return Detection(colors, dominant, tracked, vel, direction)


@dataclass
class AdherenceItem:
    """One (prompt, video) pair: what the prompt asks, what was detected, and the matches
    (None: the prompt names no colour / no direction)."""

    file: str
    prompt: str
    colors: list[str]
    direction: str | None
    detected_colors: list[str]
    detected_direction: str | None
    color_match: bool | None
    direction_match: bool | None


@dataclass
class AdherenceResults:
    """Accuracies in [0, 1] (None: no prompt asked) over ``clips`` pairs; ``*_clips``: the
    pairs each accuracy is over; items: per pair."""

    color: float | None
    direction: float | None
    both: float | None
    clips: int
    color_clips: int
    direction_clips: int
    both_clips: int
    items: list[AdherenceItem]
    metric: str = "adherence"
    source: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return jsonable(asdict(self))

    def markdown(self) -> str:
        def pct(x: float | None, n: int) -> str:
            return "-" if x is None else f"{100 * x:.1f}% of {n}"

        return "\n".join(
            [
                "| colour | direction | both | clips |",
                "|---|---|---|---|",
                f"| {pct(self.color, self.color_clips)} | "
                f"{pct(self.direction, self.direction_clips)} | "
                f"{pct(self.both, self.both_clips)} | {self.clips} |",
            ]
        )


def score_pair(prompt: str, video: np.ndarray, name: str = "video") -> AdherenceItem:
    """Score one generated video against its prompt."""
    spec = parse_prompt(prompt)
    found = detect(video, spec.colors[0] if spec.colors else None)
    top = list(found.colors)[: len(spec.colors)]
    return AdherenceItem(
        file=name,
        prompt=prompt,
        colors=list(spec.colors),
        direction=spec.direction,
        detected_colors=list(found.colors),
        detected_direction=found.direction,
        color_match=set(top) == set(spec.colors) if spec.colors else None,
        direction_match=found.direction == spec.direction if spec.direction else None,
    )


def evaluate_adherence(
    prompts: Sequence[str],
    videos: Iterable[np.ndarray],
    names: Sequence[str] | None = None,
    source: dict | None = None,
) -> AdherenceResults:
    """Score ``videos`` (uint8 ``(T, H, W, 3)``, possibly lazy) against ``prompts``."""
    names = names or [f"video {i}" for i in range(len(prompts))]
    items = []
    for i, (prompt, video) in enumerate(itertools.zip_longest(prompts, videos)):
        if prompt is None or video is None:
            raise KinemaError(f"{len(prompts)} prompts but a different number of videos")
        items.append(score_pair(prompt, np.asarray(video), names[i]))

    def accuracy(matches: list[bool]) -> float | None:
        return float(np.mean(matches)) if matches else None

    colour = [it.color_match for it in items if it.color_match is not None]
    direction = [it.direction_match for it in items if it.direction_match is not None]
    both = [
        bool(it.color_match and it.direction_match)
        for it in items
        if it.color_match is not None and it.direction_match is not None
    ]
    return AdherenceResults(
        accuracy(colour),
        accuracy(direction),
        accuracy(both),
        len(items),
        len(colour),
        len(direction),
        len(both),
        items,
        source=dict(source or {}),
    )


def evaluate_adherence_folder(
    folder: str | os.PathLike, *, captions: str | os.PathLike | None = None, n: int | None = None
) -> AdherenceResults:
    """Score the captioned videos of a folder: prompts from ``captions`` or, as for
    training data, the folder's ``captions.jsonl`` else ``meta.jsonl`` (``kinema data
    make`` writes one), ``{"file": ..., "caption": ...}`` per line, files relative to it.
    At most ``n`` clips (sorted by file); files without a caption are skipped."""
    from kinema.data.video_folder import load_captions
    from kinema.eval.fvd import folder_videos
    from kinema.io import read_video

    folder = Path(folder)
    files = folder_videos(folder)
    prompts = load_captions(files, captions)
    pairs = [(f, prompts[f.resolve()]) for f in files if f.resolve() in prompts]
    if not pairs:
        raise KinemaError(
            f"no video in '{folder}' has a caption: add captions.jsonl or meta.jsonl "
            '({"file": ..., "caption": ...} per line)'
        )
    if len(pairs) < len(files):
        log.warning("%d of %d videos have no caption; skipped", len(files) - len(pairs), len(files))
    pairs = pairs[:n]
    names = [str(f.relative_to(folder)) for f, _ in pairs]
    source = {"videos": str(folder), "captions": str(captions) if captions else None}
    return evaluate_adherence(
        [p for _, p in pairs], (read_video(f) for f, _ in pairs), names, source
    )


__all__ = [
    "AdherenceItem",
    "AdherenceResults",
    "Detection",
    "PromptSpec",
    "color_weights",
    "detect",
    "evaluate_adherence",
    "evaluate_adherence_folder",
    "initial_velocity",
    "parse_prompt",
    "score_pair",
]
