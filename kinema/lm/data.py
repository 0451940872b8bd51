"""Token LM training items from pre-tokenized shards (``kinema tokenizer encode``).

A shard item holds a clip's tokens ``(T, h, w)``; the first ``cond_frames`` latent frames
become ``cond_tokens`` (frame prediction / image-to-video) and the rest the target
``tokens``. A class label comes from an integer field of the item (``label_key``); text
embeddings from a text encoder applied once per distinct caption (cached).
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from kinema.errors import KinemaError
from kinema.lm.text import CaptionCache, TextEncoder
from kinema.tokenizer.shards import ConcatShards, ShardDataset, open_shards


class TokenClipDataset(Dataset):
    """Items ``tokens (T - cond_frames, h, w)``, ``cond_tokens (cond_frames, h, w)``
    (if any), ``label ()`` (if ``label_key``), ``text (S, D)`` + ``text_mask (S,)`` (if a
    ``text_encoder`` is given; captions are encoded once and cached)."""

    def __init__(
        self,
        shards: ShardDataset | ConcatShards | str,
        cond_frames: int = 0,
        label_key: str | None = None,
        text_encoder: TextEncoder | None = None,
    ) -> None:
        self.shards = open_shards(shards)
        if self.shards.kind != "tokens":
            raise KinemaError(
                f"'{self.shards.path}' holds continuous latents; a token LM needs the shards "
                "of a discrete (FSQ / LFQ / VQ) tokenizer"
            )
        t = self.shards.item_shape[0]
        if not 0 <= cond_frames < t:
            raise KinemaError(f"cond_frames must be in [0, {t - 1}] for {t} latent frames")
        self.cond_frames, self.label_key = cond_frames, label_key
        self.captions = CaptionCache(text_encoder) if text_encoder is not None else None

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(t, h, w)`` of the generated tokens."""
        t, h, w = self.shards.item_shape
        return t - self.cond_frames, h, w

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, index: int) -> dict:
        item = self.shards[index]
        tokens = item["tokens"]
        out = {"tokens": tokens[self.cond_frames :]}
        if self.cond_frames:
            out["cond_tokens"] = tokens[: self.cond_frames]
        if self.label_key is not None:
            if self.label_key not in item:
                raise KinemaError(f"shard items have no field '{self.label_key}' for labels")
            out["label"] = torch.tensor(int(item[self.label_key]))
        if self.captions is not None:
            out["text"], out["text_mask"] = self.captions(item.get("caption", ""))
        return out
