"""The README gallery: GIFs from the shipped models, one per method and prompt (fixed seed),
and a ``gallery.md`` snippet of markdown image links to paste into the README
(``kinema gallery --out docs/gallery``).

Also what ``kinema bench generate`` shares with it: the prompts (worded like the training
captions of physics and shapes, DATA.md, so the adherence detector can check them), the
``--model METHOD=PATH`` overrides and the model each method uses.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kinema.api import select_model
from kinema.errors import KinemaError
from kinema.hub import DEFAULT_MODELS, shipped_models

if TYPE_CHECKING:
    from kinema.sample.video import Generator
    from kinema.tokenizer import Tokenizer

log = logging.getLogger(__name__)

PROMPTS = (  # physics "uniform" and shapes captions
    "a large red ball moves right steadily",
    "a blue square moves up",
    "a small red ball moves left quickly",
    "a green circle moves down-left",
)
GALLERY_PROMPTS = PROMPTS[:2]  # one physics, one shapes
SEED = 0
CLIP_SEED, CLIP_SEARCH = 1000, 500  # held-out physics clips searched for a prompt's caption
MARKDOWN_NAME = "gallery.md"


def parse_model_specs(specs: Sequence[str]) -> dict[str, str]:
    """``["nbp=runs/nbp/model", ...]`` -> ``{"nbp": "runs/nbp/model"}``; methods are the
    keys of :data:`~kinema.hub.DEFAULT_MODELS`, each given at most once."""
    out: dict[str, str] = {}
    for spec in specs:
        method, sep, path = spec.partition("=")
        if not sep or method not in DEFAULT_MODELS or not path:
            raise KinemaError(
                f"--model must be METHOD=PATH with METHOD one of {', '.join(DEFAULT_MODELS)}, "
                f"got '{spec}'"
            )
        if method in out:
            raise KinemaError(f"--model {method}=PATH given twice")
        out[method] = path
    return out


def method_models(specs: Sequence[str] = ()) -> dict[str, Path | None]:
    """Every method (in :data:`~kinema.hub.DEFAULT_MODELS` order) -> its model folder: the
    ``METHOD=PATH`` override of ``specs``, else the shipped default, else None (none
    shipped). A folder must hold a model of its method."""
    overrides = parse_model_specs(specs)
    shipped = set(shipped_models())
    models: dict[str, Path | None] = {}
    for method, name in DEFAULT_MODELS.items():
        spec = overrides.get(method, name if name in shipped else None)
        models[method] = None if spec is None else select_model(spec, method)[0]
    return models


def reads_text(net: Generator) -> bool:
    """Whether a generator is text-conditional (prompts of others are dropped)."""
    return bool(net.config.text_dim)


def prompt_clip(model: tuple[Generator, Tokenizer], prompt: str) -> np.ndarray | None:
    """For a model that reads no text but continues given frames (a token LM with
    ``cond_frames``): the given frames ``(T0, H, W, 3)`` uint8 of the first held-out physics
    clip (uniform, in distribution, seed :data:`CLIP_SEED`) whose caption is ``prompt``, so
    that its continuation can be checked against the prompt. None for other models, or when
    none of :data:`CLIP_SEARCH` clips has that caption (e.g. a shapes prompt)."""
    from kinema.data.physics import PhysicsDataset, caption
    from kinema.sample.video import video_shape

    net, tok = model
    if reads_text(net) or not getattr(net.config, "cond_frames", 0):
        return None
    given = 1 + tok.config.temporal_compression * (net.config.cond_frames - 1)
    frames, height, width = video_shape(net, tok)
    ds = PhysicsDataset(
        "uniform", "id", CLIP_SEARCH, (height, width), frames, cond_frames=given, seed=CLIP_SEED
    )
    for i in range(CLIP_SEARCH):
        if caption(ds.trajectory(i)) == prompt:
            return ds.frames(i)[0][:given]
    return None


def generate_one(
    model: tuple[Generator, Tokenizer], prompt: str, seed: int
) -> tuple[np.ndarray, int | None]:
    """One uint8 ``(T, H, W, 3)`` video of a loaded ``(model, tokenizer)`` with the default
    options of :func:`kinema.generate`, and how many of its first frames were given (0) or
    None when the prompt played no part. A text-conditional model is given the prompt; a
    model that continues frames continues the :func:`prompt_clip` of the prompt; any other
    samples unconditionally."""
    from kinema.api import generate

    if reads_text(model[0]):
        return generate(prompt, model=model, seed=seed)[0], 0
    clip = prompt_clip(model, prompt)
    video = generate(model=model, seed=seed, video=clip)[0]
    return video, None if clip is None else len(clip)


@dataclass
class GalleryItem:
    """One GIF: ``file`` (name in the gallery folder), the wall ``seconds`` of its
    generation, its ``frames``; ``given``: how many first frames were given (0: text only;
    None: the model sampled unconditionally), see :func:`generate_one`."""

    method: str
    model: str
    prompt: str
    file: str
    seconds: float
    frames: int
    given: int | None


def make_gallery(
    out: str | os.PathLike,
    specs: Sequence[str] = (),
    *,
    prompts: Sequence[str] = GALLERY_PROMPTS,
    seed: int = SEED,
    fps: float = 10.0,
    link_prefix: str | None = None,
) -> tuple[Path, list[GalleryItem]]:
    """Write ``METHOD-I.gif`` for each method with a model (:func:`method_models`) and
    prompt ``I``, then ``gallery.md`` (each file atomically); methods without a model are
    skipped with a warning and a line in ``gallery.md``.

    Links in ``gallery.md`` are ``link_prefix/FILE`` (default: ``out`` as given, so a
    relative ``out`` from the README's folder gives links that work in the README).
    Returns the path of ``gallery.md`` and the items written.
    """
    from kinema.io import write_video
    from kinema.sample.video import load_model
    from kinema.utils.fs import atomic_file

    out = Path(out)
    models = method_models(specs)
    items: list[GalleryItem] = []
    missing: list[str] = []
    for method, folder in models.items():
        if folder is None:
            log.warning(
                "gallery: no %s model: kinema ships no %s yet; pass --model %s=PATH",
                method,
                DEFAULT_MODELS[method],
                method,
            )
            missing.append(method)
            continue
        model = load_model(folder)
        for i, prompt in enumerate(prompts):
            start = time.perf_counter()
            video, given = generate_one(model, prompt, seed)
            seconds = time.perf_counter() - start
            name = f"{method}-{i}.gif"
            write_video(out / name, video, fps=fps)
            items.append(GalleryItem(method, folder.name, prompt, name, seconds, len(video), given))
    prefix = out.as_posix() if link_prefix is None else link_prefix.rstrip("/")
    with atomic_file(out / MARKDOWN_NAME) as tmp:
        tmp.write_text(gallery_markdown(items, missing, prompts, seed, prefix))
    return out / MARKDOWN_NAME, items


def _how(item: GalleryItem) -> str:
    if item.given is None:
        return f"{item.frames} frames, unconditional (reads no text)"
    if item.given:
        return f"{item.frames} frames, the first {item.given} of a physics clip so captioned"
    return f"{item.frames} frames"


def gallery_markdown(
    items: Sequence[GalleryItem],
    missing: Sequence[str],
    prompts: Sequence[str],
    seed: int,
    prefix: str,
) -> str:
    """A markdown table, one row per method and one column per prompt, of image links with
    their generation time; a line per method without a model."""
    from kinema.bench.common import header

    lines = [
        "| method | " + " | ".join(f'"{p}"' for p in prompts) + " |",
        "|---" * (len(prompts) + 1) + "|",
    ]
    for method in dict.fromkeys(it.method for it in items):
        row = [it for it in items if it.method == method]
        label = f"{method} (`{row[0].model}`)"
        cells = [
            f'![{method}: "{it.prompt}"]({prefix}/{it.file})<br>{_how(it)}, {it.seconds:.1f} s'
            for it in row
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for method in missing:
        lines.append(f"- {method}: no model shipped yet (`{DEFAULT_MODELS[method]}`).")
    what = f"`kinema gallery`, seed {seed}"
    lines.append(f"\n<sub>{header(what).removeprefix('# ')}</sub>\n")
    return "\n".join(lines)


__all__ = [
    "GALLERY_PROMPTS",
    "PROMPTS",
    "GalleryItem",
    "gallery_markdown",
    "generate_one",
    "make_gallery",
    "method_models",
    "parse_model_specs",
    "prompt_clip",
    "reads_text",
]
