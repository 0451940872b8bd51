"""VideoPoet's super-resolution transformer: low-res video tokens -> high-res video tokens.

A non-autoregressive (MaskGIT-style) token upsampler. Given the tokens of a clip from a
low-res tokenizer, ``(B, t, h, w)``, it predicts the tokens of the same clip from a high-res
tokenizer, ``(B, t, s*h, s*w)``, in a few parallel steps.

>>> from kinema.lm.superres_config import preset
>>> model = SuperResTransformer(preset("tiny"))
>>> loss = model.loss({"tokens_hr": hr, "tokens_lr": lr})["loss"]   # hr (B, 2, 8, 8)
>>> from kinema.sample.superres import upsample, upscale_video
>>> hr = upsample(model, lr, steps=8, seed=0)                        # lr (B, 2, 4, 4)
>>> video = upscale_video(model, lr_tokenizer, hr_tokenizer, frames)  # uint8 (T, H, W, 3)

Input of high-res cell ``(i, y, x)`` (its parent low-res cell is ``(i, y // s, x // s)``)::

    hr_embed(token) or [MASK]  +  lr_embed(parent's token)  +  phase[y % s, x % s]

The low-res tokens are nearest-upsampled and added rather than attended to (VideoPoet
cross-attends them in windows isomorphic to the self-attention windows): a cell already
holds its parent's token, and its windowed self-attention reaches the parents of its
window's cells, so adding gives the same local receptive field without a second attention
per layer or a longer sequence. The phase embedding tells the ``s*s`` children of one parent
apart (their inputs are otherwise identical and 3D rotary positions are only relative).

Layers cycle through three windowed self-attentions over the high-res grid (windows as in
:func:`kinema.nn.window.window_mask`): spatial vertical (the column window of a cell in its
frame), spatial horizontal (the row window), temporal (the same ``(y, x)`` across a window
of frames); ``n_layers`` is a multiple of 3. Text (precomputed encoder states, optional)
is joined as ``max_text_len`` leading slots that every video cell attends in every layer
(what VideoPoet's text cross-attention does, with the core's blocks and masks); text slots
attend only text.

Two implementations of the same function (``SuperResConfig.attention``):

- ``"lines"`` (default), ``O(N * (window + S))``: a layer attends along one axis only, and
  norms and MLPs act per token, so each layer's :class:`~kinema.nn.Block` runs on the
  lines along its axis as a batch (:func:`kinema.nn.window.line_index`), ``g`` lines per
  sequence with the ``S`` text slots appended: ``(B * lines / g, g*n + S, D)`` with a small
  block-diagonal window mask, every token rotated by its own 3D position. Text rows
  attend only text, so every sequence's text rows are the text's true output; one copy is
  kept. ``g = 1`` without text; with text ``g`` (a divisor of the line count, at most
  ``ceil(4 * S / n)``) amortises the appended text over ``g*n`` video rows: about a
  quarter of extra rows when the line count has such a divisor, more when it has not.
- ``"dense"``, ``O(N^2)``: the whole sequence through :class:`~kinema.nn.Transformer` with
  one ``(S+N, S+N)`` mask per layer (:meth:`SuperResTransformer.layer_masks`); the
  reference the line path is tested against.

Token factorization (VideoPoet: 2 x 512-way instead of 262,144-way; ``factorize``): an index
of a vocabulary of ``V`` codes is ``lo + hi * base`` with ``base = ceil(sqrt(V))``,
``lo in [0, base)``, ``hi in [0, ceil(V / base))``. For LFQ with ``d`` (even) bits
``base = 2**(d/2)``, so ``lo`` / ``hi`` are exactly the low / high bit halves of
:meth:`kinema.tokenizer.Tokenizer.split_tokens`. Both tokenizers' tokens are embedded as
``embed_lo[lo] + embed_hi[hi]``; the output has one head per half.
The halves are sampled independently, which is only faithful when the code's halves are
close to independent given the context (LFQ's bits). An FSQ index is a mixed-radix number
whose ``sqrt(V)`` split cuts across its levels, so two confident-looking halves can make an
unrelated code: with ``factorize=False`` (small vocabularies, the ``small`` preset) ``base =
V`` and ``hi`` is always 0, i.e. one plain ``V``-way softmax through the same code.

Training: per sample a masking ratio ``cos(pi/2 * u)``, ``u ~ U[0, 1]``, of the high-res
tokens is replaced by [MASK]; cross-entropy of both halves on the masked cells only. Text is
dropped to a learned null (classifier-free guidance) with probability ``cond_drop_prob``.
Decoding: :func:`kinema.sample.superres.upsample`; the configuration and presets:
:mod:`kinema.lm.superres_config`.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn
from torch.utils.checkpoint import checkpoint

from kinema.errors import KinemaError
from kinema.lm.superres_config import Shape3, SuperResConfig
from kinema.modeling import ModelMixin
from kinema.nn.block import Block
from kinema.nn.rotary import Rope, grid_positions
from kinema.nn.text import TextSlots
from kinema.nn.transformer import Transformer
from kinema.nn.window import line_index, window_mask

logger = logging.getLogger(__name__)

# (name, grid axis of (t, H, W)) of the attention of layer i: LAYER_KINDS[i % 3]
LAYER_KINDS: tuple[tuple[str, int], ...] = (("vertical", 1), ("horizontal", 2), ("temporal", 0))

# line-batched attention with text: up to TEXT_AMORTIZE * S / n lines per sequence, so the
# S text rows appended to a sequence are ~1 / TEXT_AMORTIZE of its video rows (fewer lines,
# and relatively more text rows, when the line count has no divisor that large)
TEXT_AMORTIZE = 4


# ---------------------------------------------------------------------- token factorization


def factor_sizes(vocab_size: int, factorize: bool = True) -> tuple[int, int]:
    """``(base, n_hi)``: classes of the ``lo`` and ``hi`` halves of a ``vocab_size`` index
    (``base = ceil(sqrt(V))``, ``n_hi = ceil(V / base)``; ``(V, 1)`` without factorization)."""
    if vocab_size < 2:
        raise KinemaError(f"vocab_size must be >= 2, got {vocab_size}")
    if not factorize:
        return vocab_size, 1
    base = math.isqrt(vocab_size - 1) + 1
    return base, -(-vocab_size // base)


def split_index(index: torch.Tensor, base: int) -> torch.Tensor:
    """``(...)`` indices -> ``(..., 2)`` halves ``[lo, hi]`` with ``index = lo + hi * base``."""
    return torch.stack([index % base, index.div(base, rounding_mode="floor")], dim=-1)


def merge_index(halves: torch.Tensor, base: int) -> torch.Tensor:
    """Inverse of :func:`split_index`: ``(..., 2)`` -> ``(...)``."""
    return halves[..., 0] + halves[..., 1] * base


class FactorizedEmbedding(nn.Module):
    """``(...)`` indices of ``vocab_size`` codes -> ``(..., dim)`` as ``lo[i % base] +
    hi[i // base]``: ``2 * sqrt(V)`` rows instead of ``V`` (``V + 1`` unfactorized)."""

    def __init__(self, vocab_size: int, dim: int, factorize: bool = True) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.base, n_hi = factor_sizes(vocab_size, factorize)
        self.lo = nn.Embedding(self.base, dim)
        self.hi = nn.Embedding(n_hi, dim)

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        halves = split_index(index.long(), self.base)
        return self.lo(halves[..., 0]) + self.hi(halves[..., 1])


# ---------------------------------------------------------------------- model


def cosine_schedule(progress: torch.Tensor | float) -> torch.Tensor:
    """MaskGIT's masking ratio ``cos(pi/2 * progress)``: 1 at 0 (all masked), 0 at 1."""
    return torch.cos(torch.as_tensor(progress, dtype=torch.float64) * (math.pi / 2))


def line_groups(lines: int, n: int, text_len: int) -> int:
    """Lines per sequence of the line-batched attention: 1 without text, else the largest
    divisor of ``lines`` that is at most ``ceil(TEXT_AMORTIZE * text_len / n)``."""
    if not text_len:
        return 1
    most = min(lines, max(1, -(-TEXT_AMORTIZE * text_len // n)))
    return max(g for g in range(1, most + 1) if lines % g == 0)


class LineLayout(NamedTuple):
    """One layer kind's line-batched attention for a batch (see the module docstring).

    With ``G`` sequences per sample of ``g`` lines of ``n`` cells plus the ``S`` text slots
    (``M = g*n + S``):

    ``index``: ``(G, M)`` long slots of the ``(S+N)`` sequence, video in line order then
    text; ``inverse``: ``(N,)`` long, where each video cell (raster order) is among the
    ``G * g*n`` video rows; ``rope``: tables ``(B*G, 1, M, head_dim)``, each token's own 3D
    position; ``mask``: ``(M, M)`` bool, or ``(B*G, 1, M, M)`` with text padding.
    """

    index: torch.Tensor
    inverse: torch.Tensor
    rope: Rope
    mask: torch.Tensor


class SRCondition(NamedTuple):
    """What stays fixed while decoding one batch (see :meth:`SuperResTransformer.condition`).

    ``x``: ``(B, S + N, D)`` text slots, then per high-res cell its parent's low-res
    embedding plus its phase. Attention, by ``config.attention``: ``masks`` (``"dense"``):
    one boolean mask per layer, ``(S+N, S+N)`` or ``(B, 1, S+N, S+N)`` with text padding;
    ``lines`` (``"lines"``): one :class:`LineLayout` per layer kind (:data:`LAYER_KINDS`).
    """

    x: torch.Tensor
    masks: list[torch.Tensor] | None = None
    lines: list[LineLayout] | None = None


class SuperResTransformer(ModelMixin):
    """Masked token upsampler ``tokens_lr (B, t, h, w)`` -> ``tokens_hr (B, t, s*h, s*w)``.

    See the module docstring for inputs, attention and factorization. Train with
    ``loss(batch)``; decode with :func:`kinema.sample.superres.upsample`.
    """

    config_class = SuperResConfig

    def __init__(self, config: SuperResConfig) -> None:
        super().__init__()
        self.config = c = config
        s = c.scale
        self.transformer = Transformer(c.transformer_config())
        self.lr_embed = FactorizedEmbedding(c.lr_vocab_size, c.dim, c.factorize)
        self.hr_embed = FactorizedEmbedding(c.hr_vocab_size, c.dim, c.factorize)
        self.mask_embed = nn.Parameter(torch.empty(c.dim))  # [MASK]
        self.phase = nn.Parameter(torch.empty(s, s, c.dim))  # child (y % s, x % s) of a parent
        base, n_hi = factor_sizes(c.hr_vocab_size, c.factorize)
        self.head_lo = nn.Linear(c.dim, base, bias=False)
        self.head_hi = nn.Linear(c.dim, n_hi, bias=False)
        self.text = TextSlots(c.text_dim, c.dim, c.max_text_len, c.init_std) if c.text_dim else None
        # text slot k at (k, k, k); video after every text slot on all three axes (as TokenLM)
        o = c.text_len
        slot = torch.arange(o)
        video = grid_positions(*c.hr_shape, offset=(o, o, o)).long()
        self.register_buffer(
            "positions", torch.cat([torch.stack([slot] * 3, -1), video]), persistent=False
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Embeddings, [MASK], phases, heads ~ Normal(0, init_std), text bias zero (the core
        initialises itself). Deterministic under ``torch.manual_seed``."""
        std = self.config.init_std
        params = [self.mask_embed, self.phase, self.head_lo.weight, self.head_hi.weight]
        for emb in (self.lr_embed, self.hr_embed):
            params += [emb.lo.weight, emb.hi.weight]
        for p in params:
            nn.init.normal_(p, 0.0, std)
        if self.text is not None:
            self.text.reset_parameters()

    # ------------------------------------------------------------------ attention
    def _static_masks(self) -> list[torch.Tensor]:
        """Vertical, horizontal, temporal ``(S+N, S+N)`` masks: video rows see their window and
        every text slot, text rows see text only."""
        c = self.config
        st, device = c.text_len, self.positions.device
        out = []
        for _, axis in LAYER_KINDS:
            window = window_mask(c.hr_shape, axis, c.windows[axis], device=device)
            mask = torch.zeros(c.seq_len, c.seq_len, dtype=torch.bool, device=device)
            mask[:, :st] = True
            mask[st:, st:] = window
            out.append(mask)
        return out

    def layer_masks(self, text_valid: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The dense path's masks: one per layer (kinds cycling as :data:`LAYER_KINDS`),
        ``(S+N, S+N)`` bool, built on each call (``O(N^2)`` memory); with ``text_valid
        (B, S)`` no slot attends a padding text slot (a padding slot attends itself, so no
        row is empty) and the masks are ``(B, 1, S+N, S+N)``."""
        kinds = self._static_masks()
        if text_valid is not None:
            n = self.config.num_hr_tokens
            keys = F.pad(text_valid.bool(), (0, n), value=True)  # (B, S+N)
            eye = torch.eye(keys.shape[1], dtype=torch.bool, device=keys.device)
            kinds = [(m & (keys[:, None, :] | eye))[:, None] for m in kinds]
        return [kinds[i % 3] for i in range(self.config.n_layers)]

    def line_layouts(
        self, batch_size: int, text_valid: torch.Tensor | None = None
    ) -> list[LineLayout]:
        """The line path's layouts, one per kind of :data:`LAYER_KINDS`, for a batch of
        ``batch_size`` (``text_valid (B, S)`` as in :meth:`layer_masks`). Memory
        ``O(B * (N + S * sequences) * (g*n + S))``."""
        c = self.config
        st, device = c.text_len, self.positions.device
        table = self.transformer.rope(self.positions)  # (1, 1, S+N, head_dim)
        text = torch.arange(st, device=device)
        out = []
        for _, axis in LAYER_KINDS:
            lines = line_index(c.hr_shape, axis, device=device)  # (L, n) raster cells
            n_lines, n = lines.shape
            g = line_groups(n_lines, n, st)
            video = lines.reshape(n_lines // g, g * n)
            index = torch.cat([video + st, text.expand(len(video), st)], dim=1)  # (G, M)
            m, gn = index.shape[1], g * n
            mask = torch.zeros(m, m, dtype=torch.bool, device=device)
            mask[:gn, :gn] = window_mask((g, n), 1, c.windows[axis], device=device)
            mask[:, gn:] = True
            if text_valid is not None:
                keys = F.pad(text_valid.to(device=device, dtype=torch.bool), (gn, 0), value=True)
                eye = torch.eye(m, dtype=torch.bool, device=device)
                mask = repeat(mask & (keys[:, None] | eye), "b q k -> (b s) 1 q k", s=len(video))
            cos, sin = (
                repeat(x[0, 0, index], "s m d -> (b s) 1 m d", b=batch_size)
                for x in (table.cos, table.sin)
            )
            inverse = video.flatten().argsort()
            out.append(LineLayout(index, inverse, Rope(cos, sin, table.parts), mask))
        return out

    def _attention(self, batch_size: int, text_valid: torch.Tensor | None) -> dict:
        if self.config.attention == "dense":
            return {"masks": self.layer_masks(text_valid)}
        return {"lines": self.line_layouts(batch_size, text_valid)}

    def _line_layer(self, layer: Block, x: torch.Tensor, layout: LineLayout) -> torch.Tensor:
        """One block on ``x (B, S+N, D)`` as a batch of line sequences -> ``(B, S+N, D)``."""
        b, d = x.shape[0], x.shape[-1]
        st = self.config.text_len
        seq = rearrange(x[:, layout.index], "b s m d -> (b s) m d")
        out = rearrange(layer(seq, layout.rope, layout.mask), "(b s) m d -> b s m d", b=b)
        video = out[:, :, : out.shape[2] - st].reshape(b, -1, d)[:, layout.inverse]
        # text rows attend text only: every sequence's text rows are the same; keep the first
        return torch.cat([out[:, 0, out.shape[2] - st :], video], dim=1)

    def _transformer_lines(self, x: torch.Tensor, layouts: list[LineLayout]) -> torch.Tensor:
        """The core's forward (blocks, final norm) with line-batched attention."""
        core = self.transformer
        for i, layer in enumerate(core.layers):
            layout = layouts[i % len(LAYER_KINDS)]
            if core.gradient_checkpointing and core.training and torch.is_grad_enabled():
                x = checkpoint(self._line_layer, layer, x, layout, use_reentrant=False)
            else:
                x = self._line_layer(layer, x, layout)
        return core.norm(x)

    # ------------------------------------------------------------------ inputs
    def check_tokens(
        self, tokens_lr: torch.Tensor | None = None, tokens_hr: torch.Tensor | None = None
    ) -> None:
        """Raise a one-line :class:`KinemaError` unless the tokens have the model's grids
        and ids in range (a host sync: call at the edges, not per layer)."""
        c = self.config
        for name, x, grid, vocab in (
            ("tokens_lr", tokens_lr, c.lr_shape, c.lr_vocab_size),
            ("tokens_hr", tokens_hr, c.hr_shape, c.hr_vocab_size),
        ):
            if x is None:
                continue
            _check_grid(x, grid, name, c)
            if x.is_floating_point() or x.dtype == torch.bool:
                raise KinemaError(f"{name} must be integer token ids, got {x.dtype}")
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= vocab):
                raise KinemaError(
                    f"{name} ids must be in [0, {vocab}), got [{int(x.min())}, {int(x.max())}]"
                )
        if tokens_lr is not None and tokens_hr is not None and len(tokens_lr) != len(tokens_hr):
            raise KinemaError(
                f"tokens_lr and tokens_hr have different batch sizes: "
                f"{len(tokens_lr)} and {len(tokens_hr)}"
            )

    def embed_text(
        self,
        batch_size: int,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Text slots ``(B, S, D)`` and their validity ``(B, S)`` bool.

        ``text (B, S', text_dim)`` with ``S' <= max_text_len`` and ``text_mask (B, S')``
        (True = real token, default all). The null text (not given, or ``drop`` True for
        that sample) is one learned vector in slot 0, the other slots masked out.
        """
        if self.text is None:
            raise KinemaError("this super-resolution model has no text (text_dim=0)")
        return self.text(batch_size, text, text_mask, drop)

    def condition(
        self,
        tokens_lr: torch.Tensor,
        *,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
    ) -> SRCondition:
        """Everything but the high-res tokens, computed once per batch.

        Args:
            tokens_lr: ``(B, t, h, w)`` long low-res tokens.
            text, text_mask, drop: see :meth:`embed_text` (text models only).
        """
        c = self.config
        _check_grid(tokens_lr, c.lr_shape, "tokens_lr", c)
        if text is not None and self.text is None:
            raise KinemaError("text given but this super-resolution model has no text (text_dim=0)")
        # nearest upsampling and the child's phase in one broadcast
        lr = rearrange(self.lr_embed(tokens_lr), "b t h w d -> b t h 1 w 1 d")
        phase = rearrange(self.phase, "sy sx d -> sy 1 sx d")
        x = rearrange(lr + phase, "b t h sy w sx d -> b (t h sy w sx) d")
        if self.text is None:
            return SRCondition(x, **self._attention(x.shape[0], None))
        tx, valid = self.embed_text(x.shape[0], text, text_mask, drop)
        x = torch.cat([tx.to(x.dtype), x], dim=1)
        return SRCondition(x, **self._attention(x.shape[0], valid))

    # ------------------------------------------------------------------ forward passes
    def forward(
        self, tokens_hr: torch.Tensor, masked: torch.Tensor, cond: SRCondition
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of both halves of every high-res token.

        Args:
            tokens_hr: ``(B, t, H, W)`` long; ids at masked cells are ignored.
            masked: ``(B, t, H, W)`` bool, True = unknown ([MASK] input).
            cond: from :meth:`condition` for the same batch.

        Returns:
            ``lo (B, N, base)`` and ``hi (B, N, n_hi)`` logits, ``N = t*H*W`` in raster order.
        """
        c = self.config
        _check_grid(tokens_hr, c.hr_shape, "tokens_hr", c)
        if masked.shape != tokens_hr.shape:
            raise KinemaError(
                f"masked must match tokens_hr {tuple(tokens_hr.shape)}, got {tuple(masked.shape)}"
            )
        masked = masked.bool()
        tok = self.hr_embed(tokens_hr.masked_fill(masked, 0))
        tok = torch.where(masked[..., None], self.mask_embed.to(tok.dtype), tok)
        x = cond.x + F.pad(rearrange(tok, "b t h w d -> b (t h w) d"), (0, 0, c.text_len, 0))
        if cond.lines is not None:
            h = self._transformer_lines(x, cond.lines)
        else:
            h = self.transformer(x, self.positions, cond.masks)
        h = h[:, c.text_len :]
        return self.head_lo(h), self.head_hi(h)

    # ------------------------------------------------------------------ training
    def random_mask(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Training mask ``(B, t, H, W)`` bool: per sample ``ceil(N * cos(pi/2 * u))`` cells
        (at least one), ``u ~ U[0, 1]``, chosen uniformly."""
        n = self.config.num_hr_tokens
        u = torch.rand(batch_size, device=device, generator=generator)
        count = (cosine_schedule(u) * n).ceil().clamp(1, n).to(device)
        rank = torch.rand(batch_size, n, device=device, generator=generator).argsort(1).argsort(1)
        return (rank < count[:, None]).reshape(batch_size, *self.config.hr_shape)

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Masked-token cross-entropy for the trainer.

        ``batch``: ``tokens_hr (B, t, H, W)``, ``tokens_lr (B, t, h, w)`` long, optional
        ``text (B, S, text_dim)`` + ``text_mask (B, S)``. Returns ``{"loss", "accuracy",
        "mask_ratio"}`` (see :func:`factorized_loss`).
        """
        c = self.config
        hr, lr = batch["tokens_hr"], batch["tokens_lr"]
        self.check_tokens(lr, hr)
        b = hr.shape[0]
        drop = None
        if self.training and c.text_dim and c.cond_drop_prob > 0:
            drop = torch.rand(b, device=hr.device) < c.cond_drop_prob
        masked = self.random_mask(b, hr.device)
        cond = self.condition(
            lr, text=batch.get("text"), text_mask=batch.get("text_mask"), drop=drop
        )
        lo, hi = self(hr, masked, cond)
        out = factorized_loss(lo, hi, hr, masked)
        out["mask_ratio"] = masked.float().mean()
        return out

    def num_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """High-res tokens in ``batch`` (the trainer's tokens/s)."""
        return batch["tokens_hr"].numel()

    def fsdp_units(self) -> list[nn.Module]:
        return list(self.transformer.layers)


def factorized_loss(
    lo: torch.Tensor, hi: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Cross-entropy of both halves on the masked cells only.

    Args:
        lo, hi: ``(B, N, base)`` and ``(B, N, n_hi)`` logits.
        targets: ``(B, ...)`` long full indices (``N`` cells after the batch axis).
        masked: ``(B, ...)`` bool, True = scored.

    Returns:
        ``loss``: mean over masked cells of ``CE(lo) + CE(hi)`` (the negative log-likelihood
        of the factorized token); ``accuracy``: fraction of masked cells with both halves
        right (argmax).
    """
    y = split_index(targets.reshape(targets.shape[0], -1).long(), lo.shape[-1])  # (B, N, 2)
    m = masked.reshape(masked.shape[0], -1).float()
    ce = sum(
        F.cross_entropy(rearrange(z.float(), "b n v -> b v n"), y[..., i], reduction="none")
        for i, z in enumerate((lo, hi))
    )
    right = (lo.argmax(-1) == y[..., 0]) & (hi.argmax(-1) == y[..., 1])
    count = m.sum().clamp_min(1.0)
    return {"loss": (ce * m).sum() / count, "accuracy": (right * m).sum().detach() / count}


# ---------------------------------------------------------------------- helpers


def _check_grid(x: torch.Tensor, grid: Shape3, name: str, c: SuperResConfig) -> None:
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(grid):
        raise KinemaError(
            f"{name} must be (B, {', '.join(map(str, grid))}) for low-res {c.lr_shape} at "
            f"scale {c.scale}, got {tuple(x.shape)}"
        )
