"""Reconstruction metrics: PSNR, SSIM (Wang et al. 2004) and a tokenizer's bits per pixel.

Inputs are float tensors in [-1, 1] of shape ``(..., C, T, H, W)`` (videos, any number of
leading batch dims) or ``(C, H, W)`` (one image); uint8 ``(T, H, W, 3)`` numpy arrays (the I/O
convention) are converted with :func:`kinema.io.to_tensor`, so the default ``data_range=2``
fits both. PSNR and SSIM are returned per video, shape ``(...)`` (0-d for a single video).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from kinema.io import to_tensor

VideoLike = torch.Tensor | np.ndarray

SSIM_WINDOW = 11  # taps of the Gaussian window
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def as_video(x: VideoLike) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` array -> float ``(C, T, H, W)`` in [-1, 1]; tensors pass through.

    Float numpy arrays are taken as already in the tensor layout.
    """
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint8:
            if x.ndim != 4 or x.shape[-1] != 3:
                raise ValueError(f"expected a uint8 (T, H, W, 3) array, got shape {x.shape}")
            return to_tensor(x)
        return torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor or numpy array, got {type(x).__name__}")
    return x


def _pair(x: VideoLike, y: VideoLike) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Both as float64 tensors of one shape, and how many trailing dims make one item."""
    x, y = as_video(x), as_video(y)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.ndim < 3:
        raise ValueError(
            f"expected (..., C, T, H, W) videos or a (C, H, W) image, got {tuple(x.shape)}"
        )
    item_dims = 3 if x.ndim == 3 else 4
    return x.to(torch.float64), y.to(device=x.device, dtype=torch.float64), item_dims


def psnr(
    x: VideoLike, y: VideoLike, data_range: float = 2.0, max_db: float | None = None
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``, per video.

    Args:
        x, y: ``(..., C, T, H, W)`` or ``(C, H, W)`` in [-1, 1], or uint8 ``(T, H, W, 3)``.
            Batches of images go in as ``(B, C, 1, H, W)``.
        data_range: max minus min of the pixel scale (2 for [-1, 1]; uint8 inputs are
            converted to [-1, 1], where 2 equals 255 on the 0-255 scale).
        max_db: cap for the result; identical inputs give ``inf`` when it is ``None``.
    Returns:
        float64 ``(...)``: the MSE is taken over all elements of each video.
    """
    x, y, item_dims = _pair(x, y)
    mse = (x - y).pow(2).mean(dim=tuple(range(-item_dims, 0)))
    out = 10.0 * torch.log10(data_range**2 / mse)  # mse 0 -> inf
    return out if max_db is None else out.clamp(max=max_db)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device) -> torch.Tensor:
    """Normalised 1-D Gaussian ``(size,)``, as scipy.ndimage builds it."""
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    return g / g.sum()


def ssim(x: VideoLike, y: VideoLike, data_range: float = 2.0, vmin: float = -1.0) -> torch.Tensor:
    """Mean structural similarity (Wang et al. 2004), per video.

    An 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03 and population (co)variances,
    computed per frame and per channel with 'valid' filtering (no padding) and averaged over
    positions, channels and frames. SSIM's luminance term is not shift-invariant, so it is
    computed on ``x - vmin`` (pixels in [0, data_range], as for 0..255 images): the result
    for [-1, 1] tensors equals scikit-image's ``structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=255)`` on the uint8 frames, averaged
    over frames.

    Args:
        x, y: ``(..., C, T, H, W)`` or ``(C, H, W)`` in [-1, 1], or uint8 ``(T, H, W, 3)``;
            H and W must be at least 11.
        data_range: max minus min of the pixel scale.
        vmin: the scale's lowest value (-1 for [-1, 1]; 0 for [0, 1] tensors).
    Returns:
        float64 ``(...)``.
    """
    x, y, item_dims = _pair(x, y)
    x, y = x - vmin, y - vmin
    batch_shape = x.shape[:-item_dims]
    h, w = x.shape[-2:]
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    x, y = x.reshape(-1, 1, h, w), y.reshape(-1, 1, h, w)  # one row per frame and channel
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (N, 5, H, W)
    g = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA, maps.dtype, maps.device)
    maps = F.conv2d(maps, g.view(1, 1, -1, 1).expand(5, 1, -1, 1), groups=5)  # separable:
    maps = F.conv2d(maps, g.view(1, 1, 1, -1).expand(5, 1, 1, -1), groups=5)  # rows, columns
    mx, my, mxx, myy, mxy = maps.unbind(1)  # each (N, H - 10, W - 10)
    vx, vy, vxy = mxx - mx * mx, myy - my * my, mxy - mx * my
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    per_plane = s.mean(dim=(-2, -1))  # (N,): equal pixel counts, so plane means average fairly
    return per_plane.reshape(*batch_shape, -1).mean(-1)


def bits_per_pixel(num_tokens: int, vocab_size: int, frames: int, height: int, width: int) -> float:
    """Bits per pixel of ``num_tokens`` tokens from a ``vocab_size`` codebook, each coded with
    ``log2(vocab_size)`` bits (no entropy coding), for ``frames`` frames of ``height x width``.
    """
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    pixels = frames * height * width
    if num_tokens < 0 or pixels <= 0:
        raise ValueError(
            f"need num_tokens >= 0 and a non-empty video, got {num_tokens} tokens for "
            f"{frames}x{height}x{width}"
        )
    return num_tokens * math.log2(vocab_size) / pixels
