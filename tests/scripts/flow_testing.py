"""Shared by the flow and generation tests: a randomized tiny DiT, a tiny tokenizer and a
few physics clips encoded to shards with it."""

from __future__ import annotations

from pathlib import Path

import torch

from kinema.data import build_dataset
from kinema.flow import PyramidDiT, preset
from kinema.tokenizer import Tokenizer, TokenizerConfig
from kinema.tokenizer.shards import encode_dataset

# 5 x 32 x 32 clips -> 2 x 8 x 8 latents (4x space and time), ~20K parameters
TINY_TOKENIZER = dict(
    spatial_compression=4,
    num_frames=5,
    resolution=32,
    base_channels=8,
    channel_mult=(1, 1, 2),
    norm_groups=4,
)


def randomized(seed: int = 0, **overrides) -> PyramidDiT:
    """The tiny DiT with its zero-initialised parts (adaLN, output head) made random, so
    every path of the network contributes to the output; eval mode."""
    torch.manual_seed(seed)
    model = PyramidDiT(preset("tiny", **overrides))
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.1)
    return model.eval()


def tiny_tokenizer(path: Path, **overrides) -> Path:
    """Save an untrained tiny tokenizer (FSQ unless ``quantizer="kl"``) to ``path``."""
    torch.manual_seed(0)
    return Tokenizer(TokenizerConfig(**{**TINY_TOKENIZER, **overrides})).save_pretrained(path)


def physics_shards(tokenizer: Path, out: Path, n: int = 6) -> Path:
    """``n`` physics clips of 5 x 32 x 32 (with captions) encoded to shards in ``out``."""
    clips = build_dataset("physics", length=n, resolution=32, num_frames=5, seed=0)
    return encode_dataset(Tokenizer.from_pretrained(tokenizer), clips, out, batch_size=n)
