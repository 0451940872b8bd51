"""PyramidDiT: the pyramidal-flow transformer over ``[text | history frames | current frame]``.

One forward denoises one latent frame ``i`` (the *current* frame) at one pyramid stage,
conditioned on text and on earlier latent frames (the *history*)::

    [text (T slots) | history frame j_0 | ... | history frame j_n | current frame i]
     group 0          group 1              group n+1              group n+2

All tokens go through the shared :class:`~kinema.nn.Transformer` blocks (joint attention,
MM-DiT style, one set of weights). Attention is block-causal over groups: a token sees every
token of its own group and of earlier groups, so text sees only text, a history frame sees
text and older frames, and the current frame sees everything (text padding excluded).
Hence text and history do not depend on the current frame: :meth:`PyramidDiT.encode_context`
writes their keys/values into the static KV cache once and every Euler step of a stage runs
only the current frame's tokens (exact, not an approximation).

Conditioning (adaLN, one vector per group kind): the current frame gets the embedding of
its global timestep (0..1000, :meth:`PyramidSchedule.timestep`), history frames that of
their own noise level on the same scale, ``1000 * history_sigma`` (training noise
augmentation; 0 at inference), text that of timestep 0.

Rotary positions (3D ``(t, h, w)``, float, ``T`` = text slots): text slot ``k`` is at
``(k, k, k)`` (as in the token LM); a frame with latent index ``f`` whose tokens are
``s = 2^(K-1-stage)`` times coarser than the full-resolution token grid has token ``(y, x)``
at ``(T + f, T + s*y + (s-1)/2, T + s*x + (s-1)/2)`` (:func:`frame_positions`). This is
*centre* alignment: a coarse token sits at the mean position of the ``s x s`` full-res
tokens it covers, matching the latent pyramid (2x bilinear downsampling averages 2x2
blocks, nearest upsampling copies a value back onto its block). History and current frames
use the same rule, so every stage of every frame lies on one full-resolution grid.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from kinema.errors import KinemaError
from kinema.flow.config import FlowConfig
from kinema.flow.loss import FlowLoss
from kinema.modeling import ModelMixin
from kinema.nn.rotary import grid_positions
from kinema.nn.text import TextSlots
from kinema.nn.transformer import Transformer

logger = logging.getLogger(__name__)

History = Sequence[tuple[torch.Tensor, int]]

# Conditioning groups (rows of ``cond (B, G, D)``).
_TEXT, _HISTORY, _CURRENT = 0, 1, 2


# ---------------------------------------------------------------------------- helpers
def timestep_features(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features ``(...) -> (..., dim)`` fp32: ``[cos(t w_i) | sin(t w_i)]`` with
    ``w_i = max_period^(-i / (dim/2))`` (DiT / ADM)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.float()[..., None] * freqs
    return torch.cat([args.cos(), args.sin()], dim=-1)


def frame_positions(
    frame_index: int,
    height: int,
    width: int,
    factor: int,
    *,
    offset: float = 0.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Centre-aligned rotary positions of one frame's ``height x width`` token grid that is
    ``factor`` times coarser than the full grid: token ``(y, x)`` at ``(offset +
    frame_index, offset + factor*y + (factor-1)/2, offset + factor*x + (factor-1)/2)``.

    Returns: ``(height*width, 3)`` float32 in raster order.
    """
    centre = offset + (factor - 1) / 2
    return grid_positions(
        1,
        height,
        width,
        offset=(offset + frame_index, centre, centre),
        scale=(1, factor, factor),
        device=device,
    )


