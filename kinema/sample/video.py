"""Model folder -> video in one call: condition from a video / class / text, sample, decode.

The one place that ties a trained generator (a :class:`~kinema.lm.TokenLM` or a
:class:`~kinema.flow.PyramidDiT`) to the tokenizer saved in its folder's ``tokenizer/``
(by :func:`kinema.lm.training.train_lm` / :func:`kinema.flow.training.train_flow`). Loading,
video and text conditioning and decoding are shared; only the sampler differs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from kinema.errors import KinemaError
from kinema.flow.dit import PyramidDiT
from kinema.hub import LM_KINDS, TOKENIZER_DIR, model_kind, resolve_model, tokenizer_folder
from kinema.io import read_video, resize_video, to_tensor, to_uint8
from kinema.lm.config import TokenLMConfig
from kinema.lm.model import TokenLM
from kinema.lm.tasks import default_given, get_task, task_sequence
from kinema.nn.precision import autocast as precision_autocast
from kinema.nn.precision import fast_dtype
from kinema.sample.decode import generate, generate_task
from kinema.sample.flow import Progress, check_steps, generate_latents
from kinema.tokenizer import Tokenizer

log = logging.getLogger(__name__)

# ``kinema generate --method`` names -> model classes (``model_type`` of config.json)
METHODS: dict[str, type[TokenLM] | type[PyramidDiT]] = {
    "token-lm": TokenLM,
    "pyramid-flow": PyramidDiT,
}
TRAIN_COMMANDS = {"token-lm": "kinema train lm", "pyramid-flow": "kinema train flow"}
FLOW_OPTIONS = (
    "frames",
    "cond_frames",
    "steps",
    "video_steps",
    "guidance_scale",
    "video_guidance_scale",
)
Generator = TokenLM | PyramidDiT
Video = str | os.PathLike | np.ndarray  # a file or uint8 (T, H, W, 3) / (n, T, H, W, 3)


def model_method(path: str | os.PathLike) -> str:
    """The generation method (a :data:`METHODS` key) of a model folder, from its config."""
    folder = resolve_model(path)
    kind = model_kind(folder)
    method = "token-lm" if kind in LM_KINDS else kind
    if method not in METHODS:
        raise KinemaError(
            f"'{folder}' holds a {kind}; generation takes {', '.join(METHODS)} models"
        )
    return method


def load_model(path: str | os.PathLike, method: str = "auto") -> tuple[Generator, Tokenizer]:
    """A generator folder and the tokenizer stored with it; ``method`` ('auto' or a
    :data:`METHODS` key) must match the folder's model."""
    folder = resolve_model(path)
    found = model_method(folder)
    if method not in ("auto", found):
        if method not in METHODS:
            raise KinemaError(f"unknown method {method!r}; valid: auto, {', '.join(METHODS)}")
        raise KinemaError(f"'{folder}' holds a {found} model, not {method}; use --method auto")
    tok_dir = tokenizer_folder(folder)
    if tok_dir is None:
        raise KinemaError(
            f"'{folder}' has no {TOKENIZER_DIR}/ folder; train it with `{TRAIN_COMMANDS[found]}`"
        )
    model = METHODS[found].from_pretrained(folder).eval()
    return model, Tokenizer.from_pretrained(tok_dir).eval()


def video_shape(net: Generator, tok: Tokenizer) -> tuple[int, int, int]:
    """``(frames, height, width)`` of the longest video ``net`` generates (given frames
    included): a token LM's conditioning + generated latent frames, a flow model's training
    length."""
    ft, fs = tok.config.temporal_compression, tok.config.spatial_compression
    if isinstance(net, PyramidDiT):
        c = net.config
        return 1 + ft * (c.frames - 1), c.resolution * fs, c.resolution * fs
    t, h, w = net.config.latent_shape
    return 1 + ft * (net.config.cond_frames + t - 1), h * fs, w * fs


def model_dtype(net: torch.nn.Module) -> torch.dtype:
    """The dtype a generator samples in: bf16 where its device computes bf16 natively,
    else fp32 (:func:`kinema.nn.precision.fast_dtype`)."""
    return fast_dtype(next(net.parameters()).device)


