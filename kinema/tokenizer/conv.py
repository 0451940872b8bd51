"""Causal 3D convolution and the streaming state that makes chunked encode/decode exact.

A causal conv pads only at the *front* in time, by replicating the first frame, so output
frame ``i`` depends on input frames ``<= i`` only (``<= i * time_stride`` with a temporal
stride). Spatial padding is ordinary symmetric zero padding.

Streaming: inside ``with streaming(module):`` every :class:`StreamingModule` below ``module``
keeps what it needs from the previous call (a causal conv keeps the input frames its next
output window still needs), so feeding a video chunk by chunk gives exactly the one-shot
output. Outside the context each call is independent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from einops import rearrange
from torch import nn


class StreamingModule(nn.Module):
    """A layer that carries state from one call to the next while streaming."""

    def __init__(self) -> None:
        super().__init__()
        self.streaming = False

    def reset_stream(self) -> None:
        """Forget the state of the current stream (the next call starts a new video)."""


@contextmanager
def streaming(module: nn.Module) -> Iterator[nn.Module]:
    """Stream through ``module``: consecutive calls continue one video along time.

    >>> with streaming(encoder):
    ...     latents = torch.cat([encoder(chunk) for chunk in chunks], dim=2)
    """
    layers = [m for m in module.modules() if isinstance(m, StreamingModule)]
    for m in layers:
        m.reset_stream()
        m.streaming = True
    try:
        yield module
    finally:
        for m in layers:
            m.reset_stream()
            m.streaming = False


def _triple(v: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


class CausalConv3d(StreamingModule):
    """``nn.Conv3d`` that is causal in time.

    Args:
        kernel_size: ``k`` or ``(kt, kh, kw)``; the front is padded with ``kt - 1`` copies
            of the first frame (replicate padding), space with ``kh // 2``, ``kw // 2`` zeros.
        stride: spatial stride.
        time_stride: temporal stride. With ``kt = 3, time_stride = 2`` a clip of ``1 + 2k``
            frames gives ``1 + k`` frames, and output frame 0 sees input frame 0 only.

    Shapes: ``(B, C_in, T, H, W) -> (B, C_out, T', H', W')`` with
    ``T' = (T - 1) // time_stride + 1`` (for ``kt >= time_stride``), ``H' = ceil(H / stride)``
    for odd ``kh``.

    Streaming keeps the frames of the (padded) input stream not yet consumed by an output
    window, i.e. the last ``kt - 1`` input frames for ``time_stride = 1``; any chunking
    then reproduces the one-shot output exactly.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int = 1,
        time_stride: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        kt, kh, kw = _triple(kernel_size)
        self.kernel_t = kt
        self.time_stride = time_stride
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            (kt, kh, kw),
            stride=(time_stride, stride, stride),
            padding=(0, kh // 2, kw // 2),
            bias=bias,
        )
        self._cache: torch.Tensor | None = None

    @property
    def weight(self) -> torch.Tensor:
        return self.conv.weight

    def reset_stream(self) -> None:
        self._cache = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, T, H, W) -> (B, C_out, T', H', W')``."""
        kt, st = self.kernel_t, self.time_stride
        if not self.streaming and x.shape[2] == 1:
            return self._single_frame(x)
        if self.streaming and self._cache is not None:
            x = torch.cat([self._cache.to(x.dtype), x], dim=2)
        elif kt > 1:
            x = torch.cat([x[:, :, :1].expand(-1, -1, kt - 1, -1, -1), x], dim=2)
        if self.streaming:
            if x.shape[2] < kt:
                raise ValueError(
                    f"streaming chunk too short: {x.shape[2]} buffered frames < kernel {kt}"
                )
            n_out = (x.shape[2] - kt) // st + 1
            # clone: a view would keep the whole concatenated chunk alive
            self._cache = x[:, :, n_out * st :].detach().clone()
        return self.conv(x)

    def _single_frame(self, x: torch.Tensor) -> torch.Tensor:
        """One frame (an image): its window holds ``kt`` identical replicas, so the 3D conv
        equals a 2D conv with the kernel summed over time. Exact, several times cheaper,
        and it avoids a pathologically slow bf16 conv3d backward for ``T = 1`` on CPU."""
        conv = self.conv
        y = torch.nn.functional.conv2d(
            x[:, :, 0],
            conv.weight.sum(dim=2),
            conv.bias,
            stride=conv.stride[1:],
            padding=conv.padding[1:],
        )
        return y.unsqueeze(2)

    def extra_repr(self) -> str:
        return f"causal kt={self.kernel_t}, time_stride={self.time_stride}"


class DepthToSpaceUpsample(StreamingModule):
    """Causal conv (kernel ``kernel_size``) to ``C_out * ft * fs * fs`` channels, then
    depth-to-space in (t, h, w).

    Latent frame 0 stands for one frame only, so of the ``ft`` frames it produces the first
    ``ft - 1`` are dropped: ``1 + k`` frames in, ``1 + ft * k`` out. While streaming only the
    first chunk drops frames.

    Shapes: ``(B, C_in, t, h, w) -> (B, C_out, 1 + ft * (t - 1), fs * h, fs * w)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        time_factor: int,
        space_factor: int,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.ft, self.fs = time_factor, space_factor
        factor = time_factor * space_factor * space_factor
        self.conv = CausalConv3d(in_channels, out_channels * factor, kernel_size)
        # ICNR init: all sub-positions start with the same filter, so the upsampled output
        # begins as a nearest-neighbour upsample (no checkerboard at initialisation)
        with torch.no_grad():
            w = self.conv.conv.weight[::factor].clone()
            b = self.conv.conv.bias[::factor].clone()
            self.conv.conv.weight.copy_(w.repeat_interleave(factor, dim=0))
            self.conv.conv.bias.copy_(b.repeat_interleave(factor, dim=0))
        self._started = False

    def reset_stream(self) -> None:
        self._started = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = rearrange(
            x,
            "b (c ft fh fw) t h w -> b c (t ft) (h fh) (w fw)",
            ft=self.ft,
            fh=self.fs,
            fw=self.fs,
        )
        first_chunk = not (self.streaming and self._started)
        if self.streaming:
            self._started = True
        if first_chunk and self.ft > 1:
            x = x[:, :, self.ft - 1 :]
        return x
