"""``kinema.generate``: a prompt, a first image or a video in, uint8 videos out.

`kinema generate` and the web app (`kinema serve`) are thin layers over this module: the
default model, the method check (nbp / ntp / pyramid-flow) and the bounds of every option
live here once; sampling itself is :func:`kinema.sample.video.generate_video`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kinema.errors import KinemaError
from kinema.hub import DEFAULT_MODELS, LM_KINDS, default_model, lm_kind, model_kind, resolve_model

if TYPE_CHECKING:  # torch stays unimported until a model is loaded
    from kinema.flow.dit import PyramidDiT
    from kinema.lm.model import TokenLM
    from kinema.sample.flow import Progress
    from kinema.sample.video import Generator
    from kinema.tokenizer import Tokenizer

log = logging.getLogger(__name__)

# "token-lm": either kind of token LM (the method name before nbp / ntp were told apart)
METHODS = ("auto", *DEFAULT_MODELS, "token-lm")
KIND_NAMES = {
    "pyramid-flow": "pyramid-flow",
    "nbp": "next-block (nbp) token-LM",
    "ntp": "next-token (ntp, 1x1x1 block) token-LM",
}
Image = str | os.PathLike | np.ndarray  # a file or uint8 (H, W, 3)
Video = str | os.PathLike | np.ndarray  # a file or uint8 (T, H, W, 3) / (n, T, H, W, 3)


@dataclass(frozen=True)
class Limits:
    """Bounds of one :func:`generate` call; the web app tightens them for shared CPUs.

    Attributes:
        max_samples: videos per call (``n``).
        max_frames: frames of a video (models bound them further by their training length).
        max_steps: Euler steps per pyramid stage (``steps`` and ``video_steps``).
        max_guidance: classifier-free guidance scales.
        max_prompt_chars: prompt length (the text encoder truncates long prompts anyway).
    """

    max_samples: int = 16
    max_frames: int = 257
    max_steps: int = 200
    max_guidance: float = 20.0
    max_prompt_chars: int = 1000


LIMITS = Limits()
MAX_SEED = 2**63 - 1
MAX_TEMPERATURE = 10.0


def select_model(model: str | os.PathLike | None = None, method: str = "auto") -> tuple[Path, str]:
    """The folder of ``model`` (a path or shipped name; None: the default model of
    ``method``, see :func:`kinema.hub.default_model`) and its kind, which must match
    ``method``: "nbp" (a token LM with blocks of > 1 token), "ntp" (1x1x1 blocks) or
    "pyramid-flow"."""
    if method not in METHODS:
        raise KinemaError(f"unknown method '{method}'; valid: {', '.join(METHODS)}")
    folder = resolve_model(default_model(method) if model is None else model)
    kind = model_kind(folder)
    _check_kind(kind, method, folder)
    return folder, kind


def _check_kind(kind: str, method: str, where: object) -> None:
    if kind not in KIND_NAMES:
        raise KinemaError(
            f"'{where}' holds a {kind}; generation takes {', '.join(KIND_NAMES)} models"
        )
    if method in ("auto", kind) or (method == "token-lm" and kind in LM_KINDS):
        return
    raise KinemaError(
        f"'{where}' holds a {KIND_NAMES[kind]} model, not {method}; use --method {kind} or auto"
    )


def generate(
    prompt: str | None = None,
    *,
    model: str | os.PathLike | tuple[Generator, Tokenizer] | None = None,
    method: str = "auto",
    image: Image | None = None,
    video: Video | None = None,
    frames: int | None = None,
    seed: int = 0,
    guidance: float | None = None,
    steps: int | Sequence[int] | None = None,
    n: int = 1,
    progress: Progress | None = None,
    limits: Limits = LIMITS,
    **options,
) -> np.ndarray:
    """Generate ``n`` videos -> uint8 ``(n, T, H, W, 3)``.

    Args:
        prompt: text (text-conditioned models); blank = none.
        model: a model folder, a shipped model's name, or a loaded ``(model, tokenizer)``
            from :func:`kinema.sample.video.load_model`; None = the shipped default of
            ``method``.
        method: "auto", "nbp", "ntp", "pyramid-flow" ("token-lm": nbp or ntp); the model's
            kind must match.
        image: the first frame (image-to-video): a file or uint8 ``(H, W, 3)``, resized to
            the model's frame size.
        video: a clip whose first frames are given (continuation; pyramid flow: the first
            ``cond_frames`` latent frames, default 1); a file or uint8 array.
        frames: pyramid flow: output frames ``1 + 4k`` (default and maximum: the training
            length); a token LM's length is fixed (its given plus generated frames).
        seed: same seed, same videos.
        guidance: classifier-free guidance scale (pyramid flow: of the first frame).
        steps: pyramid flow: Euler steps per stage of the first frame, one int for every
            stage or one per stage (default 20 each); later frames take ``video_steps``.
        n: videos, sampled as one batch.
        progress: ``progress(done, total)`` after each decoded block or Euler step.
        limits: bounds of every option (:class:`Limits`).
        options: passed to :func:`~kinema.sample.video.generate_video`: ``label``
            (class-conditioned models); token LM ``temperature``, ``top_k``, ``top_p``;
            pyramid flow ``video_steps``, ``video_guidance_scale``, ``cond_frames``.
    """
    from kinema.flow.dit import PyramidDiT
    from kinema.sample.video import generate_video, load_model

    if isinstance(prompt, str):
        prompt = prompt.strip() or None
    options = {k: v for k, v in options.items() if v is not None}
    _check_bounds(prompt, n, seed, guidance, frames, steps, options, limits)
    if image is not None and video is not None:
        raise KinemaError("give a first image or a video to continue, not both")
    if isinstance(model, tuple):
        net, tok = model
        kind = "pyramid-flow" if isinstance(net, PyramidDiT) else lm_kind(net.config.block_shape)
        _check_kind(kind, method, "the model")
    else:
        folder, kind = select_model(model, method)
        net, tok = load_model(folder)
    if kind == "pyramid-flow":
        sampling = _flow_sampling(net, frames, steps, guidance, options)
    else:
        sampling = _lm_sampling(net, tok, frames, steps, guidance, image, video)
    if image is not None:
        video = read_image(image)
    return generate_video(
        (net, tok),
        n,
        prompt=prompt,
        video=video,
        seed=seed,
        progress=progress,
        **sampling,
        **options,
    )


def _flow_sampling(
    net: PyramidDiT,
    frames: int | None,
    steps: int | Sequence[int] | None,
    guidance: float | None,
    options: dict,
) -> dict:
    """generate_video options of a flow model; one step count means every stage (and
    ``options["video_steps"]`` is expanded the same way, in place)."""

    def per_stage(value: int | Sequence[int] | None) -> Sequence[int] | None:
        return [value] * net.config.stages if _is_int(value) else value

    if "video_steps" in options:
        options["video_steps"] = per_stage(options["video_steps"])
    return dict(frames=frames, steps=per_stage(steps), guidance_scale=guidance)


def _lm_sampling(
    net: TokenLM,
    tok: Tokenizer,
    frames: int | None,
    steps: int | Sequence[int] | None,
    guidance: float | None,
    image: Image | None,
    video: Video | None,
) -> dict:
    """generate_video options of a token LM, after checking what it cannot do: Euler
    steps, another length, or one image where it continues several frames."""
    c, ft = net.config, tok.config.temporal_compression
    if steps is not None:
        raise KinemaError("steps: token-LM models decode one block per step; drop steps")
    given = c.cond_frames if image is not None or video is not None else 0
    made = 1 + ft * (given + c.latent_shape[0] - 1)  # latent frames -> video frames
    if frames not in (None, made):
        raise KinemaError(
            f"frames: this token LM makes {made} frames here (given ones included), got {frames}"
        )
    if image is not None and c.cond_frames != 1:
        raise KinemaError(
            f"this token LM continues {1 + ft * (c.cond_frames - 1)} given frames, not one "
            "image; give a video"
            if c.cond_frames
            else "this token LM takes no given frames; drop the image"
        )
    return dict(cfg_scale=guidance)


def read_image(image: Image) -> np.ndarray:
    """A first frame as uint8 ``(1, H, W, 3)``: an image file (or a video's first frame) or
    a uint8 ``(H, W, 3)`` array."""
    from kinema.io import read_video

    if not isinstance(image, np.ndarray):
        return read_video(image, num_frames=1)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise KinemaError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    return image[None]


def _check_bounds(
    prompt: str | None,
    n: int,
    seed: int,
    guidance: float | None,
    frames: int | None,
    steps: int | Sequence[int] | None,
    options: dict,
    limits: Limits,
) -> None:
    """One-line errors for options outside :class:`Limits`, before any model is loaded."""
    if prompt is not None and len(prompt) > limits.max_prompt_chars:
        raise KinemaError(f"prompt has {len(prompt)} characters; at most {limits.max_prompt_chars}")
    ranges = {
        "n": (n, 1, limits.max_samples),
        "seed": (seed, 0, MAX_SEED),
        "frames": (frames, 1, limits.max_frames),
        "guidance": (guidance, 0.0, limits.max_guidance),
        "video_guidance_scale": (options.get("video_guidance_scale"), 0.0, limits.max_guidance),
        "temperature": (options.get("temperature"), 0.0, MAX_TEMPERATURE),
        "top_k": (options.get("top_k"), 1, None),
        "top_p": (options.get("top_p"), 0.0, 1.0),
    }
    for name, (value, lo, hi) in ranges.items():
        if value is None:
            continue
        if isinstance(value, bool) or (isinstance(lo, int) and not _is_int(value)):
            raise KinemaError(f"{name} must be an integer, got {value!r}")
        if not (value >= lo and (hi is None or value <= hi)):  # NaN fails too
            bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise KinemaError(f"{name} must be in {bound}, got {value}")
    for name, value in (("steps", steps), ("video_steps", options.get("video_steps"))):
        counts = [value] if _is_int(value) else list(value or [])
        if not all(_is_int(s) and 1 <= s <= limits.max_steps for s in counts):
            raise KinemaError(
                f"{name} must be integers in [1, {limits.max_steps}] (per stage), got {value}"
            )


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


__all__ = ["LIMITS", "METHODS", "Limits", "generate", "read_image", "select_model"]
