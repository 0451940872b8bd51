"""Token LM: next-token (VideoPoet) and next-block (NBP) prediction in one model.

>>> from kinema.lm import TokenLM, preset
>>> model = TokenLM(preset("tiny"))
>>> loss = model.loss({"tokens": tokens})["loss"]        # tokens (B, t, h, w) long
>>> from kinema.sample import generate
>>> video_tokens = generate(model, batch_size=2, seed=0)  # (B, t, h, w)
"""

from kinema.lm.blocks import check_tiling, from_blocks, to_blocks
from kinema.lm.config import PRESETS, TokenLMConfig, preset
from kinema.lm.loss import chunked_cross_entropy
from kinema.lm.mask import block_causal_mask
from kinema.lm.model import TokenLM, sequence_positions
from kinema.lm.text import ByteTextEncoder, HFTextEncoder, TextEncoder, default_text_encoder_path

__all__ = [
    "PRESETS",
    "ByteTextEncoder",
    "HFTextEncoder",
    "TextEncoder",
    "TokenLM",
    "TokenLMConfig",
    "block_causal_mask",
    "check_tiling",
    "chunked_cross_entropy",
    "default_text_encoder_path",
    "from_blocks",
    "preset",
    "sequence_positions",
    "to_blocks",
]
