"""Long videos and task chains on top of the one decode loop (VideoPoet section 2).

- :func:`extend`: generate, then repeatedly condition on the last ``c`` latent frames to
  produce the next ones. Each round re-encodes the last ``1 + ft * (c - 1)`` *pixel* frames
  rather than reusing their tokens: with a causal tokenizer the first latent frame of a clip
  encodes one frame alone, which is how the conditioning frames looked in training; the
  tokens of a clip's middle frames would not.
- :func:`chain`: run tasks in sequence, each on the previous one's output (e.g. image-to-
  video, then stylization of that video, then video-to-audio).

Works for multitask models (the ``continuation`` task) and for single-task models with
conditioning frames (``cond_frames == c``) or without them (the first ``c`` frames given as a
prompt of the decode loop). Runs under ``no_grad`` (not inference mode) so that the returned
videos are ordinary tensors, usable with a tokenizer in autograd code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from kinema.errors import KinemaError
from kinema.lm.controls import control_tokens
from kinema.lm.model import TokenLM
from kinema.lm.tasks import default_given, get_task, resolve_mask, task_sequence
from kinema.sample.decode import generate, generate_task

log = logging.getLogger(__name__)

Step = str | tuple[str, dict[str, Any]]


@dataclass
class Extension:
    """What :func:`extend` returns.

    ``video``: ``(B, 3, T0 + times * ft * new, H, W)`` in [-1, 1], the input followed by each
    round's new frames. ``rounds``: per round ``(B, c + new, h, w)`` tokens, the
    conditioning latent frames (the encoded last frames of the video so far) then the
    generated ones.
    """

    video: torch.Tensor
    rounds: list[torch.Tensor] = field(default_factory=list)


def new_frames(model: TokenLM, overlap: int) -> int:
    """Latent frames one :func:`extend` round adds after ``overlap`` given ones."""
    c = model.config
    t = c.latent_shape[0]
    if c.vocabulary is not None:
        if "continuation" not in c.vocabulary.tasks:
            raise KinemaError("this multitask model has no continuation task to extend with")
        if not 1 <= overlap < t:
            raise KinemaError(f"overlap_latent_frames must be in [1, {t - 1}], got {overlap}")
        return t - overlap
    if c.cond_frames:
        if overlap != c.cond_frames:
            raise KinemaError(
                f"this model conditions on exactly {c.cond_frames} latent frames; "
                f"overlap_latent_frames={overlap} is not possible"
            )
        return t
    bt = c.block_shape[0]
    if not 1 <= overlap < t or overlap % bt:
        raise KinemaError(
            f"overlap_latent_frames must be a multiple of {bt} in [1, {t - 1}], got {overlap}"
        )
    return t - overlap


@torch.no_grad()
def continue_tokens(
    model: TokenLM,
    given: torch.Tensor,
    *,
    seed: int | None = None,
    label: torch.Tensor | None = None,
    text: torch.Tensor | None = None,
    text_mask: torch.Tensor | None = None,
    **sampling: Any,
) -> torch.Tensor:
    """The latent frames that follow ``given (B, c, h, w)`` -> ``(B, new, h, w)``
    (:func:`new_frames`); ``sampling`` as in :func:`kinema.sample.generate`."""
    c = model.config
    b, overlap = given.shape[:2]
    new_frames(model, overlap)  # validates
    cond = dict(label=label, text=text, text_mask=text_mask)
    if c.vocabulary is not None:
        seq = task_sequence(c, "continuation", video=given, given=overlap)
        return generate_task(model, seq, seed=seed, **cond, **sampling)
    if c.cond_frames:
        return generate(model, b, cond_tokens=given, seed=seed, **cond, **sampling)
    return generate(model, b, prompt=given, seed=seed, **cond, **sampling)[:, overlap:]


@torch.no_grad()
def extend(
    model: TokenLM,
    tokenizer: torch.nn.Module,
    video: torch.Tensor,
    *,
    times: int,
    overlap_latent_frames: int,
    seed: int = 0,
    **kwargs: Any,
) -> Extension:
    """Extend ``video (B, 3, T0, H, W)`` in [-1, 1] by ``times`` rounds.

    Round ``r`` encodes the last ``1 + ft * (c - 1)`` frames of the video so far
    (``c = overlap_latent_frames``), generates the following latent frames with seed
    ``seed + r`` and appends the decoded new frames (``ft`` per new latent frame).
    ``kwargs``: ``label`` / ``text`` / ``text_mask`` and the sampling options of
    :func:`kinema.sample.generate`.
    """
    if times < 1:
        raise KinemaError(f"times must be >= 1, got {times}")
    ft = tokenizer.config.temporal_compression
    need = 1 + ft * (overlap_latent_frames - 1)
    new_frames(model, overlap_latent_frames)  # validates before any work
    if video.ndim != 5 or video.shape[1] != 3 or video.shape[2] < need:
        raise KinemaError(
            f"video must be (B, 3, T, H, W) with T >= {need} frames for "
            f"{overlap_latent_frames} overlapping latent frames, got {tuple(video.shape)}"
        )
    out = Extension(video=video.float())
    for r in range(times):
        given = _encode(tokenizer, out.video[:, :, -need:])
        _check_grid(model, given)
        new = continue_tokens(model, given, seed=seed + r, **kwargs)
        tokens = torch.cat([given, new.to(given.device)], dim=1)
        pixels = _decode(tokenizer, tokens)[:, :, need:]  # ft frames per new latent frame
        out.video = torch.cat([out.video, pixels.to(out.video.device)], dim=2)
        out.rounds.append(tokens)
        log.debug("extend round %d: +%d frames", r, pixels.shape[2])
    return out


@dataclass
class ChainResult:
    """What :func:`chain` returns: the latest visual output (``video (B, 3, T, H, W)`` in
    [-1, 1] and its tokens ``(B, t, h, w)``; tokens None after ``extend``), the latest audio
    tokens ``(B, A * Q)``, and every step's generated raw tokens in order."""

    video: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    audio: torch.Tensor | None = None
    outputs: list[tuple[str, torch.Tensor]] = field(default_factory=list)


