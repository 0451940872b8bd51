"""Causal video tokenizer (MAGVIT-v2 family): FSQ / LFQ / VQ tokens or a KL latent.

>>> from kinema.tokenizer import Tokenizer, preset
>>> tok = Tokenizer(preset("tiny"))
>>> tokens = tok.encode(video)   # (B, 3, 17, 64, 64) -> (B, 5, 8, 8) long
>>> recon = tok.decode(tokens)   # -> (B, 3, 17, 64, 64)

Index bit order of LFQ / FSQ tokens: see :mod:`kinema.tokenizer.quantizers`.
"""

from kinema.tokenizer.chunked import blend_tiles, decode_chunked, encode_chunked
from kinema.tokenizer.config import PRESETS, QUANTIZERS, TokenizerConfig, preset
from kinema.tokenizer.conv import CausalConv3d, DepthToSpaceUpsample, StreamingModule, streaming
from kinema.tokenizer.discriminator import (
    PatchDiscriminator3D,
    adaptive_gan_weight,
    hinge_d_loss,
    hinge_g_loss,
)
from kinema.tokenizer.model import Decoder, Encoder, FrameGroupNorm, ResBlock
from kinema.tokenizer.quantizers import (
    FSQ,
    LFQ,
    VQ,
    DiagonalGaussian,
    QuantizerOutput,
    build_quantizer,
)
from kinema.tokenizer.tokenizer import Tokenizer

__all__ = [
    "FSQ",
    "LFQ",
    "PRESETS",
    "QUANTIZERS",
    "VQ",
    "CausalConv3d",
    "Decoder",
    "DepthToSpaceUpsample",
    "DiagonalGaussian",
    "Encoder",
    "FrameGroupNorm",
    "PatchDiscriminator3D",
    "QuantizerOutput",
    "ResBlock",
    "StreamingModule",
    "Tokenizer",
    "TokenizerConfig",
    "adaptive_gan_weight",
    "blend_tiles",
    "build_quantizer",
    "decode_chunked",
    "encode_chunked",
    "hinge_d_loss",
    "hinge_g_loss",
    "preset",
    "streaming",
]
