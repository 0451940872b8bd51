"""Shared by the token LM tests: a tiny TokenLM and the full condition set."""

from __future__ import annotations

import torch

from kinema.lm import TokenLM, preset

# class + text + one conditioning latent frame: every prefix part at once
COND = dict(num_classes=3, text_dim=12, cond_frames=1, max_text_len=6)


def build(seed: int = 0, **kw) -> TokenLM:
    """The ``tiny`` preset (with larger init so logits differ clearly), seeded, eval mode."""
    torch.manual_seed(seed)
    return TokenLM(preset("tiny", init_std=0.2, **kw)).eval()
