"""Control videos for stylization, derived from the input video without extra models.

A control maps an RGB clip to another RGB clip of the same shape (``(B, 3, T, H, W)`` in
[-1, 1]); the stylization task ``stylize:NAME`` conditions on the control video's tokens,
made by the same video tokenizer as the target (:func:`control_tokens`). Built in:

- ``edges``: per-frame Sobel gradient magnitude of the luma, thresholded: white edges on
  black;
- ``gray``: the luma (Rec. 601) on all three channels.

Other controls (depth, optical flow, ...) plug in by name with :func:`register_control`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from kinema.errors import KinemaError

Control = Callable[[torch.Tensor], torch.Tensor]
CONTROLS: dict[str, Control] = {}

# Rec. 601 luma weights
_LUMA = (0.299, 0.587, 0.114)
# Sobel kernels (x: columns, y: rows); a unit luma step gives a magnitude of 4
_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def register_control(name: str) -> Callable[[Control], Control]:
    """Decorator: register ``fn(video (B, 3, T, H, W) in [-1, 1]) -> same shape`` as a
    control named ``name`` (then the task ``stylize:name`` exists)."""
    if not name or ":" in name:
        raise KinemaError(f"a control name must be non-empty and without ':', got {name!r}")

    def add(fn: Control) -> Control:
        CONTROLS[name] = fn
        return fn

    return add


def control_video(video: torch.Tensor, name: str) -> torch.Tensor:
    """The control ``name`` of ``video (B, 3, T, H, W)`` in [-1, 1] -> same shape, [-1, 1]."""
    if name not in CONTROLS:
        raise KinemaError(f"unknown control {name!r}; registered: {', '.join(CONTROLS)}")
    if video.ndim != 5 or video.shape[1] != 3:
        raise KinemaError(f"video must be (B, 3, T, H, W), got {tuple(video.shape)}")
    out = CONTROLS[name](video.float())
    if out.shape != video.shape:
        raise KinemaError(f"control {name!r} returned {tuple(out.shape)}, not {tuple(video.shape)}")
    return out


@torch.no_grad()
def control_tokens(tokenizer: torch.nn.Module, video: torch.Tensor, name: str) -> torch.Tensor:
    """Tokens ``(B, t, h, w)`` of the control video of ``video`` by the video tokenizer."""
    param = next(tokenizer.parameters())
    ctrl = control_video(video, name).to(param.device, param.dtype)
    return tokenizer.encode(ctrl)


def luma(video: torch.Tensor) -> torch.Tensor:
    """``(B, 3, T, H, W)`` in [-1, 1] -> luma ``(B, T, H, W)`` in [0, 1]."""
    w = video.new_tensor(_LUMA)
    return torch.einsum("bcthw,c->bthw", (video.clamp(-1, 1) + 1) / 2, w)


def sobel_magnitude(gray: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude of images ``(N, H, W)`` (replicate padding: the frame border is no
    edge) -> ``(N, H, W)``."""
    kx = gray.new_tensor(_SOBEL_X)
    kernels = torch.stack([kx, kx.t()])[:, None]  # (2, 1, 3, 3): d/dx, d/dy
    padded = F.pad(gray[:, None], (1, 1, 1, 1), mode="replicate")
    g = F.conv2d(padded, kernels)  # (N, 2, H, W)
    return g.pow(2).sum(1).sqrt()


@register_control("edges")
def edges(video: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-frame Sobel edges: white (1) where the luma gradient magnitude exceeds
    ``threshold`` (0.5 = a luma step of 1/8 of the range), black (-1) elsewhere."""
    b = video.shape[0]
    y = rearrange(luma(video), "b t h w -> (b t) h w")
    e = (sobel_magnitude(y) > threshold).to(video.dtype) * 2 - 1
    return repeat(e, "(b t) h w -> b c t h w", b=b, c=3)


@register_control("gray")
def grayscale(video: torch.Tensor) -> torch.Tensor:
    """The luma on all three channels."""
    return repeat(luma(video) * 2 - 1, "b t h w -> b c t h w", c=3)