def load_lm(path: str | os.PathLike) -> tuple[TokenLM, Tokenizer]:
    """A token LM folder and the tokenizer stored with it."""
    return load_model(path, "token-lm")  # type: ignore[return-value]


@torch.inference_mode()
def generate_video(
    model: str | os.PathLike | tuple[Generator, Tokenizer],
    n: int = 1,
    *,
    prompt: str | Sequence[str] | None = None,
    label: int | None = None,
    video: Video | None = None,
    seed: int = 0,
    method: str = "auto",
    progress: Progress | None = None,
    **sampling,
) -> np.ndarray:
    """Sample ``n`` videos -> uint8 ``(n, T, H, W, 3)``.

    ``video``: its first frames condition the model and are part of the output: a token
    LM's ``cond_frames`` latent frames (``1 + ft * (cond_frames - 1)`` frames); for a flow
    model ``sampling["cond_frames"]`` latent frames (default 1: image-to-video). A file, a
    uint8 ``(T, H, W, 3)`` clip shared by all samples, or ``(n, T, H, W, 3)``: one clip per
    sample (resized to the model's frame size like a file).
    ``label`` / ``prompt``: class / text condition (a prompt, or one per sample). A
    condition the model has but is not given is its null condition (unconditional sampling).
    ``progress(done, total)``: called after each decoded block (token LM) or Euler step
    (pyramid flow).

    ``sampling`` (None values are ignored):
    - token LM: temperature, top_k, top_p, cfg_scale as in :func:`kinema.sample.generate`;
      a multitask LM also takes ``task`` (default: ``i2v`` with a video, ``t2v`` with a
      prompt, else ``unconditional``; see :func:`_task_tokens`);
    - pyramid flow: ``frames`` (video frames, ``1 + ft * k``, at most the training length;
      default that length), ``cond_frames``, ``steps`` / ``video_steps`` (Euler steps per
      stage of the first / later frames), ``guidance_scale``, ``video_guidance_scale``
      (see :func:`kinema.sample.flow.generate_latents`).
    """
    net, tok = model if isinstance(model, tuple) else load_model(model, method)
    sampling = {k: v for k, v in sampling.items() if v is not None}
    if isinstance(net, PyramidDiT):
        latents = _flow_latents(net, tok, n, prompt, label, video, seed, progress, **sampling)
    else:
        latents = _lm_tokens(net, tok, n, prompt, label, video, seed, progress, **sampling)
    with precision_autocast(latents.device):
        frames = tok.decode(latents).float().clamp(-1, 1)
    return np.stack([to_uint8(v) for v in frames])


def _lm_tokens(
    lm: TokenLM,
    tok: Tokenizer,
    n: int,
    prompt: str | Sequence[str] | None,
    label: int | None,
    video: Video | None,
    seed: int,
    progress: Progress | None,
    **sampling,
) -> torch.Tensor:
    """Token LM: tokens ``(n, t, h, w)``, given frames included."""
    c = lm.config
    if c.vocabulary is not None:
        return _task_tokens(lm, tok, n, prompt, label, video, seed, progress, **sampling)
    _check_options(sampling, ("temperature", "top_k", "top_p", "cfg_scale"), "token-lm")
    cond = {}
    if video is not None:
        if not c.cond_frames:
            raise KinemaError("this model takes no conditioning frames; drop --video")
        cond["cond_tokens"] = _encode_video(tok, video, c.cond_frames, c.latent_shape[1:], n)
    cond.update(lm_conditions(c, n, prompt, label))

    def callback(step: int, *_) -> None:
        progress(step + 1, c.num_blocks)

    tokens = generate(
        lm,
        n,
        seed=seed,
        dtype=model_dtype(lm),
        callback=None if progress is None else callback,
        **cond,
        **sampling,
    )
    if "cond_tokens" in cond:
        tokens = torch.cat([cond["cond_tokens"], tokens], dim=1)
    return tokens


# multitask tasks whose output is a video and whose input is at most its first frames
VIDEO_TASKS = ("unconditional", "t2v", "t2i", "i2v", "continuation")


