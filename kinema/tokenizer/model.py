"""Causal 3D CNN encoder and decoder (MAGVIT-v2 family).

Every layer is causal in time: convs are :class:`CausalConv3d`, and normalisation is a
GroupNorm computed *per frame* (statistics over channels-in-group x H x W of one frame;
a GroupNorm over (T, H, W) would leak future frames into the statistics of the past).
So latent frame ``i`` depends on input frames ``<= ft * i`` only, and the whole network
can stream over time (:func:`kinema.tokenizer.conv.streaming`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from kinema.tokenizer.config import TokenizerConfig
from kinema.tokenizer.conv import CausalConv3d, DepthToSpaceUpsample


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm applied to each frame separately: ``(B, C, T, H, W) -> same``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = super().forward(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(y, "(b t) c h w -> b c t h w", b=b)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over channels at each (t, h, w) position: ``(B, C, T, H, W) -> same``.

    Causal *and* spatially local, so spatially tiled decoding differs from one-shot decoding
    only through the zero padding at tile borders (GroupNorm statistics depend on the tile).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(rearrange(x, "b c t h w -> b t h w c"))
        return rearrange(y, "b t h w c -> b c t h w")


def make_norm(kind: str, groups: int, channels: int) -> nn.Module:
    """``"group"``: :class:`FrameGroupNorm`; ``"channel"``: :class:`ChannelNorm`."""
    return FrameGroupNorm(groups, channels) if kind == "group" else ChannelNorm(channels)


class ResBlock(nn.Module):
    """``x + conv(silu(norm(conv(silu(norm(x))))))`` with 3x3x3 causal convs.

    ``(B, C_in, T, H, W) -> (B, C_out, T, H, W)``; a 1x1x1 conv matches channels on the skip.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, norm: str = "group"):
        super().__init__()
        self.norm1 = make_norm(norm, groups, in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = make_norm(norm, groups, out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.skip = (
            CausalConv3d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Level(nn.Module):
    """Residual blocks at one resolution, then an optional resampling layer."""

    def __init__(self, blocks: list[nn.Module], resample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.resample = resample if resample is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resample(self.blocks(x))


def _time_halved(cfg: TokenizerConfig, step: int) -> bool:
    """Whether spatial downsample ``step`` (0-based, shallow first) also halves time."""
    return step >= cfg.spatial_downsamples - cfg.temporal_downsamples


class Encoder(nn.Module):
    """Video ``(B, 3, 1 + ft*k, H, W)`` -> ``(B, out_channels, 1 + k, H/fs, W/fs)``.

    Downsampling is a stride-2 causal conv (kernel 3); with time stride 2 its front padding
    of two replicated frames makes output frame 0 see input frame 0 alone, and output frame
    ``i`` see input frames ``2i-2 .. 2i``.
    """

    def __init__(self, cfg: TokenizerConfig, out_channels: int) -> None:
        super().__init__()
        chans, g, n = cfg.stage_channels, cfg.norm_groups, cfg.norm
        self.conv_in = CausalConv3d(cfg.channels, chans[0], 3)
        levels = []
        c_in = chans[0]
        for i, c in enumerate(chans):
            blocks = [ResBlock(c_in if j == 0 else c, c, g, n) for j in range(cfg.num_res_blocks)]
            c_in = c
            down = None
            if i < cfg.spatial_downsamples:
                down = CausalConv3d(c, c, 3, stride=2, time_stride=2 if _time_halved(cfg, i) else 1)
            levels.append(Level(blocks, down))
        self.levels = nn.ModuleList(levels)
        self.mid = nn.Sequential(*[ResBlock(c_in, c_in, g, n) for _ in range(cfg.mid_res_blocks)])
        self.norm_out = make_norm(n, g, c_in)
        self.conv_out = CausalConv3d(c_in, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for level in self.levels:
            x = level(x)
        x = self.mid(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Decoder(nn.Module):
    """Latent ``(B, C, 1 + k, h, w)`` -> video ``(B, 3, 1 + ft*k, fs*h, fs*w)``.

    Mirrors :class:`Encoder`; upsampling is a causal conv followed by depth-to-space
    (:class:`DepthToSpaceUpsample`), which drops the extra frames of latent frame 0.
    """

    def __init__(self, cfg: TokenizerConfig, in_channels: int) -> None:
        super().__init__()
        chans, g, n = cfg.stage_channels, cfg.norm_groups, cfg.norm
        c_in = chans[-1]
        self.conv_in = CausalConv3d(in_channels, c_in, 3)
        self.mid = nn.Sequential(*[ResBlock(c_in, c_in, g, n) for _ in range(cfg.mid_res_blocks)])
        levels = []
        for i in reversed(range(len(chans))):
            c = chans[i]
            blocks = [ResBlock(c_in if j == 0 else c, c, g, n) for j in range(cfg.num_res_blocks)]
            c_in = c
            up = None
            if 1 <= i <= cfg.spatial_downsamples:  # undo the encoder's downsample step i - 1
                ft = 2 if _time_halved(cfg, i - 1) else 1
                # pointwise: a 3x3x3 conv to 8x the width would dominate params and FLOPs;
                # the residual blocks after it provide the spatial context
                up = DepthToSpaceUpsample(c, c, time_factor=ft, space_factor=2, kernel_size=1)
            levels.append(Level(blocks, up))
        self.levels = nn.ModuleList(levels)
        self.norm_out = make_norm(n, g, c_in)
        self.conv_out = CausalConv3d(c_in, cfg.channels, 3)

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the output conv (for the adaptive GAN weight)."""
        return self.conv_out.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.conv_in(z))
        for level in self.levels:
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(x)))
