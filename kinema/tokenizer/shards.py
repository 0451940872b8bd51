"""Pre-tokenized datasets: encode a dataset once, train token LMs and flow models on shards.

Layout of a shard folder::

    index.json                 format, kind ("tokens" | "latents"), tokenizer config, shards
    shard_00000.safetensors    "tokens" (n, t, h, w) int16/int32 or "latents" (n, C, t, h, w)
                               float16, plus every tensor field of the items (e.g. physics
                               "positions" (n, T, 2, 2)), stacked
    shard_00000.jsonl          the other fields of each item (caption, labels, params, ...)

Multitask (VideoPoet) fields, optional and listed in ``index.json``: ``"controls"`` names the
stored control-video tokens ``control:NAME`` (n, t, h, w) (the control of each clip,
:func:`kinema.lm.controls.control_video`, tokenized by the same tokenizer) and ``"audio"``
(``levels``, ``codebook_size``, ``frames``, ``sample_rate``) the stored audio codec tokens
``audio_tokens`` (n, frames * levels) (:meth:`kinema.audio.AudioCodec.clip_tokens`; the
waveform itself is then not stored). Older folders without these keys read as before.

Shards are written atomically and ``index.json`` last, so a folder with an index is
complete; an interrupted run restarts from the first missing shard.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from kinema.errors import KinemaError
from kinema.modeling import config_to_dict
from kinema.nn.precision import autocast as precision_autocast
from kinema.tokenizer.tokenizer import Tokenizer
from kinema.utils.fs import atomic_file
from kinema.utils.jsonable import jsonable

log = logging.getLogger(__name__)

FORMAT = "kinema-shards/1"
INDEX = "index.json"


def _shard_name(i: int) -> str:
    return f"shard_{i:05d}"


def _token_dtype(vocab_size: int) -> torch.dtype:
    return torch.int16 if vocab_size <= torch.iinfo(torch.int16).max + 1 else torch.int32


@torch.no_grad()
def encode_dataset(
    tokenizer: Tokenizer,
    dataset: Dataset,
    out: str | os.PathLike,
    *,
    num_items: int | None = None,
    batch_size: int = 8,
    shard_size: int = 1024,
    precision: str = "auto",
    source: dict | None = None,
    on_batch: Callable[[int], None] | None = None,
    controls: Sequence[str] = (),
    codec: torch.nn.Module | None = None,
    audio_frames: int | None = None,
) -> Path:
    """Encode ``dataset[0 : num_items]`` (all by default) into shards in folder ``out``.

    Tokens are stored as int16 when the vocabulary fits (else int32), KL latents as
    float16 (normalised: about unit variance). ``source`` is recorded in the index (what
    dataset this was). ``on_batch(n)`` is called after each batch of ``n`` items.

    ``controls``: also store the tokens of these control videos (``control:NAME``) for the
    stylization tasks. ``codec``: an :class:`~kinema.audio.AudioCodec`; the items' ``audio``
    ``(1, S)`` is stored as ``audio_tokens`` of ``audio_frames`` code frames (default: the
    first item's length).
    """
    from kinema.lm.controls import CONTROLS, control_video

    controls = tuple(controls)
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown or len(set(controls)) != len(controls):
        raise KinemaError(
            f"controls must be distinct names of {', '.join(CONTROLS)}, got {', '.join(controls)}"
        )
    out = Path(out)
    n_total = len(dataset) if num_items is None else num_items  # type: ignore[arg-type]
    if not 0 < n_total <= len(dataset):  # type: ignore[arg-type]
        raise KinemaError(f"num_items must be in 1..{len(dataset)}, got {n_total}")  # type: ignore[arg-type]
    if batch_size < 1 or shard_size < 1:
        raise KinemaError(f"batch_size and shard_size must be >= 1, got {batch_size}, {shard_size}")
    if (out / INDEX).is_file():
        raise KinemaError(f"'{out}' already holds shards (index.json); choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.eval()
    kind = "tokens" if tokenizer.is_discrete else "latents"
    if controls and kind != "tokens":
        raise KinemaError("control-video tokens need a discrete (FSQ / LFQ / VQ) tokenizer")
    audio = None
    if codec is not None:
        first = dataset[0]
        if not isinstance(first.get("audio"), torch.Tensor):
            raise KinemaError(
                "the dataset's items have no audio to encode with the audio codec (use physics: "
                "its clips have sound)"
            )
        frames = audio_frames or codec.num_frames(first["audio"].shape[-1])
        if frames < 1:
            raise KinemaError(f"audio_frames must be >= 1, got {frames}")
        cfg = codec.config
        audio = {
            "levels": cfg.levels,
            "codebook_size": cfg.codebook_size,
            "frames": frames,
            "sample_rate": cfg.sample_rate,
        }
        codec.eval()
    device = next(tokenizer.parameters()).device
    shards = []
    for s, start in enumerate(range(0, n_total, shard_size)):
        stop = min(start + shard_size, n_total)
        name = _shard_name(s)
        shards.append({"name": name, "count": stop - start})
        if (out / f"{name}.safetensors").is_file() and (out / f"{name}.jsonl").is_file():
            log.info("%s exists, skipping", name)  # resuming an interrupted run
            if on_batch is not None:
                on_batch(stop - start)
            continue
        codes, tensors, metas = [], {}, []
        for b in range(start, stop, batch_size):
            items = [dataset[i] for i in range(b, min(b + batch_size, stop))]
            video = torch.stack([it["video"] for it in items]).to(device)
            styled = {f"control:{c}": control_video(video, c) for c in controls}
            with precision_autocast(device, precision):
                z = tokenizer.encode(video)
                styled = {k: tokenizer.encode(v) for k, v in styled.items()}
            if kind == "tokens":
                dtype = _token_dtype(tokenizer.vocab_size)
                codes.append(z.to(dtype))
                for k, v in styled.items():
                    tensors.setdefault(k, []).extend(v.to(dtype).cpu())
            else:
                codes.append(z.half())
            drop = {"video"}
            if audio is not None:
                wave = torch.stack([it["audio"] for it in items])
                param = next(codec.parameters())
                a = codec.clip_tokens(wave.to(param.device), audio["frames"]).cpu()
                a_dtype = _token_dtype(audio["levels"] * audio["codebook_size"])
                tensors.setdefault("audio_tokens", []).extend(a.to(a_dtype))
                drop.add("audio")
            for it in items:
                rest = {k: v for k, v in it.items() if k not in drop}
                for k, v in rest.items():
                    if isinstance(v, torch.Tensor):
                        tensors.setdefault(k, []).append(v)
                metas.append(jsonable({k: v for k, v in rest.items() if not torch.is_tensor(v)}))
            if on_batch is not None:
                on_batch(len(items))
        payload = {kind: torch.cat(codes).cpu().contiguous()}
        payload.update({k: torch.stack(v).contiguous() for k, v in tensors.items()})
        with atomic_file(out / f"{name}.safetensors") as tmp:
            save_file(payload, str(tmp))
        with atomic_file(out / f"{name}.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(m) + "\n" for m in metas))
    first = load_file(str(out / f"{shards[0]['name']}.safetensors"))[kind]
    index = {
        "format": FORMAT,
        "kind": kind,
        "num_items": n_total,
        "item_shape": list(first.shape[1:]),
        "vocab_size": tokenizer.vocab_size,
        "tokenizer": {"model_type": type(tokenizer).__name__, **config_to_dict(tokenizer.config)},
        "source": jsonable(source or {}),
        "controls": list(controls),
        "audio": audio,
        "shards": shards,
    }
    with atomic_file(out / INDEX) as tmp:
        tmp.write_text(json.dumps(index, indent=2))
    log.info("wrote %d items (%s %s) to %s", n_total, kind, index["item_shape"], out)
    return out


class ShardDataset(Dataset):
    """Items of a shard folder: ``tokens (t, h, w)`` long or ``latents (C, t, h, w)``
    float32, the stored tensor fields, and the JSON fields (caption, labels, ...).

    Shards load on first use and stay in memory (they are small: a 5 x 16 x 16 int16 clip
    is 2.5 KB).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        index_file = self.path / INDEX
        if not index_file.is_file():
            raise KinemaError(
                f"'{self.path}' is not a shard folder (no {INDEX}); "
                "write one with `kinema tokenizer encode`"
            )
        self.index = json.loads(index_file.read_text())
        if self.index.get("format") != FORMAT:
            raise KinemaError(
                f"'{index_file}' has format {self.index.get('format')!r}, expected {FORMAT!r}"
            )
        self.kind: str = self.index["kind"]
        self.counts = [s["count"] for s in self.index["shards"]]
        self.starts = [sum(self.counts[:i]) for i in range(len(self.counts))]
        self._loaded: dict[int, tuple[dict[str, torch.Tensor], list[dict]]] = {}

    @property
    def vocab_size(self) -> int | None:
        return self.index.get("vocab_size")

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.index["item_shape"])

    @property
    def tokenizer(self) -> str | None:
        """The tokenizer (folder or shipped name) that wrote the shards, if recorded."""
        return self.index.get("source", {}).get("tokenizer")

    @property
    def controls(self) -> tuple[str, ...]:
        """Names of the stored control-video tokens (``control:NAME`` fields)."""
        return tuple(self.index.get("controls", ()))

    @property
    def audio(self) -> dict | None:
        """Stored audio tokens: ``levels``, ``codebook_size``, ``frames``, ``sample_rate``."""
        return self.index.get("audio")

    @property
    def audio_codec(self) -> str | None:
        """The audio codec (folder) that wrote ``audio_tokens``, if recorded."""
        return self.index.get("source", {}).get("audio_codec")

    def __len__(self) -> int:
        return self.index["num_items"]

    def _shard(self, s: int) -> tuple[dict[str, torch.Tensor], list[dict]]:
        if s not in self._loaded:
            name = self.index["shards"][s]["name"]
            tensors = load_file(str(self.path / f"{name}.safetensors"))
            lines = (self.path / f"{name}.jsonl").read_text().splitlines()
            self._loaded[s] = (tensors, [json.loads(line) for line in lines])
        return self._loaded[s]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        s = bisect.bisect_right(self.starts, index) - 1
        tensors, metas = self._shard(s)
        j = index - self.starts[s]
        item = dict(metas[j])
        for k, v in tensors.items():
            item[k] = v[j]
        main = item[self.kind]
        item[self.kind] = main.long() if self.kind == "tokens" else main.float()
        for k in token_fields(self):
            item[k] = item[k].long()
        return item


