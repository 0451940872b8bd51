"""TokenLM: one decoder over ``[prefix | video blocks]`` for NTP (VideoPoet) and NBP.

Next-token prediction is next-block prediction with a ``(1, 1, 1)`` block; nothing else in
this file depends on the block shape.

Sequence (``N = P + n*L`` slots, ``P`` prefix, ``n`` blocks of ``L`` tokens)::

    [class | text (max_text_len) | conditioning frames | start block | blocks 0 .. n-2]
     \\_______________ prefix P _______________________/  \\______ inputs of n steps _____/

Input block ``j`` (the start block for ``j = 0``) predicts video block ``j``: position ``i``
of input block ``j`` is trained on token ``i`` of block ``j`` (a shift by one block).

Rotary positions (3D, ``(t, h, w)``, integers; ``o`` = class + text slots):
- class and text slot ``k``: ``(k, k, k)``. Equal coordinates make attention among these
  slots a plain 1D rotary over the slot index (as Qwen2-VL's M-RoPE does for text).
- conditioning frame ``f``, cell ``(y, x)``: ``(o + f, o + y, o + x)``.
- video frame ``i``, cell ``(y, x)``: ``(o + cond_frames + i, o + y, o + x)``: the video
  continues the conditioning frames in time on the same spatial grid, and every grid
  coordinate is after every 1D slot on all three axes.
- start block: the positions of video block 0 moved ``bt`` frames back in time, i.e. the
  block "just before" the video, so each input block sits where its content is.
Slots (KV-cache indices) are the sequence indices and independent of these positions.

Null condition (classifier-free guidance): per dropped sample the class becomes the extra
null class, the text becomes one learned null vector (other text slots masked out), and
each conditioning token becomes a learned null token (its positions kept). A condition
that is not given at all is the null condition.

Multitask (VideoPoet, ``config.vocabulary`` set; layouts in :mod:`kinema.lm.tasks`): the
prefix continues with *prefix tokens*, unified-vocabulary ids (task marker, segment
delimiters, visual / audio / ``<mask>`` tokens) embedded by the same table as the targets,
and the targets are any ``(n, L)`` blocks (video or audio) with positions supplied by the
task layout (:meth:`TokenLM.forward_blocks`). The start block is the learned start plus the
embedding of the target modality's begin token. Under the null condition every visual /
audio prefix token becomes ``<null>``; the task marker, delimiters and ``<mask>`` stay.
Mask, decode loop and loss are the same code for every task and every block shape.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from einops import rearrange, repeat
from torch import nn

from kinema.errors import KinemaError
from kinema.lm.blocks import from_blocks, to_blocks
from kinema.lm.config import TokenLMConfig
from kinema.lm.loss import chunked_cross_entropy
from kinema.lm.mask import block_causal_mask
from kinema.modeling import ModelMixin
from kinema.nn.rotary import grid_positions
from kinema.nn.text import TextSlots
from kinema.nn.transformer import Transformer

logger = logging.getLogger(__name__)


def sequence_positions(config: TokenLMConfig) -> torch.Tensor:
    """Rotary positions of all ``N`` slots (see the module docstring): ``(N, 3)`` long."""
    c = config
    o, tc = c.num_1d_prefix, c.cond_frames
    t, h, w = c.latent_shape
    slot = torch.arange(o)
    flat = torch.stack([slot, slot, slot], dim=-1)  # (o, 3)
    cond = grid_positions(tc, h, w, offset=(o, o, o)).long()  # (tc*h*w, 3)
    video = grid_positions(t, h, w, offset=(o + tc, o, o)).long()
    video = to_blocks(rearrange(video, "(t h w) c -> 1 t h w c", t=t, h=h), c.block_shape)[0]
    start = video[0] - torch.tensor([c.block_shape[0], 0, 0])  # (L, 3)
    seq = torch.cat([flat, cond, start, rearrange(video[:-1], "n l c -> (n l) c")])
    assert seq.shape == (c.seq_len, 3)
    return seq


class TokenLM(ModelMixin):
    """Prefix-conditioned next-block (``L = 1``: next-token) prediction over video tokens.

    Shapes: ``tokens (B, t, h, w)`` long; blocks ``(B, n, L)``; hidden ``(B, n*L, D)``;
    logits ``(B, n*L, V)``. See the module docstring for the layout and positions.
    Drive decoding with :func:`kinema.sample.generate`; train with ``loss(batch)``.
    """

    config_class = TokenLMConfig

    def __init__(self, config: TokenLMConfig) -> None:
        super().__init__()
        self.config = c = config
        self.transformer = Transformer(c.transformer_config())
        self.tok_embed = nn.Embedding(c.vocab_size, c.dim)
        self.start = nn.Parameter(torch.empty(c.block_len, c.dim))  # learned start block
        self.head = nn.Linear(c.dim, c.vocab_size, bias=False)
        # Prefix: index num_classes / vocab_size is the null class / null conditioning token.
        self.class_embed = nn.Embedding(c.num_classes + 1, c.dim) if c.num_classes else None
        self.text = TextSlots(c.text_dim, c.dim, c.max_text_len, c.init_std) if c.text_dim else None
        self.cond_embed = nn.Embedding(c.vocab_size + 1, c.dim) if c.cond_frames else None
        # Integer positions: a bf16 cast of the model would round float positions > 256.
        self.register_buffer("positions", sequence_positions(c), persistent=False)
        self.register_buffer(
            "mask", block_causal_mask(c.prefix_len, c.num_blocks, c.block_len), persistent=False
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Embeddings, start block and heads ~ Normal(0, init_std), biases zero (the core
        initialises itself). Deterministic under ``torch.manual_seed``."""
        std = self.config.init_std
        for p in (self.tok_embed.weight, self.start, self.head.weight):
            nn.init.normal_(p, 0.0, std)
        for m in (self.class_embed, self.cond_embed):
            if m is not None:
                nn.init.normal_(m.weight, 0.0, std)
        if self.text is not None:
            self.text.reset_parameters()

    def adapt_init_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Fine-tune another block shape from these weights (e.g. next-block -> next-token):
        only the learned start block ``(L, D)`` depends on it; its rows are taken cyclically
        from the other run's (row 0, the first cell, is the same cell for every shape)."""
        start = state.get("start")
        if start is None or start.ndim != 2 or start.shape[0] == self.config.block_len:
            return state
        rows = torch.arange(self.config.block_len) % start.shape[0]
        logger.info("start block: %d rows -> %d (block %s)", start.shape[0], len(rows),
                    "x".join(map(str, self.config.block_shape)))  # fmt: skip
        return {**state, "start": start[rows]}

    # ------------------------------------------------------------------ layout
    def to_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, t, h, w)`` -> ``(B, n, L)`` in block order (checks the grid)."""
        grid = tuple(self.config.latent_shape)
        if tokens.ndim != 4 or tuple(tokens.shape[1:]) != grid:
            raise KinemaError(
                f"tokens must be (B, {', '.join(map(str, grid))}), got {tuple(tokens.shape)}"
            )
        return to_blocks(tokens, self.config.block_shape)

    def from_blocks(self, blocks: torch.Tensor) -> torch.Tensor:
        """``(B, n, L)`` -> ``(B, t, h, w)``."""
        return from_blocks(blocks, self.config.latent_shape, self.config.block_shape)

    # ------------------------------------------------------------------ embeddings
    def embed_prefix(
        self,
        batch_size: int,
        *,
        label: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        cond_tokens: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
        prefix_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embed the prefix ``[class | text | conditioning frames | prefix tokens]``.

        Args:
            label: ``(B,)`` long class ids in ``[0, num_classes)``.
            text: ``(B, S, text_dim)`` text-encoder states, ``S <= max_text_len``.
            text_mask: ``(B, S)`` bool, True = real token (default: all True).
            cond_tokens: ``(B, cond_frames, h, w)`` long tokens of the given frames.
            drop: ``(B,)`` bool, True = use the null condition for that sample.
            A condition the model has but that is not given is the null condition.
            prefix_ids: ``(B, Pt)`` long unified-vocabulary ids (multitask models only),
                appended after the other parts; ``P`` grows by ``Pt``.

        Returns:
            ``x (B, P, D)`` in the parameters' dtype and ``valid (B, P)`` bool (False = padding
            key) when the model has text, else ``None``.
        """
        c, b = self.config, batch_size
        w = self.tok_embed.weight
        device, dtype = w.device, w.dtype
        drop = torch.zeros(b, dtype=torch.bool, device=device) if drop is None else drop.bool()
        _check(drop, (b,), "drop")
        for name, value, size in (
            ("label", label, c.num_classes),
            ("text", text, c.text_dim),
            ("cond_tokens", cond_tokens, c.cond_frames),
        ):
            if value is not None and not size:
                raise KinemaError(
                    f"{name} given but the model has no such condition "
                    f"(num_classes={c.num_classes}, text_dim={c.text_dim}, "
                    f"cond_frames={c.cond_frames})"
                )
        parts: list[torch.Tensor] = []
        valid: list[torch.Tensor] = []
        if self.class_embed is not None:
            null = torch.full((b,), c.num_classes, dtype=torch.long, device=device)
            if label is not None:
                _check(label, (b,), "label")
                label = torch.where(drop, null, label.long())
            parts.append(self.class_embed(null if label is None else label)[:, None])
            valid.append(torch.ones(b, 1, dtype=torch.bool, device=device))
        if self.text is not None:
            x, m = self.text(b, text, text_mask, drop)
            parts.append(x.to(dtype))
            valid.append(m)
        if self.cond_embed is not None:
            _, h, w_ = c.latent_shape
            null = torch.full((b, c.num_cond_tokens), c.vocab_size, dtype=torch.long, device=device)
            ids = null
            if cond_tokens is not None:
                _check(cond_tokens, (b, c.cond_frames, h, w_), "cond_tokens")
                ids = torch.where(drop[:, None], null, cond_tokens.long().flatten(1))
            parts.append(self.cond_embed(ids))
            valid.append(torch.ones(b, c.num_cond_tokens, dtype=torch.bool, device=device))
        if prefix_ids is not None:
            vocab = c.vocabulary
            if vocab is None:
                raise KinemaError(
                    "prefix_ids need a multitask model (TokenLMConfig.vocabulary is not set)"
                )
            if prefix_ids.ndim != 2 or prefix_ids.shape[0] != b:
                raise KinemaError(f"prefix_ids must be (B={b}, Pt), got {tuple(prefix_ids.shape)}")
            ids = prefix_ids.to(device).long()
            null = torch.full_like(ids, vocab.special("<null>"))
            ids = torch.where(drop[:, None] & vocab.is_content(ids), null, ids)
            parts.append(self.tok_embed(ids))
            valid.append(torch.ones(ids.shape, dtype=torch.bool, device=device))
        if not parts:
            return w.new_zeros(b, 0, c.dim), None
        prefix_valid = torch.cat(valid, dim=1) if self.text is not None else None
        return torch.cat(parts, dim=1), prefix_valid

    def embed_blocks(self, blocks: torch.Tensor) -> torch.Tensor:
        """Video token embeddings in sequence order: ``(B, k, L)`` -> ``(B, k*L, D)``."""
        return rearrange(self.tok_embed(blocks), "b n l d -> b (n l) d")

    def start_block(self, batch_size: int, start_id: torch.Tensor | None = None) -> torch.Tensor:
        """The learned start block ``(B, L, D)``; plus the embedding of ``start_id (B,)``
        (the target modality's begin token, multitask) when given."""
        start = repeat(self.start, "l d -> b l d", b=batch_size)
        if start_id is None:
            return start
        return start + self.tok_embed(start_id.to(start.device).long())[:, None]

    def attention_mask(
        self,
        prefix_valid: torch.Tensor | None = None,
        *,
        prefix_len: int | None = None,
        num_blocks: int | None = None,
    ) -> torch.Tensor:
        """The block-causal mask: ``(N, N)`` (static buffer), or ``(B, 1, N, N)`` when the
        prefix has padding (``prefix_valid (B, P)`` from :meth:`embed_prefix`).
        ``prefix_len`` / ``num_blocks`` (default: the config's) give other layouts (tasks)."""
        c = self.config
        p = c.prefix_len if prefix_len is None else prefix_len
        n = c.num_blocks if num_blocks is None else num_blocks
        if prefix_valid is None and (p, n) == (c.prefix_len, c.num_blocks):
            return self.mask
        return block_causal_mask(
            p, n, c.block_len, prefix_valid=prefix_valid, device=self.mask.device
        )

    # ------------------------------------------------------------------ forward passes
    def forward(
        self,
        tokens: torch.Tensor,
        *,
        label: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        cond_tokens: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced pass over the whole sequence (training, scoring).

        Args:
            tokens: ``(B, t, h, w)`` long video tokens; the conditions as in
                :meth:`embed_prefix`.

        Returns:
            ``(B, n*L, D)`` final hidden states of the input blocks: row ``j*L + i`` predicts
            token ``i`` of block ``j`` (apply :attr:`head` for logits).
        """
        return self.forward_blocks(
            self.to_blocks(tokens),
            self.positions,
            label=label,
            text=text,
            text_mask=text_mask,
            cond_tokens=cond_tokens,
            drop=drop,
        )

    def forward_blocks(
        self,
        blocks: torch.Tensor,
        positions: torch.Tensor,
        *,
        prefix_ids: torch.Tensor | None = None,
        start_id: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
        **cond: torch.Tensor | None,
    ) -> torch.Tensor:
        """Teacher-forced pass over ``[prefix | start block | blocks 0..n-2]`` of any layout.

        Args:
            blocks: ``(B, n, L)`` long target ids in block order.
            positions: ``(N, 3)`` or ``(B, N, 3)`` rotary positions of all ``N = P + n*L``
                slots (:attr:`positions` for the config's layout, a task layout's otherwise).
            prefix_ids, start_id: prefix tokens ``(B, Pt)`` and target begin token ``(B,)``
                (multitask, see :mod:`kinema.lm.tasks`); ``drop`` and ``cond`` (label, text,
                text_mask, cond_tokens) as in :meth:`embed_prefix`.

        Returns:
            ``(B, n*L, D)`` hidden states; row ``j*L + i`` predicts token ``i`` of block ``j``.
        """
        b, n, _ = blocks.shape
        prefix, valid = self.embed_prefix(b, prefix_ids=prefix_ids, drop=drop, **cond)
        p = prefix.shape[1]
        x = torch.cat(
            [prefix, self.start_block(b, start_id), self.embed_blocks(blocks[:, :-1])], dim=1
        )
        if positions.shape[-2] != x.shape[1]:
            raise KinemaError(
                f"positions cover {positions.shape[-2]} slots but the sequence has {x.shape[1]}"
            )
        mask = self.attention_mask(valid, prefix_len=p, num_blocks=n)
        return self.transformer(x, positions, mask)[:, p:]

    def logits(self, tokens: torch.Tensor, **cond: Any) -> torch.Tensor:
        """``(B, n*L, V)`` fp32 logits of the teacher-forced pass (tests, scoring; training
        uses the chunked loss instead)."""
        return self.head(self(tokens, **cond)).float()

    def decode_step(
        self,
        x: torch.Tensor,
        first_slot: int,
        mask: torch.Tensor,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run ``x (B, M, D)`` at slots ``first_slot .. first_slot+M-1`` on the KV cache.

        ``mask`` is the full mask of :meth:`attention_mask`; only its first ``first_slot+M``
        rows/columns are used, so keys past the written slots are never read. ``positions``:
        ``(N, 3)`` of the whole sequence (default: the config's layout).
        Returns ``(B, M, D)`` hidden states.
        """
        end = first_slot + x.shape[1]
        slots = torch.arange(first_slot, end, device=x.device)
        pos = self.positions if positions is None else positions
        return self.transformer(x, pos[first_slot:end], mask[..., :end, :end], input_pos=slots)

    def setup_caches(
        self, batch_size: int, dtype: torch.dtype | None = None, max_len: int | None = None
    ) -> None:
        """Allocate static KV caches for ``batch_size`` rows of ``max_len`` slots (default:
        the config's full sequence)."""
        self.transformer.setup_caches(batch_size, max_len or self.config.seq_len, dtype)

    def clear_caches(self) -> None:
        self.transformer.clear_caches()

    # ------------------------------------------------------------------ training
    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Next-block cross-entropy of a batch (mean over all target tokens).

        ``batch``: ``tokens (B, t, h, w)`` long, optional ``label (B,)``, ``text (B, S,
        text_dim)`` + ``text_mask (B, S)``, ``cond_tokens (B, cond_frames, h, w)``. In
        training mode each sample's condition is replaced by the null condition with
        probability ``cond_drop_prob``. Returns ``{"loss", "accuracy"}``.

        Multitask batches (:class:`kinema.lm.data.MultitaskDataset`, one task per batch) hold
        ``target (B, n, L)`` unified ids, ``prefix_ids (B, Pt)``, ``positions (B, N, 3)``
        and ``start_id (B,)`` instead of ``tokens``; the softmax spans the whole vocabulary.
        """
        c = self.config
        multitask = "target" in batch
        blocks = batch["target"] if multitask else self.to_blocks(batch["tokens"])
        drop = None
        if self.training and c.cond_drop_prob > 0 and (c.has_condition or multitask):
            drop = torch.rand(blocks.shape[0], device=blocks.device) < c.cond_drop_prob
        h = self.forward_blocks(
            blocks,
            batch["positions"] if multitask else self.positions,
            prefix_ids=batch.get("prefix_ids"),
            start_id=batch.get("start_id"),
            label=batch.get("label"),
            text=batch.get("text"),
            text_mask=batch.get("text_mask"),
            cond_tokens=batch.get("cond_tokens"),
            drop=drop,
        )
        targets = rearrange(blocks, "b n l -> (b n l)")
        loss, acc = chunked_cross_entropy(
            rearrange(h, "b m d -> (b m) d"), self.head.weight, targets, c.loss_chunk
        )
        return {"loss": loss, "accuracy": acc}

    def num_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """Predicted tokens in ``batch`` (for the trainer's tokens/s)."""
        return batch["target" if "target" in batch else "tokens"].numel()

    def no_weight_decay(self) -> set[str]:
        return {"start", "text.null"} if self.text is not None else {"start"}

    def fsdp_units(self) -> list[nn.Module]:
        return list(self.transformer.layers)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Parameter count; ``exclude_embeddings`` leaves out token/condition embeddings and
        the output head (the usual "model size" of a paper)."""
        skip = set()
        if exclude_embeddings:
            mods = [self.tok_embed, self.head, self.class_embed, self.cond_embed]
            skip = {id(p) for m in mods if m is not None for p in m.parameters()}
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)


def _check(x: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    if tuple(x.shape) != tuple(shape):
        raise KinemaError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")
