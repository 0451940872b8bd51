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
    from kinema.lm.tasks import MaskSpec
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


@dataclass
class Generated:
    """What :func:`generate_media` returns: ``video`` uint8 ``(n, T, H, W, 3)``; for a
    multitask model's task path also its visual ``tokens`` ``(n, t, h, w)`` (before any
    upscaling; None after ``extend``) and, after ``v2a``, ``audio`` float32 ``(n, S)`` in
    [-1, 1] at ``sample_rate`` Hz."""

    video: np.ndarray
    tokens: np.ndarray | None = None
    audio: np.ndarray | None = None
    sample_rate: int | None = None


def generate(prompt: str | None = None, **kwargs) -> np.ndarray:
    """Generate ``n`` videos -> uint8 ``(n, T, H, W, 3)``; the arguments of
    :func:`generate_media` (use that for the audio of ``task="v2a"``)."""
    return generate_media(prompt, **kwargs).video


def generate_media(
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
    task: str | None = None,
    mask: str | MaskSpec = None,
    extend: int | None = None,
    chain: str | Sequence[str] | None = None,
    upscale: int | None = None,
    sr_model: str | os.PathLike | None = None,
    **options,
) -> Generated:
    """Generate ``n`` videos (and audio) -> :class:`Generated`.

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
        guidance: classifier-free guidance scale (pyramid flow: of the first frame; with a
            prompt and no scale given, :data:`FLOW_GUIDANCE`: a text-conditioned flow model
            barely follows its prompt without guidance).
        steps: pyramid flow: Euler steps per stage of the first frame, one int for every
            stage or one per stage (default 20 each); later frames take ``video_steps``.
        n: videos, sampled as one batch.
        progress: ``progress(done, total)`` after each decoded block or Euler step.
        limits: bounds of every option (:class:`Limits`).
        task: multitask models: ``t2v``, ``i2v``, ``continuation``, ``inpaint``, ``outpaint``,
            ``stylize:NAME``, ``v2a``, ... (default ``i2v`` with an image or video, ``t2v``
            with a prompt, else ``unconditional``). The input clip (``video``) of inpaint,
            outpaint, stylize and v2a is one training clip long; v2a returns it with audio
            decoded by the model folder's ``audio_codec/``.
        mask: inpaint / outpaint hidden latent cells: ``"box:y0,x0,y1,x1"``,
            ``"border:N"`` (:func:`parse_mask`) or a :data:`kinema.lm.tasks.MaskSpec`
            (default :func:`kinema.lm.tasks.default_mask`); the visible tokens are kept.
        extend: after the task, that many continuation rounds (long video,
            :func:`kinema.sample.extend.extend`); token LMs only.
        chain: multitask models: tasks run in sequence, each on the previous output, e.g.
            ``"i2v,stylize:edges"`` (:func:`kinema.sample.extend.chain`); replaces ``task``.
        upscale: spatial factor of a cascade through the super-resolution model ``sr_model``
            (a folder with the :class:`~kinema.lm.superres.SuperResTransformer` and its two
            tokenizers in ``lr_tokenizer/`` and ``hr_tokenizer/``, :func:`load_superres`);
            it must be that model's factor and each output frame its low-res frame size;
            a longer video (``extend``) is upscaled in clips of the model's length.
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
    steps_of_chain = _check_task_options(task, mask, extend, chain, upscale, sr_model)
    if image is not None and video is not None:
        raise KinemaError("give a first image or a video to continue, not both")
    folder = None
    if isinstance(model, tuple):
        net, tok = model
        kind = "pyramid-flow" if isinstance(net, PyramidDiT) else lm_kind(net.config.block_shape)
        _check_kind(kind, method, "the model")
    else:
        folder, kind = select_model(model, method)
        net, tok = load_model(folder)
    sr = load_superres(sr_model, upscale) if upscale is not None else None
    multitask = kind != "pyramid-flow" and net.config.vocabulary is not None
    if multitask and (task is not None or steps_of_chain or extend or mask is not None):
        if steps is not None or frames is not None:
            raise KinemaError("steps / frames: a multitask token LM's clip length is fixed")
        out = _run_tasks(
            net, tok, folder, n, prompt, image, video, seed, task, mask, extend,
            steps_of_chain, guidance, options,
        )  # fmt: skip
    elif task is not None or steps_of_chain or mask is not None:
        raise KinemaError("task / mask / chain: options of multitask token LMs only")
    else:
        if kind == "pyramid-flow":
            if extend:
                raise KinemaError("extend: token LMs only (pyramid flow has no continuation)")
            if prompt is not None and guidance is None:
                guidance = FLOW_GUIDANCE[0]
                options.setdefault("video_guidance_scale", FLOW_GUIDANCE[1])
            sampling = _flow_sampling(net, frames, steps, guidance, options)
        else:
            sampling = _lm_sampling(net, tok, frames, steps, guidance, image, video)
        if image is not None:
            video = read_image(image)
        videos = generate_video(
            (net, tok),
            n,
            prompt=prompt,
            video=video,
            seed=seed,
            progress=progress,
            **sampling,
            **options,
        )
        out = Generated(videos)
        if extend:
            out = Generated(_extend_videos(net, tok, videos, extend, seed, guidance, options))
    if sr is not None:
        out.video = np.stack([_upscale(sr, v, seed) for v in out.video])
    return out


MAX_EXTEND = 16
# pyramid flow with a prompt: guidance of the first frame, of later frames (the official
# Pyramid Flow examples use 7-9 and 5; chosen for flow-small in BENCHMARKS.md, generate rows)
FLOW_GUIDANCE = (7.0, 5.0)
MAX_CHAIN = 8
MAX_UPSCALE = 8


def _check_task_options(
    task: str | None,
    mask: object,
    extend: int | None,
    chain: str | Sequence[str] | None,
    upscale: int | None,
    sr_model: object,
) -> list[str]:
    """One-line errors for the multitask options before any model is loaded; the chain's
    task names."""
    from kinema.lm.tasks import get_task

    steps = [s.strip() for s in chain.split(",")] if isinstance(chain, str) else list(chain or [])
    if chain is not None and not 1 <= len(steps) <= MAX_CHAIN:
        raise KinemaError(f"chain must name 1 to {MAX_CHAIN} tasks, got {chain!r}")
    if chain is not None and task is not None:
        raise KinemaError("give a task or a chain of tasks, not both")
    for name in [*steps, *([task] if task is not None else [])]:
        get_task(name)
    if extend is not None and (not _is_int(extend) or not 0 <= extend <= MAX_EXTEND):
        raise KinemaError(f"extend must be an integer in [0, {MAX_EXTEND}], got {extend!r}")
    if mask is not None and (task or (steps[0] if steps else None)) not in ("inpaint", "outpaint"):
        raise KinemaError("mask: only for the inpaint and outpaint tasks")
    if upscale is not None and (not _is_int(upscale) or not 2 <= upscale <= MAX_UPSCALE):
        raise KinemaError(f"upscale must be an integer in [2, {MAX_UPSCALE}], got {upscale!r}")
    if mask is not None:
        parse_mask(mask)
    if (upscale is None) != (sr_model is None):
        raise KinemaError("upscale and sr_model go together: give both or neither")
    return steps


def parse_mask(spec: str | MaskSpec) -> MaskSpec:
    """``"box:y0,x0,y1,x1"`` (hidden latent rows ``[y0, y1)``, columns ``[x0, x1)``, every
    frame) -> :class:`~kinema.lm.tasks.Box`; ``"border:N"`` -> ``N`` (cells on every side);
    other mask specs as they are."""
    from kinema.lm.tasks import Box

    if not isinstance(spec, str):
        return spec
    kind, _, values = spec.partition(":")
    try:
        nums = [int(v) for v in values.split(",")]
    except ValueError:
        nums = []
    if kind == "box" and len(nums) == 4 and min(nums) >= 0:
        y0, x0, y1, x1 = nums
        return Box(y0=y0, y1=y1, x0=x0, x1=x1)
    if kind == "border" and len(nums) == 1 and nums[0] >= 1:
        return nums[0]
    raise KinemaError(
        f"mask must be box:y0,x0,y1,x1 or border:N in latent cells (N >= 1), got {spec!r}"
    )


def _run_tasks(
    net: TokenLM,
    tok: Tokenizer,
    folder: Path | None,
    n: int,
    prompt: str | None,
    image: Image | None,
    video: Video | None,
    seed: int,
    task: str | None,
    mask: object,
    extend: int | None,
    chain: list[str],
    guidance: float | None,
    options: dict,
) -> Generated:
    """A multitask LM's task, chain and extension through :func:`kinema.sample.extend.chain`."""
    import torch

    from kinema.io import to_uint8
    from kinema.lm.tasks import get_task
    from kinema.sample.extend import chain as run_chain
    from kinema.sample.video import lm_conditions, model_dtype, read_clips

    c = net.config
    bad = sorted(set(options) - {"temperature", "top_k", "top_p", "label"})
    if bad:
        raise KinemaError(f"multitask token LMs take no {', '.join(bad)}")
    given = image is not None or video is not None
    names = chain or [task or ("i2v" if given else "t2v" if prompt else "unconditional")]
    for name in names:
        c.vocabulary.task_id(name)
    first = get_task(names[0])
    steps: list = list(names)
    if mask is not None:
        steps[0] = (names[0], {"mask": parse_mask(mask)})
    if extend:
        steps.append(("extend", {"times": extend}))
    clip = None
    if first.conditions and not given:
        raise KinemaError(f"task {names[0]} needs an input: give a video (or an image for i2v)")
    if given:
        if not first.conditions or "audio" in first.conditions:
            raise KinemaError(f"task {names[0]} takes no image or video; drop it")
        frames = 1 if "image" in first.conditions else c.latent_shape[0]
        if image is not None and frames != 1:
            raise KinemaError(f"task {names[0]} needs a video of one clip, not an image")
        source = read_image(image) if image is not None else video
        clip = read_clips(tok, source, frames, c.latent_shape[1:], n).expand(n, -1, -1, -1, -1)
    cond: dict = {"dtype": model_dtype(net), "cfg_scale": guidance}
    cond.update({k: v for k, v in options.items() if k != "label"})
    cond.update(lm_conditions(c, n, prompt, options.get("label")))
    audio = any(get_task(t).modality == "audio" for t in names)
    codec = load_audio_codec(folder) if audio else None
    with torch.no_grad():
        state = run_chain(net, tok, steps, video=clip, batch_size=n, seed=seed, **cond)
    out = Generated(np.stack([to_uint8(v) for v in state.video]))
    if state.tokens is not None:
        out.tokens = state.tokens.cpu().numpy()
    if state.audio is not None and codec is not None:
        param = next(codec.parameters())
        wave = codec.tokens_to_wave(state.audio.to(param.device))[:, 0].float().cpu().numpy()
        out.audio, out.sample_rate = wave, codec.config.sample_rate
    return out


