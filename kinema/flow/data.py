"""Pyramid-flow training items from KL latent shards (``kinema tokenizer encode`` with a
KL tokenizer): normalised latents plus, optionally, text-encoder states of the captions."""

from __future__ import annotations

from torch.utils.data import Dataset

from kinema.errors import KinemaError
from kinema.lm.text import CaptionCache, TextEncoder
from kinema.tokenizer.shards import ConcatShards, ShardDataset, open_shards


class LatentClipDataset(Dataset):
    """Items ``latents (C, T, H, W)`` float32 and, with a ``text_encoder``, ``text (S, D)`` +
    ``text_mask (S,)`` of the item's caption (encoded once per distinct caption)."""

    def __init__(
        self, shards: ShardDataset | ConcatShards | str, text_encoder: TextEncoder | None = None
    ) -> None:
        self.shards = open_shards(shards)
        if self.shards.kind != "latents":
            raise KinemaError(
                f"'{self.shards.path}' holds discrete tokens; a flow model needs the latent "
                "shards of a KL tokenizer (e.g. the cpu-kl preset)"
            )
        self.captions = CaptionCache(text_encoder) if text_encoder is not None else None

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """``(C, T, H, W)`` of every item."""
        c, t, h, w = self.shards.item_shape
        return c, t, h, w

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, index: int) -> dict:
        item = self.shards[index]
        out = {"latents": item["latents"]}
        if self.captions is not None:
            out["text"], out["text_mask"] = self.captions(item.get("caption", ""))
        return out
