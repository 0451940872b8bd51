"""The unified vocabulary of the multitask LM: one id space for every modality (VideoPoet).

Layout, ``S`` specials, ``V`` visual tokens, ``A`` audio tokens::

    [0, S)            named special tokens, in :attr:`Vocabulary.specials` order
    [S, S + V)        visual token v (video tokenizer codebook index) -> S + v
    [S + V, S + V + A) audio token a (flattened RVQ token, kinema.audio.codes_to_tokens,
                      A = levels * codebook) -> S + V + a

Specials: ``<bov> <eov> <boa> <eoa>`` open / close a visual / audio segment of the prefix,
and the begin token of the target modality starts the generated segment (added to the
model's learned start block); ``<mask>`` stands for a hidden visual token in the
inpainting / outpainting prefix; ``<null>`` replaces every visual / audio token of a prefix
under the null condition (classifier-free guidance); one ``<task:NAME>`` marker per task.

Deliberately absent:
- ``<pad>``: AGD batches hold one task, so every sequence of a batch has the same length;
  the only ragged part, the text, has its own slots and validity mask.
- ``<bot>`` / ``<eot>``: text never becomes vocabulary ids; it enters as text-encoder
  states in the model's text slots, whose extent the slot positions already give.

The vocabulary is a field of :class:`~kinema.lm.TokenLMConfig`, so a model folder's
``config.json`` records the exact id layout (task list included).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from kinema.errors import KinemaError

MODALITY_SPECIALS: tuple[str, ...] = ("<bov>", "<eov>", "<boa>", "<eoa>", "<mask>", "<null>")
MODALITIES: tuple[str, ...] = ("video", "audio")
DEFAULT_TASKS: tuple[str, ...] = (
    "unconditional",
    "t2i",
    "t2v",
    "i2v",
    "continuation",
    "inpaint",
    "outpaint",
    "stylize:edges",
    "stylize:gray",
    "v2a",
    "a2v",
)


@dataclass
class Vocabulary:
    """Id layout of a multitask token LM.

    Attributes:
        visual_size: ``V``, the video tokenizer's codebook size.
        audio_levels, audio_codebook: the audio codec's RVQ depth ``Q`` and codes per level
            ``K`` (``A = Q * K`` audio tokens); 0 and 0 = no audio.
        tasks: task names, one ``<task:NAME>`` marker each (see :mod:`kinema.lm.tasks`).
    """

    visual_size: int
    audio_levels: int = 0
    audio_codebook: int = 0
    tasks: tuple[str, ...] = DEFAULT_TASKS

    def __post_init__(self) -> None:
        self.tasks = tuple(str(t) for t in self.tasks)
        if self.visual_size < 1:
            raise KinemaError(f"visual_size must be >= 1, got {self.visual_size}")
        if min(self.audio_levels, self.audio_codebook) < 0 or (
            (self.audio_levels == 0) != (self.audio_codebook == 0)
        ):
            raise KinemaError(
                "audio_levels and audio_codebook must both be 0 (no audio) or both >= 1, got "
                f"{self.audio_levels} and {self.audio_codebook}"
            )
        if not self.tasks or len(set(self.tasks)) != len(self.tasks) or "" in self.tasks:
            raise KinemaError(f"tasks must be distinct non-empty names, got {self.tasks}")

    # ------------------------------------------------------------------ layout
    @property
    def specials(self) -> tuple[str, ...]:
        """Names of ids ``0 .. S-1``."""
        return MODALITY_SPECIALS + tuple(f"<task:{t}>" for t in self.tasks)

    @property
    def num_special(self) -> int:
        return len(MODALITY_SPECIALS) + len(self.tasks)

    @property
    def audio_size(self) -> int:
        return self.audio_levels * self.audio_codebook

    @property
    def visual_offset(self) -> int:
        return self.num_special

    @property
    def audio_offset(self) -> int:
        return self.num_special + self.visual_size

    @property
    def size(self) -> int:
        """Total ids: the LM's embedding rows and output width."""
        return self.audio_offset + self.audio_size

    def special(self, name: str) -> int:
        """Id of a special token by name, e.g. ``"<bov>"``."""
        try:
            return self.specials.index(name)
        except ValueError:
            raise KinemaError(
                f"no special token {name!r}; this vocabulary has {', '.join(self.specials)}"
            ) from None

    def task_id(self, task: str) -> int:
        """Id of the ``<task:NAME>`` marker."""
        if task not in self.tasks:
            raise KinemaError(
                f"task {task!r} is not in this model's vocabulary; valid: {', '.join(self.tasks)}"
            )
        return len(MODALITY_SPECIALS) + self.tasks.index(task)

    def id_range(self, modality: str) -> tuple[int, int]:
        """``[lo, hi)`` ids of ``"video"`` or ``"audio"`` tokens."""
        if modality == "video":
            return self.visual_offset, self.audio_offset
        if modality == "audio":
            if not self.audio_size:
                raise KinemaError("this vocabulary has no audio tokens (audio_levels = 0)")
            return self.audio_offset, self.size
        raise KinemaError(f"unknown modality {modality!r}; valid: {', '.join(MODALITIES)}")

    def position_ranges(self, modality: str, shape: tuple[int, ...]) -> torch.Tensor:
        """``(*shape, 2)`` long: the ``[lo, hi)`` ids a token of ``modality`` may take at each
        position of a raw token array of ``shape``. Video: the visual range everywhere;
        audio ``(A * Q,)`` (frame-major, see :func:`kinema.audio.codes_to_tokens`): position
        ``j`` holds RVQ level ``q = j % Q``, ids ``[a + q * K, a + (q + 1) * K)``."""
        lo, hi = self.id_range(modality)
        if modality == "video":
            return torch.tensor([lo, hi]).expand(*shape, 2)
        if len(shape) != 1 or shape[0] % self.audio_levels:
            raise KinemaError(
                f"audio tokens are (A * {self.audio_levels},) (whole frames of "
                f"{self.audio_levels} levels), got shape {tuple(shape)}"
            )
        level = torch.arange(shape[0]) % self.audio_levels
        start = lo + level * self.audio_codebook
        return torch.stack([start, start + self.audio_codebook], dim=-1)

    def begin(self, modality: str) -> int:
        """``<bov>`` / ``<boa>``."""
        self.id_range(modality)
        return self.special("<bov>" if modality == "video" else "<boa>")

    def end(self, modality: str) -> int:
        """``<eov>`` / ``<eoa>``."""
        self.id_range(modality)
        return self.special("<eov>" if modality == "video" else "<eoa>")

    # ------------------------------------------------------------------ conversions
    def to_unified(self, tokens: torch.Tensor, modality: str) -> torch.Tensor:
        """Raw tokens of ``modality`` (any shape, long) -> unified ids (range-checked)."""
        lo, hi = self.id_range(modality)
        _check_range(tokens, 0, hi - lo, f"{modality} tokens")
        return tokens.long() + lo

    def from_unified(self, ids: torch.Tensor, modality: str) -> torch.Tensor:
        """Unified ids of ``modality`` -> raw tokens (error if any id is outside its range)."""
        lo, hi = self.id_range(modality)
        _check_range(ids, lo, hi, f"unified {modality} ids")
        return ids.long() - lo

    def visual_to_unified(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.to_unified(tokens, "video")

    def unified_to_visual(self, ids: torch.Tensor) -> torch.Tensor:
        return self.from_unified(ids, "video")

    def audio_to_unified(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.to_unified(tokens, "audio")

    def unified_to_audio(self, ids: torch.Tensor) -> torch.Tensor:
        return self.from_unified(ids, "audio")

    def is_content(self, ids: torch.Tensor) -> torch.Tensor:
        """True where ``ids`` are visual or audio tokens (not specials)."""
        return ids >= self.num_special

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_range(x: torch.Tensor, lo: int, hi: int, name: str) -> None:
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        raise KinemaError(f"{name} must be integer ids, got {x.dtype}")
    if x.numel() and (int(x.min()) < lo or int(x.max()) >= hi):
        raise KinemaError(
            f"{name} must be in [{lo}, {hi}), got values in [{int(x.min())}, {int(x.max())}]"
        )
