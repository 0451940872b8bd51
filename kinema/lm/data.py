"""Token LM training items from pre-tokenized shards (``kinema tokenizer encode``).

A shard item holds a clip's tokens ``(T, h, w)``; the first ``cond_frames`` latent frames
become ``cond_tokens`` (frame prediction / image-to-video) and the rest the target
``tokens``. A class label comes from an integer field of the item (``label_key``); text
embeddings from a text encoder applied once per distinct caption (cached).

Multitask (VideoPoet): :class:`MultitaskDataset` lays token clips out as the items of several
tasks; the clips come from shards written with control and audio tokens (``kinema tokenizer
encode --controls edges,gray --audio-codec PATH``: no encoder in the training loop) or, for
small experiments, from :class:`TokenizedClips`, which encodes raw clips on the fly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from kinema.errors import KinemaError
from kinema.lm.config import TokenLMConfig
from kinema.lm.controls import control_tokens
from kinema.lm.tasks import Task, get_task, random_mask, task_sequence
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


class CaptionedClips(Dataset):
    """Shard items plus ``text (S, D)`` / ``text_mask (S,)``: each item's ``caption`` through
    ``text_encoder`` (each distinct caption encoded once) -- the text of a multitask
    model's text tasks (t2v, t2i, stylize)."""

    def __init__(self, clips: Dataset, text_encoder: TextEncoder) -> None:
        self.clips, self.captions = clips, CaptionCache(text_encoder)

    def __len__(self) -> int:
        return len(self.clips)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict:
        item = dict(self.clips[index])
        item["text"], item["text_mask"] = self.captions(item.get("caption", ""))
        return item


