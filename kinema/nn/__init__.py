"""Transformer core: RMSNorm, SwiGLU, rotary 1D/3D, attention with a static KV cache,
LLaMA blocks with optional adaLN, the :class:`Transformer` stack and :class:`TextSlots`
(projected text with a learned null text)."""

from kinema.nn.attention import Attention
from kinema.nn.block import Block, modulation
from kinema.nn.kv_cache import KVCache
from kinema.nn.mlp import SwiGLU, llama_hidden_dim
from kinema.nn.norm import RMSNorm
from kinema.nn.rotary import Rope, RotaryEmbedding, apply_rotary, default_axes_dim, grid_positions
from kinema.nn.text import TextSlots
from kinema.nn.transformer import Transformer, TransformerConfig

__all__ = [
    "Attention",
    "Block",
    "KVCache",
    "RMSNorm",
    "Rope",
    "RotaryEmbedding",
    "SwiGLU",
    "TextSlots",
    "Transformer",
    "TransformerConfig",
    "apply_rotary",
    "default_axes_dim",
    "grid_positions",
    "llama_hidden_dim",
    "modulation",
]