# what the folders of one ConcatShards must agree on
FIELDS = ("kind", "item_shape", "vocab_size", "tokenizer", "controls", "audio", "audio_codec")


def token_fields(shards: ShardDataset | ConcatShards) -> list[str]:
    """The multitask token fields besides ``tokens``: ``control:NAME`` and ``audio_tokens``."""
    fields = [f"control:{c}" for c in shards.controls]
    return fields + (["audio_tokens"] if shards.audio else [])


class ConcatShards(Dataset):
    """Several shard folders of one tokenizer read as one dataset (e.g. physics + shapes).

    Exposes what the training datasets read from :class:`ShardDataset` (:data:`FIELDS`);
    the folders must agree on all of them.
    """

    def __init__(self, parts: list[ShardDataset]) -> None:
        if not parts:
            raise KinemaError("ConcatShards needs at least one shard folder")
        first = parts[0]
        for p in parts[1:]:
            for what in FIELDS:
                if getattr(p, what) != getattr(first, what):
                    raise KinemaError(
                        f"shard folders '{first.path}' and '{p.path}' differ in {what} "
                        f"({getattr(first, what)} vs {getattr(p, what)}); encode them with "
                        "one tokenizer at one clip size"
                    )
        self.parts = parts
        self.path = Path(", ".join(str(p.path) for p in parts))
        self.kind, self.item_shape = first.kind, first.item_shape
        self.vocab_size, self.tokenizer = first.vocab_size, first.tokenizer
        self.controls, self.audio = first.controls, first.audio
        self.audio_codec = first.audio_codec
        self.starts = [sum(len(p) for p in parts[:i]) for i in range(len(parts))]

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        s = bisect.bisect_right(self.starts, index) - 1
        return self.parts[s][index - self.starts[s]]


def open_shards(
    shards: ShardDataset | ConcatShards | str | os.PathLike,
) -> ShardDataset | ConcatShards:
    """A shard dataset as is, or the shard folder at a path."""
    return ShardDataset(shards) if isinstance(shards, (str, os.PathLike)) else shards