def group_causal_mask(group: torch.Tensor, key_valid: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean mask (True = may attend): slot ``i`` sees slot ``j`` iff ``group[j] <=
    group[i]`` and key ``j`` is valid.

    Args:
        group: ``(N,)`` long, non-decreasing group id of each slot (0 = text).
        key_valid: ``(B, N)`` bool, False = padding. A padding slot still sees itself so no
            row is empty (an empty row makes SDPA return NaN).

    Returns: ``(N, N)``, or ``(B, 1, N, N)`` with ``key_valid``.
    """
    mask = group[None, :] <= group[:, None]
    if key_valid is None:
        return mask
    eye = torch.eye(group.shape[0], dtype=torch.bool, device=group.device)
    return (mask & (key_valid[:, None, :] | eye))[:, None]


@dataclass(frozen=True)
class FlowContext:
    """Text and history of one current frame, encoded into the DiT's KV caches by
    :meth:`PyramidDiT.encode_context`; pass it as ``context=`` to run only the current frame.

    Attributes:
        batch_size: ``B``.
        length: ``P`` context slots (text + history tokens) in the cache.
        frame_index: latent index of the current frame.
        width: full-resolution latent width of the current frame.
        key_valid: ``(B, P)`` bool, False = text padding; ``None`` = no padding.
        cache_id: which :meth:`~PyramidDiT.encode_context` call wrote the caches.
    """

    batch_size: int
    length: int
    frame_index: int
    width: int
    key_valid: torch.Tensor | None
    cache_id: int


# ---------------------------------------------------------------------------- model
class PyramidDiT(FlowLoss, ModelMixin):
    """Velocity network of pyramidal flow matching (see the module docstring).

    Shapes: latents ``(B, C, h, w)``; tokens ``(B, N, D)``; a frame of ``h x w`` latents is
    ``(h/p) * (w/p)`` tokens. ``forward`` returns the velocity of the current frame; the
    training objective ``loss(batch)`` comes from :class:`~kinema.flow.loss.FlowLoss`.
    """

    config_class = FlowConfig

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        self.config = c = config
        self.schedule = c.schedule()
        patch_dim = c.latent_channels * c.patch_size**2
        self.transformer = Transformer(c.transformer_config())
        self.patch_embed = nn.Linear(patch_dim, c.dim)
        self.time_mlp = nn.Sequential(
            nn.Linear(c.timestep_dim, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim)
        )
        # After the core's final adaLN norm; zero-init so a fresh model predicts velocity 0.
        self.proj_out = nn.Linear(c.dim, patch_dim)
        self.text = TextSlots(c.text_dim, c.dim, c.max_text_len, c.init_std) if c.text_dim else None
        self._cache_id = 0
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Input projections, timestep MLP and null text ~ Normal(0, init_std), biases zero,
        output projection zero (the core initialises itself, adaLN-Zero)."""
        std = self.config.init_std
        for lin in (self.patch_embed, self.time_mlp[0], self.time_mlp[2]):
            nn.init.normal_(lin.weight, 0.0, std)
            nn.init.zeros_(lin.bias)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        if self.text is not None:
            self.text.reset_parameters()

    # ------------------------------------------------------------------ embeddings
    def embed_frame(self, x: torch.Tensor) -> torch.Tensor:
        """Patchify ``(B, C, h, w)`` latents -> ``(B, (h/p)*(w/p), D)`` tokens, raster order."""
        p = self.config.patch_size
        x = rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=p, q=p)
        return self.patch_embed(x.to(self.patch_embed.weight.dtype))

    def unpatchify(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Output tokens ``(B, n, D)`` -> ``(B, C, height, width)`` via the zero-init head."""
        p = self.config.patch_size
        out = self.proj_out(tokens)
        return rearrange(out, "b (h w) (p q c) -> b c (h p) (w q)", h=height // p, p=p, q=p)

    def embed_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """Global timesteps (float, 0..1000) ``(...)`` -> adaLN conditioning ``(..., D)``."""
        feats = timestep_features(t, self.config.timestep_dim)
        return self.time_mlp(feats.to(self.patch_embed.weight.dtype))

    def unconditional_text(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The null text (classifier-free guidance): ``(B, T, D)`` with the learned null
        vector in slot 0, and ``valid (B, T)`` True on slot 0 only."""
        if self.text is None:
            raise KinemaError("this model has no text (text_dim=0)")
        return self.text.unconditional(batch_size)

    def embed_text(
        self,
        batch_size: int,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Text slots ``(B, T, D)`` and ``valid (B, T)`` (False = padding).

        Args:
            text: ``(B, L, text_dim)`` text-encoder states, ``L <= max_text_len``; ``None``
                = the null text for every sample.
            text_mask: ``(B, L)`` bool, True = real token (default all True).
            drop: ``(B,)`` bool, True = the null text for that sample (CFG dropout in
                training; the unconditional rows of a guided batch in sampling).
        """
        if self.text is None:
            raise KinemaError("this model has no text (text_dim=0)")
        return self.text(batch_size, text, text_mask, drop)

    # ------------------------------------------------------------------ layout
    def _frame_factor(self, x: torch.Tensor, name: str, batch_size: int | None = None) -> int:
        """Check a latent frame ``(B, C, h, w)``; return its coarseness ``2^(K-1-stage)``."""
        c = self.config
        bad_batch = batch_size is not None and x.ndim and x.shape[0] != batch_size
        if x.ndim != 4 or x.shape[1] != c.latent_channels or bad_batch:
            b = "B" if batch_size is None else f"B={batch_size}"
            raise KinemaError(
                f"{name} must be latents ({b}, C={c.latent_channels}, h, w), got {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        heights = [c.stage_size(k) for k in range(c.stages)]
        factor = c.resolution // h if h in heights else 0
        if not factor or (w * factor) % c.min_divisor:
            raise KinemaError(
                f"{name} is {h}x{w}: height must be a stage height {heights} and the width, "
                f"scaled to full resolution, a multiple of patch_size * 2^(stages-1) = "
                f"{c.min_divisor}"
            )
        return factor

    def _prefix(
        self,
        batch_size: int,
        history: History,
        frame_index: int | None,
        history_sigma: torch.Tensor | float | None,
        text: torch.Tensor | None,
        text_mask: torch.Tensor | None,
        drop: torch.Tensor | None,
    ) -> _Prefix:
        """Check and embed ``[text | history]`` (see :class:`_Prefix`)."""
        c, b = self.config, batch_size
        device = self.patch_embed.weight.device
        if not c.text_dim and (text is not None or text_mask is not None or drop is not None):
            raise KinemaError("text given but this model has no text (text_dim=0)")
        history = list(history)
        if not all(isinstance(item, (tuple, list)) and len(item) == 2 for item in history):
            raise KinemaError("history must be a list of (latent (B, C, h, w), frame_index) pairs")
        indices = [int(f) for _, f in history]
        if frame_index is None:
            frame_index = indices[-1] + 1 if indices else 0
        bounds = [-1, *indices, int(frame_index)]
        if any(a >= z for a, z in zip(bounds, bounds[1:], strict=False)):
            raise KinemaError(
                f"history frame indices {indices} must be increasing, >= 0 and before the "
                f"current frame {frame_index}"
            )
        sigma = _per_sample(history_sigma, b, "history_sigma", device)
        cond = None
        if c.text_dim or history:  # (B, 2, D): text, history (nothing to condition without)
            cond = self.embed_timesteps(
                torch.stack([torch.zeros_like(sigma), sigma], -1)
                * self.schedule.num_train_timesteps
            )
        off, p = c.num_text_tokens, c.patch_size
        none = torch.zeros(0, dtype=torch.long, device=device)
        tokens: list[torch.Tensor] = []
        pos = [torch.zeros(0, 3, device=device)]
        group, cond_index, valid = [none], [none], []

        def add(x: torch.Tensor, xpos: torch.Tensor, g: int, kind: int) -> None:
            n = x.shape[1]
            tokens.append(x)
            pos.append(xpos)
            group.append(torch.full((n,), g, dtype=torch.long, device=device))
            cond_index.append(torch.full((n,), kind, dtype=torch.long, device=device))

        if c.text_dim:
            x, v = self.embed_text(b, text, text_mask, drop)
            slots = torch.arange(off, dtype=torch.float32, device=device)
            add(x, slots[:, None].expand(off, 3), 0, _TEXT)
            valid.append(v.to(device))
        width = None
        for j, (frame, f) in enumerate(history):
            factor = self._frame_factor(frame, f"history[{j}]", b)
            if width is not None and frame.shape[-1] * factor != width:
                raise KinemaError(
                    f"history[{j}] is {frame.shape[-1] * factor} latents wide at full "
                    f"resolution, earlier history frames {width}"
                )
            width = frame.shape[-1] * factor
            h, w = frame.shape[-2] // p, frame.shape[-1] // p
            xpos = frame_positions(int(f), h, w, factor, offset=off, device=device)
            add(self.embed_frame(frame.to(device)), xpos, 1 + j, _HISTORY)
            valid.append(torch.ones(b, h * w, dtype=torch.bool, device=device))
        return _Prefix(
            tokens=torch.cat(tokens, 1) if tokens else torch.zeros(b, 0, c.dim, device=device),
            pos=torch.cat(pos),
            group=torch.cat(group),
            cond_index=torch.cat(cond_index),
            key_valid=torch.cat(valid, 1) if c.text_dim else None,
            cond=cond,
            current_group=1 + len(history),
            frame_index=int(frame_index),
            width=width,
        )

    # ------------------------------------------------------------------ forward passes
    def forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor | float,
        *,
        history: History = (),
        frame_index: int | None = None,
        history_sigma: torch.Tensor | float | None = None,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
        context: FlowContext | None = None,
    ) -> torch.Tensor:
        """Velocity of the current frame.

        Args:
            x: ``(B, C, h, w)`` the current frame at its stage's resolution (``h`` one of the
                stage heights ``resolution / 2^(K-1-k)``).
            timestep: ``(B,)`` (or one float) global timestep in ``[0, 1000]``.
            history: ``[(latent (B, C, h_j, w_j), frame_index_j), ...]`` earlier latent
                frames, oldest first, each at any stage resolution (see
                :func:`compress_history`); may be empty.
            frame_index: latent index of the current frame (default: one after the last
                history frame, else 0).
            history_sigma: ``(B,)`` (or one float) noise level in ``[0, 1]`` the history was
                corrupted with (training augmentation); ``None`` = 0 (clean, inference).
            text, text_mask, drop: see :meth:`embed_text` (no text = the null text).
            context: from :meth:`encode_context`; replaces ``history``, ``frame_index``,
                ``history_sigma`` and the text, and runs only the current frame's tokens.

        Returns:
            ``(B, C, h, w)`` velocity in ``x.dtype``.
        """
        c = self.config
        factor = self._frame_factor(x, "x")
        b = x.shape[0]
        device = self.patch_embed.weight.device
        h, w = x.shape[-2:]
        grid = (h // c.patch_size, w // c.patch_size)
        t = _per_sample(timestep, b, "timestep", device)
        cur = self.embed_frame(x.to(device))
        n = cur.shape[1]
        if context is not None:
            given = (history_sigma, text, text_mask, drop)
            if len(history) or any(v is not None for v in given):
                raise KinemaError(
                    "with context= pass only x and timestep: history and text are in the context"
                )
            if frame_index is not None and frame_index != context.frame_index:
                raise KinemaError(
                    f"frame_index {frame_index} differs from the context's {context.frame_index}"
                )
            out = self._forward_cached(cur, t, context, factor, grid)
            return self.unpatchify(out, h, w).to(x.dtype)
        prefix = self._prefix(b, history, frame_index, history_sigma, text, text_mask, drop)
        if prefix.width is not None and w * factor != prefix.width:
            raise KinemaError(
                f"x is {w * factor} latents wide at full resolution, the history {prefix.width}"
            )
        xpos = frame_positions(prefix.frame_index, *grid, factor, offset=c.num_text_tokens)
        if prefix.cond is None:  # the current frame alone: one adaLN vector per sample
            out = self.transformer(cur, xpos.to(device), None, cond=self.embed_timesteps(t))
            return self.unpatchify(out, h, w).to(x.dtype)
        pos = torch.cat([prefix.pos, xpos.to(device)])
        group = F.pad(prefix.group, (0, n), value=prefix.current_group)
        cond_index = F.pad(prefix.cond_index, (0, n), value=_CURRENT)
        cond = torch.cat([prefix.cond, self.embed_timesteps(t)[:, None]], 1)  # (B, 3, D)
        key_valid = (
            None if prefix.key_valid is None else F.pad(prefix.key_valid, (0, n), value=True)
        )
        mask = group_causal_mask(group, key_valid) if len(group) > n else None
        seq = torch.cat([prefix.tokens, cur], 1)
        out = self.transformer(seq, pos, mask, cond=cond, cond_index=cond_index)
        return self.unpatchify(out[:, -n:], h, w).to(x.dtype)

    def _forward_cached(
        self,
        cur: torch.Tensor,
        t: torch.Tensor,
        context: FlowContext,
        factor: int,
        grid: tuple[int, int],
    ) -> torch.Tensor:
        """Run the current frame's tokens ``(B, n, D)`` against the cached context."""
        cache = self.transformer.layers[0].attn.kv_cache
        if context.cache_id != self._cache_id or cache is None:
            raise KinemaError(
                "this context is stale (a later encode_context or clear_caches replaced the KV "
                "caches); call encode_context again"
            )
        if cur.shape[0] != context.batch_size:
            raise KinemaError(f"x has batch {cur.shape[0]}, the context {context.batch_size}")
        if grid[1] * self.config.patch_size * factor != context.width:
            raise KinemaError(
                f"x is {grid[1] * self.config.patch_size * factor} latents wide at full "
                f"resolution, the context {context.width}"
            )
        p, n = context.length, cur.shape[1]
        s = p + n
        xpos = frame_positions(
            context.frame_index, *grid, factor, offset=self.config.num_text_tokens
        )
        valid = context.key_valid
        valid = (
            cur.new_ones(1, s, dtype=torch.bool)
            if valid is None
            else F.pad(valid, (0, n), value=True)
        )
        # The current frame is the last group: each of its rows sees every valid key. The
        # core takes the rows of a full (S, S) mask; a broadcast view provides them for free.
        mask = valid[:, None, None, :].expand(-1, 1, s, s)
        slots = torch.arange(p, s, device=cur.device)
        return self.transformer(
            cur, xpos.to(cur.device), mask, input_pos=slots, cond=self.embed_timesteps(t)
        )

    # ------------------------------------------------------------------ KV-cache context
    def encode_context(
        self,
        batch_size: int,
        *,
        history: History = (),
        frame_index: int | None = None,
        history_sigma: torch.Tensor | float | None = None,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
        width: int | None = None,
    ) -> FlowContext:
        """Write the keys/values of ``[text | history]`` into the static KV caches (inference:
        call under ``torch.no_grad``); then ``self(x, t, context=ctx)`` equals the full
        forward with the same arguments for any ``x`` and ``t`` of that frame (every stage,
        every Euler step). A later call invalidates earlier contexts.

        Args:
            batch_size: ``B``.
            history, frame_index, history_sigma, text, text_mask, drop: as in :meth:`forward`.
            width: full-resolution latent width of the current frame (default: that of the
                history, else ``resolution``); sizes the cache for its full-res stage.
        """
        c, p = self.config, self.config.patch_size
        prefix = self._prefix(
            batch_size, history, frame_index, history_sigma, text, text_mask, drop
        )
        if width is None:
            width = prefix.width or c.resolution
        if width % c.min_divisor or (prefix.width is not None and width != prefix.width):
            raise KinemaError(
                f"width {width} must be a multiple of {c.min_divisor} and match the history "
                f"({prefix.width})"
            )
        length = prefix.tokens.shape[1]
        self._ensure_caches(batch_size, length + (c.resolution // p) * (width // p))
        if length:
            slots = torch.arange(length, device=prefix.tokens.device)
            mask = group_causal_mask(prefix.group, prefix.key_valid)
            self.transformer(
                prefix.tokens,
                prefix.pos,
                mask,
                input_pos=slots,
                cond=prefix.cond,
                cond_index=prefix.cond_index,
            )
        self._cache_id += 1
        logger.debug("context: %d slots for frame %d", length, prefix.frame_index)
        return FlowContext(
            batch_size, length, prefix.frame_index, width, prefix.key_valid, self._cache_id
        )

    def _ensure_caches(self, batch_size: int, length: int) -> None:
        """Reuse the static caches when they fit, else allocate (in the autocast dtype)."""
        w = self.patch_embed.weight
        kind = w.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else w.dtype
        cache = self.transformer.layers[0].attn.kv_cache
        if (
            cache is None
            or cache.k.shape[0] != batch_size
            or cache.max_len < length
            or cache.k.dtype != dtype
            or cache.k.device != w.device
        ):
            self.transformer.setup_caches(batch_size, length, dtype, w.device)

    def clear_caches(self) -> None:
        """Free the KV caches (invalidates every context)."""
        self.transformer.clear_caches()

    # ------------------------------------------------------------------ training hooks
    def fsdp_units(self) -> list[nn.Module]:
        return list(self.transformer.layers)


class _Prefix(NamedTuple):
    """``[text | history]`` embedded for the core (``P`` slots)."""

    tokens: torch.Tensor  # (B, P, D)
    pos: torch.Tensor  # (P, 3) float rotary positions
    group: torch.Tensor  # (P,) long causal group (0 = text, 1 + j = history frame j)
    cond_index: torch.Tensor  # (P,) long row of ``cond``: _TEXT or _HISTORY
    key_valid: torch.Tensor | None  # (B, P) bool, None without text
    cond: torch.Tensor | None  # (B, 2, D) adaLN vectors of text and history; None if P = 0
    current_group: int
    frame_index: int
    width: int | None  # full-res latent width of the history (None without history)


def _per_sample(
    value: torch.Tensor | float | None, b: int, name: str, device: torch.device
) -> torch.Tensor:
    """A float or ``(B,)`` -> ``(B,)`` fp32 (``None`` -> zeros)."""
    if value is None:
        return torch.zeros(b, device=device)
    v = torch.as_tensor(value, dtype=torch.float32, device=device)
    if v.ndim == 0:
        return v.expand(b)
    if tuple(v.shape) != (b,):
        raise KinemaError(f"{name} must be a float or (B={b},), got {tuple(v.shape)}")
    return v


def _check_shape(x: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    if tuple(x.shape) != tuple(shape):
        raise KinemaError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")
