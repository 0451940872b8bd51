"""Tiny generator folders as `kinema generate`, `kinema.generate` and the app load them:
``config.json`` + ``model.safetensors`` + ``tokenizer/``; random weights, 5 x 32 x 32 video."""

from __future__ import annotations

from pathlib import Path

from flow_testing import randomized, tiny_tokenizer
from lm_testing import build

MINILM_DIM = 384  # all-MiniLM-L6-v2 states: what a prompt is encoded to


def flow_folder(path: Path, text: bool = False) -> Path:
    """A randomized tiny DiT on 2 x 8 x 8 KL latents; ``text``: prompt-conditioned."""
    model = randomized(latent_channels=4, frames=2, resolution=8, text_dim=MINILM_DIM * text)
    model.save_pretrained(path)
    tiny_tokenizer(path / "tokenizer", quantizer="kl", kl_channels=4)
    return path


def lm_folder(path: Path, block: tuple[int, int, int] = (1, 1, 8), text: bool = False) -> Path:
    """A tiny token LM (NTP for a 1x1x1 ``block``) on 1 given + 1 generated latent frame
    of 8 x 8 tokens of a 125-code FSQ tokenizer."""
    lm = build(
        vocab_size=125,
        latent_shape=(1, 8, 8),
        block_shape=block,
        cond_frames=1,
        text_dim=MINILM_DIM * text,
        max_text_len=8,
    )
    lm.save_pretrained(path)
    tiny_tokenizer(path / "tokenizer", fsq_levels=(5, 5, 5))
    return path