def load_audio_codec(folder: str | os.PathLike | None):
    """The audio codec stored with a multitask model (``audio_codec/``)."""
    from kinema.audio import AudioCodec
    from kinema.hub import AUDIO_CODEC_DIR
    from kinema.modeling import CONFIG_NAME

    where = None if folder is None else resolve_model(folder) / AUDIO_CODEC_DIR
    if where is None or not (where / CONFIG_NAME).is_file():
        raise KinemaError(
            f"audio tasks decode with the model folder's {AUDIO_CODEC_DIR}/; "
            "train the model on shards encoded with --audio-codec"
        )
    return AudioCodec.from_pretrained(where).eval()


def _extend_videos(
    net: TokenLM, tok: Tokenizer, videos: np.ndarray, times: int, seed: int, guidance, options
) -> np.ndarray:
    """Single-task token LM: ``times`` continuation rounds of generated uint8 videos."""
    import torch

    from kinema.io import to_tensor, to_uint8
    from kinema.lm.tasks import default_given
    from kinema.sample.extend import extend

    c = net.config
    overlap = c.cond_frames or default_given(c)
    bad = sorted(set(options) - {"temperature", "top_k", "top_p"})
    if bad:
        raise KinemaError(f"extend takes no {', '.join(bad)}")
    x = torch.stack([to_tensor(v) for v in videos])
    with torch.no_grad():
        ext = extend(
            net, tok, x, times=times, overlap_latent_frames=overlap, seed=seed,
            cfg_scale=guidance, **options,
        )  # fmt: skip
    return np.stack([to_uint8(v) for v in ext.video])


