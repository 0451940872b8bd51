"""Reconstruction quality of a tokenizer: PSNR / SSIM / bits per pixel, next to H.264.

The H.264 reference (:func:`kinema.eval.codec.h264_at_bpp`) encodes the *same* clips at the
tokenizer's bits per pixel (``latent positions x log2(vocab) / pixels``); the tokenizer's
output is rounded to uint8 first, as a codec's would be.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from kinema.eval.codec import h264_at_bpp
from kinema.eval.metrics import psnr, ssim
from kinema.io import read_video, to_tensor, to_uint8
from kinema.nn.precision import autocast as precision_autocast
from kinema.tokenizer.tokenizer import Tokenizer

log = logging.getLogger(__name__)


def video_clips(
    path: str | os.PathLike, size: int = 64, frames: int = 17, max_clips: int = 8
) -> list[np.ndarray]:
    """Consecutive non-overlapping ``frames``-long uint8 ``(T, size, size, 3)`` clips."""
    video = read_video(path, num_frames=frames * max_clips, size=size)
    n = min(max_clips, len(video) // frames)
    if n == 0:
        raise ValueError(f"'{path}' has {len(video)} frames, fewer than one clip of {frames}")
    return [video[i * frames : (i + 1) * frames] for i in range(n)]


def tokenizer_bpp(tokenizer: Tokenizer, frames: int, height: int, width: int) -> float | None:
    """Bits per pixel of the token representation (None for a continuous latent)."""
    if not tokenizer.is_discrete:
        return None
    t, h, w = tokenizer.latent_shape(frames, height, width)
    return t * h * w * math.log2(tokenizer.vocab_size) / (frames * height * width)


@torch.no_grad()
def evaluate_clips(
    tokenizer: Tokenizer,
    clips: Sequence[np.ndarray],
    *,
    h264: Sequence[str] = ("yuv420p", "yuv444p"),
    batch_size: int = 4,
    precision: str = "auto",
    on_clip: Callable[[], None] | None = None,
) -> dict:
    """Reconstruct uint8 ``(T, H, W, 3)`` clips (all the same shape); returns per-clip rows
    and their means: ``psnr``, ``ssim``, ``bpp`` and, for discrete tokenizers, H.264's
    ``psnr`` / ``ssim`` / ``bpp`` / ``crf`` for each pixel format in ``h264``.
    ``precision``: as in :func:`kinema.nn.precision.autocast` (bf16 autocast where native)."""
    tokenizer.eval()
    t, hh, ww, _ = clips[0].shape
    bpp = tokenizer_bpp(tokenizer, t, hh, ww)
    rows: list[dict] = []
    for b in range(0, len(clips), batch_size):
        group = clips[b : b + batch_size]
        video = torch.stack([to_tensor(c) for c in group])
        with precision_autocast("cpu", precision):
            recon = tokenizer.reconstruct(video).float()
        for clip, rec in zip(group, recon, strict=True):
            rec8 = to_uint8(rec)
            row = {"psnr": float(psnr(rec8, clip)), "ssim": float(ssim(rec8, clip)), "bpp": bpp}
            if bpp is not None:
                for fmt in h264:
                    ref = h264_at_bpp(clip, bpp, pix_fmt=fmt)
                    row.update({f"h264_{fmt}_{k}": ref[k] for k in ("psnr", "ssim", "bpp", "crf")})
            rows.append(row)
            if on_clip is not None:
                on_clip()
    keys = [k for k, v in rows[0].items() if v is not None]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    return {"clips": len(rows), "mean": mean, "rows": rows}