def _task_tokens(
    lm: TokenLM,
    tok: Tokenizer,
    n: int,
    prompt: str | Sequence[str] | None,
    label: int | None,
    video: Video | None,
    seed: int,
    progress: Progress | None,
    task: str | None = None,
    **sampling,
) -> torch.Tensor:
    """Multitask token LM: one of :data:`VIDEO_TASKS` -> tokens ``(n, t, h, w)``, given
    frames included. Other tasks (inpainting, stylization, audio) take inputs this API has
    no words for: use :func:`kinema.sample.extend.chain` or
    :func:`kinema.sample.decode.generate_task`."""
    c = lm.config
    _check_options(sampling, ("temperature", "top_k", "top_p", "cfg_scale"), "token-lm")
    if task is None:
        task = "i2v" if video is not None else "t2v" if prompt is not None else "unconditional"
    if task not in VIDEO_TASKS or task not in c.vocabulary.tasks:
        valid = [t for t in VIDEO_TASKS if t in c.vocabulary.tasks]
        raise KinemaError(f"task {task!r} cannot make a video here; valid: {', '.join(valid)}")
    spec = get_task(task)
    given = {"image": 1, "frames": default_given(c)}.get(next(iter(spec.conditions), ""), 0)
    if given and video is None:
        raise KinemaError(f"task {task} needs --video")
    if video is not None and not given:
        raise KinemaError(f"task {task} takes no video; drop --video")
    cond = lm_conditions(c, n, prompt, label)
    frames = _encode_video(tok, video, given, c.latent_shape[1:], n) if given else None
    seq = task_sequence(c, task, video=frames, given=given or None, batch_size=n)

    def callback(step: int, *_) -> None:
        progress(step + 1, seq.num_blocks)

    tokens = generate_task(
        lm,
        seq,
        seed=seed,
        dtype=model_dtype(lm),
        callback=None if progress is None else callback,
        **cond,
        **sampling,
    )
    return tokens if frames is None else torch.cat([frames, tokens.to(frames.device)], dim=1)


def _flow_latents(
    dit: PyramidDiT,
    tok: Tokenizer,
    n: int,
    prompt: str | Sequence[str] | None,
    label: int | None,
    video: Video | None,
    seed: int,
    progress: Progress | None,
    *,
    frames: int | None = None,
    cond_frames: int = 1,
    steps: Sequence[int] | None = None,
    video_steps: Sequence[int] | None = None,
    **sampling,
) -> torch.Tensor:
    """Pyramid flow: normalised latents ``(n, C, t, h, w)``, given frames included."""
    c = dit.config
    _check_options(sampling, FLOW_OPTIONS, "pyramid-flow")
    if tok.is_discrete:
        raise KinemaError("this flow model's tokenizer/ is discrete; it needs its KL tokenizer")
    if label is not None:
        raise KinemaError("this model is not class-conditional; drop --class")
    ft = tok.config.temporal_compression
    longest = video_shape(dit, tok)[0]
    if frames is None:
        frames = longest
    if not 1 <= frames <= longest or (frames - 1) % ft:
        raise KinemaError(
            f"--frames must be 1 + {ft}k and at most {longest} (this model's training length), "
            f"got {frames}"
        )
    for name, value in (("steps", steps), ("video_steps", video_steps)):
        if value is not None:
            check_steps(value, c.stages, name)  # named as the caller knows them
    cond = {}
    if video is not None:
        latent_frames = 1 + (frames - 1) // ft
        if not 1 <= cond_frames < latent_frames:
            raise KinemaError(
                f"cond_frames must be in [1, {latent_frames - 1}] for {frames} frames, "
                f"got {cond_frames}"
            )
        size = (c.resolution, c.resolution)
        cond["cond_latents"] = _encode_video(tok, video, cond_frames, size, n)
    if prompt is not None:
        if not c.text_dim:
            raise KinemaError("this model is not text-conditional; drop --prompt")
        cond["text"], cond["text_mask"] = _encode_prompt(prompt, n, c.max_text_len)
    return generate_latents(
        dit,
        n,
        frames=1 + (frames - 1) // ft,
        steps_first=steps,
        steps_later=video_steps,
        seed=seed,
        dtype=model_dtype(dit),
        progress=progress,
        **cond,
        **sampling,
    )