@torch.no_grad()
def chain(
    model: TokenLM,
    tokenizer: torch.nn.Module,
    steps: Sequence[Step],
    *,
    video: torch.Tensor | None = None,
    audio: torch.Tensor | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> ChainResult:
    """Run tasks in sequence, each on the previous output (multitask models).

    Args:
        steps: task names (``"i2v"``, ``"stylize:edges"``, ``"v2a"``, ...) or ``(name,
            options)``; options: ``mask`` (inpaint / outpaint, see
            :func:`kinema.lm.tasks.resolve_mask`; the tokens it leaves visible are kept as
            given), ``given`` (continuation), ``text`` /
            ``text_mask`` / ``label`` (override the chain's), and for the step ``"extend"``
            ``times`` (default 1) and ``overlap`` (default half the clip).
        video: ``(B, 3, T, H, W)`` in [-1, 1]: the first visual input (optional).
        audio: ``(B, A * Q)`` audio tokens: the first audio input (optional).
        batch_size: ``B`` when the chain starts from nothing (e.g. with ``t2v``).
        seed: step ``i`` samples with ``seed + i``.
        kwargs: ``label`` / ``text`` / ``text_mask`` for every step and the sampling options.

    A step's inputs come from the latest output of their modality: video tokens (re-encoded
    from the pixels when the latest video came from ``extend`` or the caller), the control
    video of the latest pixels, the latest audio tokens.
    """
    c = model.config
    if c.vocabulary is None:
        raise KinemaError("chain needs a multitask model (TokenLMConfig.vocabulary)")
    state = ChainResult(video=None if video is None else video.float(), audio=audio)
    for i, step in enumerate(steps):
        name, options = (step, {}) if isinstance(step, str) else (step[0], dict(step[1]))
        own = {k: options.pop(k) for k in ("label", "text", "text_mask") if k in options}
        args = {**kwargs, **own}
        if name == "extend":
            overlap = options.pop("overlap", default_given(model.config))
            ext = extend(
                model,
                tokenizer,
                _need(state.video, name, i),
                times=options.pop("times", 1),
                overlap_latent_frames=overlap,
                seed=seed + i,
                **args,
            )
            _no_options(options, name)
            state.video, state.tokens = ext.video, None
            state.outputs.append((name, torch.cat([r[:, overlap:] for r in ext.rounds], dim=1)))
            continue
        spec = get_task(name)
        inputs: dict[str, Any] = {}
        if "image" in spec.conditions:  # frame 0 alone: any video or image will do
            if state.tokens is not None:
                inputs["video"] = state.tokens[:, :1]
            else:
                inputs["video"] = _encode(tokenizer, _need(state.video, name, i)[:, :, :1])
        elif {"frames", "masked", "video"} & set(spec.conditions):
            inputs["video"] = _clip_tokens(model, tokenizer, state, name, i)
        if "control" in spec.conditions:
            _clip_tokens(model, tokenizer, state, name, i)  # checks the clip length
            control = name.split(":", 1)[1]
            inputs["control"] = control_tokens(tokenizer, state.video, control)
        if "audio" in spec.conditions:
            if state.audio is None:
                raise KinemaError(f"step {i} ({name}) needs audio: give audio= or run v2a first")
            inputs["audio"] = state.audio
        mask = options.pop("mask", None)
        seq = task_sequence(
            c,
            name,
            **inputs,
            mask=mask,
            given=options.pop("given", None),
            batch_size=_batch(batch_size, state, inputs),
        )
        _no_options(options, name)
        out = generate_task(model, seq, seed=seed + i, **args)
        if "masked" in spec.conditions:  # inpaint / outpaint keep the visible tokens as given
            given = inputs["video"].to(out.device)
            hidden = resolve_mask(mask, name, given.shape[1:], given.shape[0]).to(out.device)
            out = torch.where(hidden, out, given)
        state.outputs.append((name, out))
        if seq.modality == "audio":
            state.audio = out
            continue
        tokens = out
        if spec.target == "rest":  # i2v / continuation: the given frames start the clip
            tokens = torch.cat([inputs["video"][:, : seq.first_frame].to(out.device), out], dim=1)
        state.tokens, state.video = tokens, _decode(tokenizer, tokens)
    return state


# ---------------------------------------------------------------------- helpers
def _encode(tokenizer: torch.nn.Module, video: torch.Tensor) -> torch.Tensor:
    param = next(tokenizer.parameters())
    return tokenizer.encode(video.to(param.device, param.dtype))


def _decode(tokenizer: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    param = next(tokenizer.parameters())
    return tokenizer.decode(tokens.to(param.device)).float().clamp(-1, 1)


def _check_grid(model: TokenLM, tokens: torch.Tensor) -> None:
    _, h, w = model.config.latent_shape
    if tuple(tokens.shape[2:]) != (h, w):
        raise KinemaError(
            f"the video encodes to a {tuple(tokens.shape[2:])} latent grid; this model "
            f"generates {(h, w)}: resize the video"
        )


def _need(video: torch.Tensor | None, name: str, i: int) -> torch.Tensor:
    if video is None:
        raise KinemaError(f"step {i} ({name}) needs a video: give video= or generate one first")
    return video


def _clip_tokens(
    model: TokenLM, tokenizer: torch.nn.Module, state: ChainResult, name: str, i: int
) -> torch.Tensor:
    """Tokens ``(B, T, h, w)`` of the latest video, which must be one clip long."""
    t_clip = model.config.latent_shape[0]
    if state.tokens is None:
        state.tokens = _encode(tokenizer, _need(state.video, name, i))
    _check_grid(model, state.tokens)
    if state.tokens.shape[1] != t_clip:
        raise KinemaError(
            f"step {i} ({name}) needs a clip of {t_clip} latent frames; the latest video has "
            f"{state.tokens.shape[1]}"
        )
    return state.tokens


def _batch(batch_size: int | None, state: ChainResult, inputs: dict) -> int | None:
    if inputs:
        return None  # the inputs say
    for x in (state.tokens, state.video, state.audio):
        if x is not None:
            return x.shape[0]
    return batch_size


def _no_options(options: dict, name: str) -> None:
    if options:
        raise KinemaError(f"step {name} takes no option(s) {sorted(options)}")