def load_superres(path: str | os.PathLike, upscale: int | None = None):
    """A super-resolution folder -> ``(model, lr_tokenizer, hr_tokenizer)``: the
    :class:`~kinema.lm.superres.SuperResTransformer` (``config.json`` +
    ``model.safetensors``) with its tokenizers in ``lr_tokenizer/`` and ``hr_tokenizer/``.
    ``upscale``: the pixel factor asked for, checked against the model's."""
    from kinema.lm.superres import SuperResTransformer
    from kinema.modeling import CONFIG_NAME
    from kinema.tokenizer import Tokenizer

    folder = resolve_model(path)
    toks = []
    for sub in ("lr_tokenizer", "hr_tokenizer"):
        if not (folder / sub / CONFIG_NAME).is_file():
            raise KinemaError(
                f"'{folder}' has no {sub}/: a super-resolution folder carries its low-res and "
                "high-res tokenizers in lr_tokenizer/ and hr_tokenizer/"
            )
        toks.append(Tokenizer.from_pretrained(folder / sub).eval())
    model = SuperResTransformer.from_pretrained(folder).eval()
    lr, hr = toks
    factor = model.config.scale * hr.config.spatial_compression / lr.config.spatial_compression
    if upscale is not None and factor != upscale:
        raise KinemaError(f"upscale {upscale}: the model at '{folder}' upscales {factor:g}x")
    return model, lr, hr


def _upscale(sr: tuple, video: np.ndarray, seed: int) -> np.ndarray:
    from kinema.sample.superres import upscale_video

    return upscale_video(*sr, video, seed=seed)


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


__all__ = [
    "LIMITS",
    "METHODS",
    "Generated",
    "Limits",
    "generate",
    "generate_media",
    "load_audio_codec",
    "load_superres",
    "parse_mask",
    "read_image",
    "select_model",
]