class MultitaskDataset(Dataset):
    """Training items of several VideoPoet tasks over one set of token clips.

    Item ``i`` is task ``tasks[i // n]`` on clip ``i % n`` (``n`` clips), laid out by
    :func:`kinema.lm.tasks.task_sequence`: ``task`` (str), ``prefix_ids (Pt,)``, ``target
    (n_blocks, L)``, ``positions (N, 3)``, ``start_id ()``, plus the clip's ``label`` and, for
    the tasks in ``text_tasks`` (default: those VideoPoet conditions on text, t2i / t2v /
    stylize; the others learn with the null text), its ``text`` / ``text_mask``. All items
    of one task have the same shapes,
    so a batch of one task stacks without padding: draw batches with
    :class:`kinema.lm.agd.AGDBatchSampler`.

    ``clips``: a shard folder (or :class:`~kinema.tokenizer.shards.ShardDataset` /
    ``ConcatShards``) or any dataset of clip fields: ``tokens (T, h, w)`` visual tokens of
    the whole clip; ``audio_tokens (A*Q,)`` for audio tasks; ``control:NAME (T, h, w)`` for
    ``stylize:NAME`` (see :class:`TokenizedClips`). Inpaint / outpaint masks are drawn per item from
    ``(seed, index)`` (:func:`kinema.lm.tasks.random_mask`), the same in every epoch and
    data worker.
    """

    def __init__(
        self,
        clips: Dataset | str | os.PathLike,
        config: TokenLMConfig,
        tasks: Sequence[str],
        *,
        given: int | None = None,
        seed: int = 0,
        text_tasks: Sequence[str] | None = None,
    ) -> None:
        if isinstance(clips, str | os.PathLike):
            clips = open_shards(clips)
        self.clips, self.config, self.given, self.seed = clips, config, given, seed
        self.tasks = tuple(tasks)
        self.specs = [get_task(t) for t in self.tasks]
        if text_tasks is None:
            text_tasks = [s.name for s in self.specs if s.text]
        self.text_tasks = set(text_tasks)
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise KinemaError(f"tasks must be distinct and non-empty, got {self.tasks}")
        if config.vocabulary is None:
            raise KinemaError("a multitask dataset needs a model config with a vocabulary")
        for t in self.tasks:
            config.vocabulary.task_id(t)
        self.num_clips = len(clips)  # type: ignore[arg-type]
        if self.num_clips < 1:
            raise KinemaError("the clip dataset is empty")
        first = clips[0]
        for spec in self.specs:
            for key in _clip_fields(spec):
                if key not in first:
                    hint = (
                        "encode the shards with --audio-codec"
                        if key == "audio_tokens"
                        else f"encode the shards with --controls {key.split(':', 1)[1]}"
                    )
                    raise KinemaError(f"task {spec.name} needs clip field '{key}': {hint}")
        self.latent_shape = tuple(first["tokens"].shape)

    def __len__(self) -> int:
        return len(self.tasks) * self.num_clips

    def task_of(self, index: int) -> str:
        return self.tasks[index // self.num_clips]

    @property
    def item_tasks(self) -> list[str]:
        """The task of every item, in index order (what the AGD sampler groups by)."""
        return [t for t in self.tasks for _ in range(self.num_clips)]

    @property
    def image_tasks(self) -> set[str]:
        """Tasks whose target is one latent frame (the curriculum's image data)."""
        return {s.name for s in self.specs if s.is_image}

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        task = self.task_of(index)
        clip = self.clips[index % self.num_clips]
        video = clip["tokens"][None]
        mask = None
        if task in ("inpaint", "outpaint"):
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
            mask = random_mask(task, self.config.latent_shape, g)
        control = None
        if task.startswith("stylize:"):
            control = clip[f"control:{task.split(':', 1)[1]}"][None]
        audio = clip["audio_tokens"][None] if "audio_tokens" in clip else None
        seq = task_sequence(
            self.config,
            task,
            video=video,
            audio=audio,
            control=control,
            mask=mask,
            given=self.given,
        )
        item = {k: v[0] for k, v in seq.batch().items()}
        item["task"] = task
        keys = ("text", "text_mask", "label") if task in self.text_tasks else ("label",)
        for key in keys:
            if key in clip:
                item[key] = clip[key]
        return item


def _clip_fields(spec: Task) -> list[str]:
    """Clip fields a task reads."""
    keys = ["tokens"]
    if spec.modality == "audio" or "audio" in spec.conditions:
        keys.append("audio_tokens")
    if "control" in spec.conditions:
        keys.append(f"control:{spec.name.split(':', 1)[1]}")
    return keys


class TokenizedClips(Dataset):
    """Raw clips -> the token fields of :class:`MultitaskDataset`, encoded on the fly.

    ``dataset`` items hold ``video (3, T, H, W)`` in [-1, 1] (e.g.
    :class:`kinema.data.physics_audio.PhysicsAudioVisualDataset`), optionally ``audio (1, S)``
    and ``caption``. Yields ``tokens (t, h, w)``; ``audio_tokens (audio_frames * Q,)`` when a
    ``codec`` is given (the waveform is padded with silence or cut to ``audio_frames`` code
    frames so that audio targets split into whole blocks); ``control:NAME`` for each of
    ``controls``; ``text`` / ``text_mask`` from ``text_encoder``. For real training runs,
    encode once and store shards instead: this costs a tokenizer pass per item.
    """

    def __init__(
        self,
        dataset: Dataset,
        tokenizer: torch.nn.Module,
        *,
        codec: torch.nn.Module | None = None,
        audio_frames: int = 0,
        controls: Sequence[str] = (),
        text_encoder: TextEncoder | None = None,
    ) -> None:
        if codec is not None and audio_frames < 1:
            raise KinemaError("with a codec give audio_frames >= 1 (code frames per clip)")
        self.dataset, self.tokenizer, self.codec = dataset, tokenizer, codec
        self.audio_frames, self.controls = audio_frames, tuple(controls)
        self.captions = CaptionCache(text_encoder) if text_encoder is not None else None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    @torch.no_grad()
    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        video = item["video"][None]
        out = {"tokens": self.tokenizer.encode(video)[0]}
        for name in self.controls:
            out[f"control:{name}"] = control_tokens(self.tokenizer, video, name)[0]
        if self.codec is not None:
            out["audio_tokens"] = self.codec.clip_tokens(item["audio"][None], self.audio_frames)[0]
        if self.captions is not None:
            out["text"], out["text_mask"] = self.captions(item.get("caption", ""))
        return out