def _check_options(sampling: dict, valid: Sequence[str], method: str) -> None:
    bad = sorted(set(sampling) - set(valid))
    if bad:
        raise KinemaError(
            f"{method} models take no {', '.join(bad)}; their options: {', '.join(valid)}"
        )


def _encode_video(
    tok: Tokenizer, video: Video, latent_frames: int, grid: Sequence[int], n: int
) -> torch.Tensor:
    """The first ``latent_frames`` latent frames of ``video`` (see :func:`generate_video`)
    resized to the latent ``grid (h, w)``: tokens ``(n, t, h, w)`` or latents
    ``(n, C, t, h, w)``; a clip shared by all samples is encoded once."""
    z = tok.encode(read_clips(tok, video, latent_frames, grid, n))
    return z.expand(n, *z.shape[1:])


def read_clips(
    tok: Tokenizer, video: Video, latent_frames: int, grid: Sequence[int], n: int
) -> torch.Tensor:
    """The first ``1 + ft * (latent_frames - 1)`` frames of ``video`` (a file, uint8
    ``(T, H, W, 3)`` or ``(n, T, H, W, 3)``) at the pixel size of the latent ``grid (h, w)``
    -> ``(1 or n, 3, T, H, W)`` in [-1, 1]."""
    ft, fs = tok.config.temporal_compression, tok.config.spatial_compression
    want, size = 1 + ft * (latent_frames - 1), (grid[0] * fs, grid[1] * fs)
    if isinstance(video, np.ndarray):
        clips = video[None] if video.ndim == 4 else video
        if clips.ndim != 5 or clips.shape[-1] != 3 or len(clips) not in (1, n):
            raise KinemaError(
                f"video must be uint8 (T, H, W, 3) or ({n}, T, H, W, 3), got {video.shape}"
            )
        name = "the conditioning video"
        clips = np.stack([resize_video(c[:want], size) for c in clips])
    else:
        name = f"'{video}'"
        clips = read_video(video, num_frames=want, size=size)[None]
    if clips.shape[1] < want:
        raise KinemaError(f"{name} has {clips.shape[1]} frames; this model needs {want}")
    return torch.stack([to_tensor(c) for c in clips])


def lm_conditions(
    config: TokenLMConfig, n: int, prompt: str | Sequence[str] | None, label: int | None
) -> dict[str, torch.Tensor]:
    """The ``label`` / ``text`` / ``text_mask`` conditions of a token LM for ``n`` samples
    (checked against what the model takes); missing ones are left out (null condition)."""
    cond: dict[str, torch.Tensor] = {}
    if label is not None:
        if not config.num_classes:
            raise KinemaError("this model is not class-conditional; drop --class")
        if not 0 <= label < config.num_classes:
            raise KinemaError(f"--class must be in [0, {config.num_classes - 1}], got {label}")
        cond["label"] = torch.full((n,), label, dtype=torch.long)
    if prompt is not None:
        if not config.text_dim:
            raise KinemaError("this model is not text-conditional; drop --prompt")
        cond["text"], cond["text_mask"] = _encode_prompt(prompt, n, config.max_text_len)
    return cond


def _encode_prompt(
    prompt: str | Sequence[str], n: int, max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Text-encoder states ``(n, S, D)`` fp32 and mask ``(n, S)`` of one prompt or of one
    per sample."""
    prompts = [prompt] * n if isinstance(prompt, str) else list(prompt)
    if len(prompts) != n:
        raise KinemaError(f"{len(prompts)} prompts for {n} videos; give one or {n}")
    states, mask = _text_encoder(max_len)(prompts)
    return states.float(), mask


@lru_cache(maxsize=2)
def _text_encoder(max_len: int):
    """The default text encoder, loaded once per process (a server or an evaluation calls
    :func:`generate_video` many times)."""
    from kinema.lm.text import HFTextEncoder

    return HFTextEncoder(max_length=max_len)


__all__ = [
    "METHODS",
    "generate_video",
    "load_lm",
    "load_model",
    "model_method",
    "read_clips",
    "video_shape",
]
