"""Hugging Face Llama -> kinema: config translation, state-dict mapping, a small causal LM.

Used by the parity test and by decode benchmarks against HF ``generate``. ``transformers``
is only imported when loading by name or path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from kinema.errors import KinemaError
from kinema.nn.transformer import Transformer, TransformerConfig

logger = logging.getLogger(__name__)


def config_from_llama(hf_config: Any) -> TransformerConfig:
    """:class:`TransformerConfig` equivalent to a ``transformers.LlamaConfig``.

    Only plain Llama is supported: default rotary (no scaling), SiLU, no biases.
    """
    params = getattr(hf_config, "rope_parameters", None) or {}  # transformers >= 5
    scaling = getattr(hf_config, "rope_scaling", None) or {}  # transformers 4.x
    rope_type = params.get("rope_type", scaling.get("rope_type", "default"))
    theta = params.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
    unsupported = {
        "rope_type": (rope_type, "default"),
        "hidden_act": (hf_config.hidden_act, "silu"),
        "attention_bias": (getattr(hf_config, "attention_bias", False), False),
        "mlp_bias": (getattr(hf_config, "mlp_bias", False), False),
    }
    bad = {k: got for k, (got, want) in unsupported.items() if got != want}
    if bad:
        raise KinemaError(f"unsupported Llama options {bad}; kinema supports plain Llama only")
    return TransformerConfig(
        dim=hf_config.hidden_size,
        n_layers=hf_config.num_hidden_layers,
        n_heads=hf_config.num_attention_heads,
        n_kv_heads=hf_config.num_key_value_heads or hf_config.num_attention_heads,
        head_dim=getattr(hf_config, "head_dim", None),
        mlp_hidden=hf_config.intermediate_size,
        norm_eps=hf_config.rms_norm_eps,
        rope="1d",
        rope_theta=float(theta),
        max_seq_len=hf_config.max_position_embeddings,
    )


def state_dict_from_llama(
    hf_state: Mapping[str, torch.Tensor], n_layers: int
) -> dict[str, torch.Tensor]:
    """Map a ``LlamaForCausalLM`` state dict to :class:`LlamaLM` keys.

    ``model.embed_tokens`` -> ``embed``, ``model.layers.i`` -> ``core.layers.i`` (q/k/v
    concatenated into ``attn.wqkv``), ``model.norm`` -> ``core.norm``, ``lm_head`` ->
    ``head`` (the embedding when tied and absent).
    """
    out = {"embed.weight": hf_state["model.embed_tokens.weight"]}
    out["core.norm.weight"] = hf_state["model.norm.weight"]
    out["head.weight"] = hf_state.get("lm_head.weight", out["embed.weight"])
    for i in range(n_layers):
        src, dst = f"model.layers.{i}.", f"core.layers.{i}."
        qkv = [hf_state[f"{src}self_attn.{p}_proj.weight"] for p in "qkv"]
        out[dst + "attn.wqkv.weight"] = torch.cat(qkv, dim=0)
        out[dst + "attn.wo.weight"] = hf_state[src + "self_attn.o_proj.weight"]
        out[dst + "mlp.w1.weight"] = hf_state[src + "mlp.gate_proj.weight"]
        out[dst + "mlp.w3.weight"] = hf_state[src + "mlp.up_proj.weight"]
        out[dst + "mlp.w2.weight"] = hf_state[src + "mlp.down_proj.weight"]
        out[dst + "attn_norm.weight"] = hf_state[src + "input_layernorm.weight"]
        out[dst + "mlp_norm.weight"] = hf_state[src + "post_attention_layernorm.weight"]
    return out


class LlamaLM(nn.Module):
    """Token embedding + :class:`Transformer` core + linear head: a Llama causal LM.

    Shapes: ``tokens (B, N)`` long -> logits ``(B, N, vocab)``.
    """

    def __init__(self, config: TransformerConfig, vocab_size: int, tie: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, config.dim)
        self.core = Transformer(config)
        self.head = nn.Linear(config.dim, vocab_size, bias=False)
        if tie:
            self.head.weight = self.embed.weight
        self.causal: torch.Tensor | None = None

    def setup_caches(self, batch_size: int, max_len: int, dtype: torch.dtype | None = None) -> None:
        """Static KV caches of ``max_len`` slots and the matching causal mask."""
        self.core.setup_caches(batch_size, max_len, dtype)
        device = self.embed.weight.device
        self.causal = torch.ones(max_len, max_len, dtype=torch.bool, device=device).tril()

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Causal forward. Without ``input_pos`` the whole ``(B, N)`` sequence at positions
        ``0..N-1``; with ``input_pos (N,)`` the new tokens at those positions (= cache slots)
        after :meth:`setup_caches`."""
        n = tokens.shape[1]
        if input_pos is None:
            pos = torch.arange(n, device=tokens.device)
            mask = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril()
        else:
            if self.causal is None:
                raise KinemaError("input_pos given but no KV cache: call setup_caches() first")
            pos, mask = input_pos, self.causal
        return self.head(self.core(self.embed(tokens), pos, mask, input_pos))


def from_hf_llama(model: Any) -> LlamaLM:
    """Build a :class:`LlamaLM` with the weights of an HF ``LlamaForCausalLM``.

    ``model``: a ``LlamaForCausalLM`` instance, or a name/path for
    ``LlamaForCausalLM.from_pretrained``. Weights keep their dtype and device.
    """
    if isinstance(model, (str, os.PathLike)):
        from transformers import LlamaForCausalLM

        model = LlamaForCausalLM.from_pretrained(model)
    hf_config = model.config
    config = config_from_llama(hf_config)
    tie = bool(getattr(hf_config, "tie_word_embeddings", False))
    hf_state = model.state_dict()
    param = hf_state["model.embed_tokens.weight"]
    with torch.device("meta"):
        lm = LlamaLM(config, hf_config.vocab_size, tie=tie)
    state = state_dict_from_llama(hf_state, config.n_layers)
    # assign=True adopts the tensors (dtype/device) instead of copying into meta storage.
    missing, unexpected = lm.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not (tie and k == "head.weight")]
    if missing or unexpected:
        raise KinemaError(
            f"Llama weights do not map: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    if tie:
        lm.head.weight = lm.embed.weight
    # Non-persistent buffers (rotary tables) were built on meta: rebuild them for real.
    lm.core.rope = type(lm.core.rope)(
        config.resolved_head_dim, config.rope_theta, config.resolved_axes_dim
    ).to(param.device)
    logger.info(
        "loaded Llama: %d layers, dim %d, %d/%d heads, vocab %d",
        config.n_layers,
        config.dim,
        config.n_heads,
        config.n_kv_heads,
        hf_config.vocab_size,
    )
    return lm
