"""Token LM -> video in one call: condition from a video / class / text, sample, decode.

The one place that ties a trained :class:`~kinema.lm.TokenLM` to its tokenizer (saved in
the model folder's ``tokenizer/`` by :func:`kinema.lm.training.train_lm`).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from kinema.errors import KinemaError
from kinema.hub import resolve_model
from kinema.io import read_video, to_tensor, to_uint8
from kinema.lm.model import TokenLM
from kinema.sample.decode import generate
from kinema.tokenizer import Tokenizer

log = logging.getLogger(__name__)


def load_lm(path: str | os.PathLike) -> tuple[TokenLM, Tokenizer]:
    """A token LM folder and the tokenizer stored with it."""
    folder = resolve_model(path)
    tok_dir = folder / "tokenizer"
    if not (tok_dir / "config.json").is_file():
        raise KinemaError(f"'{folder}' has no tokenizer/ folder; train it with `kinema train lm`")
    return TokenLM.from_pretrained(folder).eval(), Tokenizer.from_pretrained(tok_dir).eval()


@torch.inference_mode()
def generate_video(
    model: str | os.PathLike | tuple[TokenLM, Tokenizer],
    n: int = 1,
    *,
    prompt: str | None = None,
    label: int | None = None,
    video: str | os.PathLike | None = None,
    seed: int = 0,
    **sampling,
) -> np.ndarray:
    """Sample ``n`` videos -> uint8 ``(n, T, H, W, 3)``.

    ``video``: its first frames condition a frame-prediction model (the model's
    ``cond_frames`` latent frames, i.e. ``1 + ft * (cond_frames - 1)`` frames); they are part
    of the output. ``label`` / ``prompt``: class / text condition. A condition the model has
    but is not given is its null condition (unconditional sampling). ``sampling``:
    temperature, top_k, top_p, cfg_scale as in :func:`kinema.sample.generate`.
    """
    lm, tok = load_lm(model) if not isinstance(model, tuple) else model
    c = lm.config
    cond = {}
    if video is not None:
        if not c.cond_frames:
            raise KinemaError("this model takes no conditioning frames; drop --video")
        ft = tok.config.temporal_compression
        want = 1 + ft * (c.cond_frames - 1)
        size = (
            c.latent_shape[1] * tok.config.spatial_compression,
            c.latent_shape[2] * tok.config.spatial_compression,
        )
        frames = read_video(video, num_frames=want, size=size)
        if len(frames) < want:
            raise KinemaError(f"'{video}' has {len(frames)} frames; this model needs {want}")
        tokens = tok.encode(to_tensor(frames)[None])  # once, not once per sample
        cond["cond_tokens"] = tokens.expand(n, -1, -1, -1)  # (n, cond_frames, h, w)
    if label is not None:
        if not c.num_classes:
            raise KinemaError("this model is not class-conditional; drop --class")
        if not 0 <= label < c.num_classes:
            raise KinemaError(f"--class must be in [0, {c.num_classes - 1}], got {label}")
        cond["label"] = torch.full((n,), label, dtype=torch.long)
    if prompt is not None:
        if not c.text_dim:
            raise KinemaError("this model is not text-conditional; drop --prompt")
        from kinema.lm.text import HFTextEncoder

        states, mask = HFTextEncoder(max_length=c.max_text_len)([prompt] * n)
        cond["text"], cond["text_mask"] = states.float(), mask
    tokens = generate(lm, n, seed=seed, dtype=torch.bfloat16, **cond, **sampling)
    if "cond_tokens" in cond:
        tokens = torch.cat([cond["cond_tokens"], tokens], dim=1)
    with torch.autocast("cpu", torch.bfloat16):
        frames = tok.decode(tokens).float().clamp(-1, 1)
    return np.stack([to_uint8(v) for v in frames])


__all__ = ["generate_video", "load_lm"]
