"""VideoPoet's tasks as sequence layouts of the one :class:`~kinema.lm.TokenLM`.

A task turns raw tokens into ``[prefix | start block | target blocks]`` (a
:class:`TaskSequence`); the model, its mask builder, the loss and the decode loop are the
same for every task and every block shape.

Prefix (bidirectional): the model's class and text slots (text stays on the text path:
encoder states, never vocabulary ids), then *prefix tokens* in the unified vocabulary::

    <task:NAME>  [<bov> visual tokens <eov>]  [<boa> audio tokens <eoa>]

with the segments each task conditions on. Target (block-causal, blocks of the model's
``block_shape``): a video grid, a single image frame, or audio tokens; its start block is
the learned start plus ``<bov>`` / ``<boa>``.

=============  ==========================================  ========================
task           prefix segments                             target
=============  ==========================================  ========================
unconditional  -                                           video (T frames)
t2i            - (text)                                    image (frame 0)
t2v            - (text)                                    video
i2v            frame 0                                     frames 1 .. T-1
continuation   frames 0 .. c-1 (``given`` = c)             frames c .. T-1
inpaint        video, hidden tokens = ``<mask>``           video
outpaint       video, border tokens = ``<mask>``           video
stylize:NAME   control video NAME (text)                   video
v2a            video                                       audio (A*Q tokens)
a2v            audio                                       video
=============  ==========================================  ========================

Rotary positions ``(t, h, w)`` (``o`` = class + text slots, ``g = o + 5``):
- class / text slot ``k``: ``(k, k, k)`` as in the single-task layout; the task marker
  and the four delimiters ``<bov> <eov> <boa> <eoa>`` take the next five such 1D slots
  ``o .. o+4`` (fixed per kind, so the grid origin ``g`` is the same for every task);
- visual token of latent frame ``f``, cell ``(y, x)``: ``(g + f, g + y, g + x)`` in the prefix
  and in the target alike, so a target token and the prefix token it is derived from
  (inpainting, stylization) or continues (i2v, continuation) share or neighbour positions;
- audio token ``j = a * Q + q`` (code frame ``a`` of ``A``, RVQ level ``q``):
  ``(g + floor(a * T / A), g + q, g + a)``: time-aligned with the video on the t axis (the
  clip's ``A`` code frames span its ``T`` latent frames), the level on h, the fine code frame
  on w so that every audio token has its own position;
- start block: target block 0 moved back in time by the block's extent (``bt`` latent
  frames for video, 1 for audio), as in the single-task layout.

Audio targets are cut into blocks of ``L = bt*bh*bw`` consecutive tokens (audio is 1D), so
``A * Q`` must be a multiple of ``L``; pad the waveform to ``config.audio_frames`` frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import rearrange, repeat

from kinema.errors import KinemaError
from kinema.lm.blocks import check_tiling, from_blocks, to_blocks
from kinema.lm.config import TokenLMConfig
from kinema.lm.controls import CONTROLS
from kinema.lm.vocab import Vocabulary
from kinema.nn.rotary import grid_positions

# 1D slots after the class / text slots, one per kind of special prefix token
SPECIAL_SLOTS: tuple[str, ...] = ("task", "<bov>", "<eov>", "<boa>", "<eoa>")
CONDITIONS = ("image", "frames", "masked", "control", "video", "audio")
TARGETS = ("video", "image", "rest", "audio")


@dataclass(frozen=True)
class Task:
    """What a task conditions on and what it generates.

    ``conditions``: prefix segments, from ``"image"`` (latent frame 0), ``"frames"`` (the
    first ``given`` latent frames), ``"masked"`` (the clip with hidden tokens replaced by
    ``<mask>``), ``"control"`` (a control video's tokens), ``"video"``, ``"audio"``.
    ``target``: ``"video"`` (whole clip), ``"image"`` (frame 0), ``"rest"`` (the frames after
    the given ones) or ``"audio"``. ``text``: conditioned on text in VideoPoet (any task
    accepts text; the others are trained with the null text).
    """

    name: str
    conditions: tuple[str, ...]
    target: str
    text: bool = False

    @property
    def modality(self) -> str:
        """Target modality: ``"video"`` or ``"audio"``."""
        return "audio" if self.target == "audio" else "video"

    @property
    def is_image(self) -> bool:
        """An image task (one latent frame), for the image / video curriculum."""
        return self.target == "image"


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("unconditional", (), "video"),
        Task("t2i", (), "image", text=True),
        Task("t2v", (), "video", text=True),
        Task("i2v", ("image",), "rest"),
        Task("continuation", ("frames",), "rest"),
        Task("inpaint", ("masked",), "video"),
        Task("outpaint", ("masked",), "video"),
        Task("v2a", ("video",), "audio"),
        Task("a2v", ("audio",), "video"),
    )
}


def get_task(name: str) -> Task:
    """A task by name: a :data:`TASKS` key or ``stylize:CONTROL`` for a registered control
    (:data:`kinema.lm.controls.CONTROLS`)."""
    if name in TASKS:
        return TASKS[name]
    if name.startswith("stylize:"):
        control = name.split(":", 1)[1]
        if control in CONTROLS:
            return Task(name, ("control",), "video", text=True)
        raise KinemaError(
            f"unknown control {control!r} in task {name!r}; registered: {', '.join(CONTROLS)}"
        )
    valid = [*TASKS, *(f"stylize:{c}" for c in CONTROLS)]
    raise KinemaError(f"unknown task {name!r}; valid: {', '.join(valid)}")


def default_given(config: TokenLMConfig) -> int:
    """Given latent frames of ``continuation`` when not stated: half the clip, at least 1
    (5 x 16 x 16 clips: 2 frames = 5 video frames in, as in NBP's K600 setting)."""
    return max(1, config.latent_shape[0] // 2)


# ---------------------------------------------------------------------- masks
@dataclass(frozen=True)
class Box:
    """A hidden box of latent cells: rows ``[y0, y1)``, columns ``[x0, x1)``, frames
    ``[t0, t1)`` (``t1=None``: to the last frame)."""

    y0: int
    y1: int
    x0: int
    x1: int
    t0: int = 0
    t1: int | None = None


MaskSpec = torch.Tensor | Box | int | tuple[int, int, int, int] | None


def box_mask(grid: Sequence[int], box: Box) -> torch.Tensor:
    """``(t, h, w)`` bool, True inside ``box`` (hidden)."""
    t, h, w = grid
    t1 = t if box.t1 is None else box.t1
    if not (0 <= box.t0 < t1 <= t and 0 <= box.y0 < box.y1 <= h and 0 <= box.x0 < box.x1 <= w):
        raise KinemaError(f"box {box} is empty or outside the latent grid {tuple(grid)}")
    m = torch.zeros(t, h, w, dtype=torch.bool)
    m[box.t0 : t1, box.y0 : box.y1, box.x0 : box.x1] = True
    return m


def border_mask(grid: Sequence[int], border: int | Sequence[int]) -> torch.Tensor:
    """``(t, h, w)`` bool, True on a border of ``border`` cells (one int, or ``(top, bottom,
    left, right)``) in every frame: the part outpainting regenerates."""
    t, h, w = grid
    top, bottom, left, right = (border,) * 4 if isinstance(border, int) else tuple(border)
    if min(top, bottom, left, right) < 0 or top + bottom >= h or left + right >= w:
        raise KinemaError(
            f"border {border} must be >= 0 and leave a visible centre of the {h} x {w} grid"
        )
    keep = torch.zeros(h, w, dtype=torch.bool)
    keep[top : h - bottom, left : w - right] = True
    return repeat(~keep, "h w -> t h w", t=t).contiguous()


def default_mask(task: str, grid: Sequence[int]) -> torch.Tensor:
    """Mask used when none is given: inpaint hides the central half of every frame (rows and
    columns), outpaint a border of a quarter of the smaller side (at least 1)."""
    t, h, w = grid
    if task == "inpaint":
        return box_mask(grid, Box(h // 4, h - h // 4, w // 4, w - w // 4))
    return border_mask(grid, max(1, min(h, w) // 4))


def random_mask(task: str, grid: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """A training mask ``(t, h, w)``: inpaint a random box (each side 1 .. half the grid, all
    frames), outpaint random border widths per side (0 .. a quarter, at least one > 0)."""
    t, h, w = grid

    def draw(hi: int) -> int:
        return int(torch.randint(0, hi + 1, (), generator=generator))

    if task == "inpaint":
        bh, bw = 1 + draw(max(0, h // 2 - 1)), 1 + draw(max(0, w // 2 - 1))
        y0, x0 = draw(h - bh), draw(w - bw)
        return box_mask(grid, Box(y0, y0 + bh, x0, x0 + bw))
    if task == "outpaint":
        sides = [draw(max(1, h // 4)), draw(max(1, h // 4)), draw(max(1, w // 4))]
        sides.append(draw(max(1, w // 4)))
        if not any(sides):
            sides[int(torch.randint(0, 4, (), generator=generator))] = 1
        sides[0] = min(sides[0], h - 1 - sides[1])
        sides[2] = min(sides[2], w - 1 - sides[3])
        return border_mask(grid, sides)
    raise KinemaError(f"task {task!r} takes no mask")


def resolve_mask(mask: MaskSpec, task: str, grid: Sequence[int], batch: int) -> torch.Tensor:
    """``(B, t, h, w)`` bool from a per-token mask (``(t, h, w)`` or ``(B, t, h, w)``), a
    :class:`Box`, a border width (int or ``(top, bottom, left, right)``) or None
    (:func:`default_mask`)."""
    grid = tuple(grid)
    if mask is None:
        m = default_mask(task, grid)
    elif isinstance(mask, Box):
        m = box_mask(grid, mask)
    elif isinstance(mask, int | tuple | list):
        m = border_mask(grid, mask)
    else:
        m = mask.bool()
    if m.ndim == 3:
        m = m.expand(batch, *m.shape)
    if tuple(m.shape) != (batch, *grid):
        raise KinemaError(f"mask must be {grid} or {(batch, *grid)}, got {tuple(m.shape)}")
    return m


# ---------------------------------------------------------------------- sequences
@dataclass
class Segment:
    """Tokens of one modality with their positions: a visual grid ``(t, h, w)`` starting at
    latent frame ``first_frame``, or ``(A * Q,)`` audio tokens. ``ids``: ``(B, *shape)``
    unified ids, None for a target still to be generated."""

    modality: str
    shape: tuple[int, ...]
    ids: torch.Tensor | None = None
    first_frame: int = 0


@dataclass
class TaskSequence:
    """One task's sequence for a batch.

    Attributes:
        task: the task name.
        prefix_ids: ``(B, Pt)`` long unified ids: ``<task>``, then each condition segment
            between its begin / end tokens.
        positions: ``(N, 3)`` long rotary positions of every slot, ``N = P + n * L`` with
            ``P = o + Pt`` (``o``: the model's class + text slots).
        start_id: ``<bov>`` or ``<boa>``: the target modality's begin token.
        modality: ``"video"`` or ``"audio"``.
        target_shape: ``(t, h, w)`` or ``(A * Q,)``.
        block_shape: the model's block shape.
        target: ``(B, n, L)`` long unified target ids in block order (None when generating).
        first_frame: latent frame index of a video target's first frame.
    """

    task: str
    prefix_ids: torch.Tensor
    positions: torch.Tensor
    start_id: int
    modality: str
    target_shape: tuple[int, ...]
    block_shape: tuple[int, int, int]
    target: torch.Tensor | None = None
    first_frame: int = 0

    @property
    def batch_size(self) -> int:
        return self.prefix_ids.shape[0]

    @property
    def block_len(self) -> int:
        bt, bh, bw = self.block_shape
        return bt * bh * bw

    @property
    def num_blocks(self) -> int:
        n = 1
        for s in self.target_shape:
            n *= s
        return n // self.block_len

    @property
    def prefix_len(self) -> int:
        """``P``: every prefix slot (class, text and prefix tokens)."""
        return self.positions.shape[0] - self.num_blocks * self.block_len

    @property
    def seq_len(self) -> int:
        return self.positions.shape[0]

    def to_blocks(self, ids: torch.Tensor) -> torch.Tensor:
        """Target ids ``(B, *target_shape)`` -> ``(B, n, L)`` in block order."""
        if self.modality == "audio":
            return rearrange(ids, "b (n l) -> b n l", l=self.block_len)
        return to_blocks(ids, self.block_shape)

    def from_blocks(self, blocks: torch.Tensor) -> torch.Tensor:
        """``(B, n, L)`` -> ``(B, *target_shape)``."""
        if self.modality == "audio":
            return rearrange(blocks, "b n l -> b (n l)")
        return from_blocks(blocks, self.target_shape, self.block_shape)

    def batch(self) -> dict[str, torch.Tensor]:
        """The multitask training batch of :meth:`TokenLM.loss` (needs a target)."""
        if self.target is None:
            raise KinemaError(f"this {self.task} sequence has no target (built for generation)")
        b = self.batch_size
        return {
            "prefix_ids": self.prefix_ids,
            "target": self.target,
            "positions": repeat(self.positions, "n c -> b n c", b=b),
            "start_id": torch.full((b,), self.start_id, dtype=torch.long),
        }


def task_sequence(
    config: TokenLMConfig,
    task: str,
    *,
    video: torch.Tensor | None = None,
    audio: torch.Tensor | None = None,
    control: torch.Tensor | None = None,
    mask: MaskSpec = None,
    given: int | None = None,
    batch_size: int | None = None,
) -> TaskSequence:
    """Lay out ``task`` for a multitask model from raw (not unified) tokens.

    Args:
        config: the model's config (its ``vocabulary``, ``latent_shape = (T, h, w)`` of a
            clip, ``block_shape``, class / text slots, ``audio_frames``).
        task: a task name (:func:`get_task`), one of ``config.vocabulary.tasks``.
        video: ``(B, t, h, w)`` visual tokens: the clip (``t = T``; the target of video tasks
            when given), or for i2v / continuation only the given frames (generation).
        audio: ``(B, A * Q)`` audio tokens (``A = config.audio_frames``).
        control: ``(B, T, h, w)`` visual tokens of the control video (stylize).
        mask: inpaint / outpaint hidden cells: see :func:`resolve_mask`.
        given: latent frames given to ``continuation`` (default :func:`default_given`).
        batch_size: ``B`` when no input gives it (unconditional, t2v, t2i generation).

    Returns:
        A :class:`TaskSequence`; its ``target`` is None when the inputs do not contain it.
    """
    vocab = _vocabulary(config)
    spec = get_task(task)
    task_id = vocab.task_id(task)
    t_clip, h, w = config.latent_shape
    b = _batch(batch_size, video, audio, control)
    given = _given(config, spec, given)

    def vis(x: torch.Tensor) -> torch.Tensor:
        return vocab.to_unified(x, "video")

    frames = video.shape[1] if video is not None else 0
    if video is not None:
        allowed = (given, t_clip) if spec.target == "rest" else (t_clip,)
        if spec.target == "image" and not spec.conditions:
            allowed = (1, t_clip)
        _check_tokens(video, b, allowed, (h, w), "video", task)
    clip = (t_clip, h, w)
    cond: list[Segment] = []
    for kind in spec.conditions:
        if kind in ("image", "frames"):
            ids = vis(_need(video, "video", task)[:, :given])
            cond.append(Segment("video", (given, h, w), ids))
        elif kind == "masked":
            m = resolve_mask(mask, task, clip, b).to(_need(video, "video", task).device)
            cond.append(Segment("video", clip, torch.where(m, vocab.special("<mask>"), vis(video))))
        elif kind == "control":
            ctrl = _need(control, "control", task)
            _check_tokens(ctrl, b, (t_clip,), (h, w), "control", task)
            cond.append(Segment("video", clip, vis(ctrl)))
        elif kind == "video":
            cond.append(Segment("video", clip, vis(_need(video, "video", task))))
        else:  # audio
            ids = _audio(vocab, config, audio, b, task)
            cond.append(Segment("audio", _audio_shape(config, vocab), ids))

    if spec.target == "audio":
        target = Segment("audio", _audio_shape(config, vocab))
        if audio is not None:
            target.ids = _audio(vocab, config, audio, b, task)
    elif spec.target == "image":
        target = Segment("video", (1, h, w))
        if video is not None:
            target.ids = vis(video[:, :1])
    elif spec.target == "rest":
        target = Segment("video", (t_clip - given, h, w), first_frame=given)
        if frames == t_clip:
            target.ids = vis(video[:, given:])
    else:
        target = Segment("video", clip)
        if frames == t_clip:
            target.ids = vis(video)
    return _assemble(config, vocab, task, task_id, b, cond, target)


def _assemble(
    config: TokenLMConfig,
    vocab: Vocabulary,
    task: str,
    task_id: int,
    b: int,
    cond: list[Segment],
    target: Segment,
) -> TaskSequence:
    """Prefix ids, positions of every slot and target blocks of a task's segments."""
    o = config.num_1d_prefix
    g = o + len(SPECIAL_SLOTS)  # grid origin

    def special_pos(kind: str) -> torch.Tensor:
        k = o + SPECIAL_SLOTS.index(kind)
        return torch.tensor([[k, k, k]])

    slot = torch.arange(o)
    ids = [torch.full((b, 1), task_id, dtype=torch.long)]
    pos = [torch.stack([slot, slot, slot], dim=-1), special_pos("task")]
    for seg in cond:
        begin, end = vocab.begin(seg.modality), vocab.end(seg.modality)
        ids += [
            torch.full((b, 1), begin, dtype=torch.long),
            seg.ids.reshape(b, -1).long().cpu(),
            torch.full((b, 1), end, dtype=torch.long),
        ]
        pos += [
            special_pos(vocab.specials[begin]),
            _positions(config, seg, g),
            special_pos(vocab.specials[end]),
        ]
    bshape = tuple(config.block_shape)
    length = bshape[0] * bshape[1] * bshape[2]
    if target.modality == "video":
        try:
            check_tiling(target.shape, bshape)
        except KinemaError as e:
            raise KinemaError(f"task {task}: {e}") from None
        t, h = target.shape[:2]
        grid = rearrange(_positions(config, target, g), "(t h w) c -> 1 t h w c", t=t, h=h)
        tpos = to_blocks(grid, bshape)[0]  # (n, L, 3)
        back = bshape[0]
    else:
        if target.shape[0] % length:
            raise KinemaError(
                f"task {task}: {target.shape[0]} audio tokens do not split into blocks of "
                f"{length}; choose audio_frames so that audio_frames * levels is a multiple of "
                f"{length}"
            )
        tpos = rearrange(_positions(config, target, g), "(n l) c -> n l c", l=length)
        back = 1
    start = tpos[0] - torch.tensor([back, 0, 0])
    pos += [start, rearrange(tpos[:-1], "n l c -> (n l) c")]
    seq = TaskSequence(
        task=task,
        prefix_ids=torch.cat(ids, dim=1),
        positions=torch.cat(pos).long(),
        start_id=vocab.begin(target.modality),
        modality=target.modality,
        target_shape=tuple(target.shape),
        block_shape=bshape,
        first_frame=target.first_frame,
    )
    if target.ids is not None:
        seq.target = seq.to_blocks(target.ids.long().cpu())
    return seq


def _positions(config: TokenLMConfig, seg: Segment, g: int) -> torch.Tensor:
    """``(numel, 3)`` long positions of a segment (module docstring)."""
    if seg.modality == "video":
        t, h, w = seg.shape
        return grid_positions(t, h, w, offset=(g + seg.first_frame, g, g)).long()
    levels = config.vocabulary.audio_levels
    j = torch.arange(seg.shape[0])
    a, q = j // levels, j % levels
    frames, t_clip = config.audio_frames, config.latent_shape[0]
    return torch.stack([g + a * t_clip // frames, g + q, g + a], dim=-1)


# ---------------------------------------------------------------------- checks
def _vocabulary(config: TokenLMConfig) -> Vocabulary:
    if config.vocabulary is None:
        raise KinemaError("tasks need a multitask model: set TokenLMConfig.vocabulary")
    return config.vocabulary


def _given(config: TokenLMConfig, spec: Task, given: int | None) -> int:
    t_clip = config.latent_shape[0]
    if "image" in spec.conditions:
        return 1
    if "frames" not in spec.conditions:
        return 0
    given = default_given(config) if given is None else given
    if not 1 <= given < t_clip:
        raise KinemaError(f"{spec.name}: given must be in [1, {t_clip - 1}], got {given}")
    return given


def _batch(batch_size: int | None, *inputs: torch.Tensor | None) -> int:
    sizes = {x.shape[0] for x in inputs if x is not None and x.ndim > 0}
    if batch_size is not None:
        sizes.add(batch_size)
    if len(sizes) > 1:
        raise KinemaError(f"inputs disagree on the batch size: {sorted(sizes)}")
    return sizes.pop() if sizes else 1


def _need(x: torch.Tensor | None, name: str, task: str) -> torch.Tensor:
    if x is None:
        raise KinemaError(f"task {task} needs {name} tokens")
    return x


def _check_tokens(
    x: torch.Tensor, b: int, frames: tuple[int, ...], hw: tuple[int, int], name: str, task: str
) -> None:
    if x.ndim != 4 or x.shape[0] != b or x.shape[1] not in frames or tuple(x.shape[2:]) != hw:
        want = " or ".join(f"(B={b}, {t}, {hw[0]}, {hw[1]})" for t in sorted(set(frames)))
        raise KinemaError(f"task {task}: {name} tokens must be {want}, got {tuple(x.shape)}")


def _audio_shape(config: TokenLMConfig, vocab: Vocabulary) -> tuple[int]:
    if not config.audio_frames or not vocab.audio_size:
        raise KinemaError(
            "audio tasks need audio_frames > 0 and a vocabulary with audio tokens "
            f"(audio_frames={config.audio_frames}, audio_levels={vocab.audio_levels})"
        )
    return (config.audio_frames * vocab.audio_levels,)


def _audio(
    vocab: Vocabulary, config: TokenLMConfig, audio: torch.Tensor | None, b: int, task: str
) -> torch.Tensor:
    (n,) = _audio_shape(config, vocab)
    x = _need(audio, "audio", task)
    if tuple(x.shape) != (b, n):
        raise KinemaError(
            f"task {task}: audio tokens must be (B={b}, {n}) = audio_frames x levels, got "
            f"{tuple(x.shape)}"
        )
    return vocab.to_unified(x, "audio")
