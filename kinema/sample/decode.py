"""The one decode loop of the token LM (NTP and NBP alike: one forward per block).

Prefill ``[prefix | start block | given blocks]`` once into a static KV cache, then per
block: sample its ``L`` tokens at once from ``(B, L, V)`` logits, feed them back as the next
input block (their keys/values are written into the cache by slot index). ``L = 1`` is
next-token decoding; ``L = 16`` needs 16x fewer steps.

:func:`generate` decodes the config's layout (class / text / conditioning frames ->
video); :func:`generate_task` decodes a multitask layout (:mod:`kinema.lm.tasks`), sampling
at each target position only the ids it may hold (the target modality's; for audio, the
RVQ level of the position). Both run the same loop, :func:`decode_blocks`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from einops import rearrange, repeat

from kinema.errors import KinemaError
from kinema.lm.model import TokenLM
from kinema.lm.tasks import TaskSequence
from kinema.nn.kv_cache import decode_cache_dtype
from kinema.nn.packed import packed_linears
from kinema.sample.guidance import cfg_combine
from kinema.sample.sampling import sample_logits

logger = logging.getLogger(__name__)

# callback(block_index, logits (B, L, V) fp32 after guidance, tokens (B, L) long); with id
# ranges (generate_task) the logits cover only the head rows [lo, hi) that any position may
# take, (B, L, hi - lo), before the per-position restriction (e.g. audio levels)
Callback = Callable[[int, torch.Tensor, torch.Tensor], None]


def cast_parameters_(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast the floating parameters (not the buffers) of ``model`` to ``dtype`` in place.

    Parameters alone are what decode speed needs; buffers (masks, caches, rotary tables)
    keep their dtype.
    """
    for p in model.parameters():
        if p.is_floating_point() and p.dtype != dtype:
            p.data = p.data.to(dtype)


@torch.inference_mode()
def generate(
    model: TokenLM,
    batch_size: int = 1,
    *,
    label: torch.Tensor | None = None,
    text: torch.Tensor | None = None,
    text_mask: torch.Tensor | None = None,
    cond_tokens: torch.Tensor | None = None,
    prompt: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    cfg_scale: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Sample video tokens ``(B, t, h, w)`` long from a :class:`~kinema.lm.TokenLM`.

    Args:
        model: the LM (put in eval mode for the call; its KV caches are freed afterwards).
        batch_size: ``B``.
        label, text, text_mask, cond_tokens: the condition, shapes as in
            :meth:`TokenLM.embed_prefix` with batch ``B``; a missing one is the null condition.
        prompt: ``(B, tp, h, w)`` long: the first ``tp`` latent frames are given (e.g. an
            image for image-to-video); ``tp`` must be a multiple of the block's ``bt`` and
            less than ``t``. They are prefilled with the prefix and returned unchanged.
        temperature, top_k, top_p: see :func:`~kinema.sample.sampling.sample_logits`
            (``temperature=0``: greedy).
        cfg_scale: ``None`` = no guidance. Otherwise conditional and null-condition rows
            run in one ``2B`` batch and logits are mixed ``uncond + s * (cond - uncond)``.
        seed: seeds a fresh generator (same seed -> same tokens). ``generator`` is used when
            no seed is given; neither = torch's global RNG.
        dtype: cast the model's parameters to this dtype in place first (``torch.bfloat16``
            for fast CPU/GPU decoding; no autocast is used). On a CPU, bf16 weights decode
            over an fp32 KV cache (:func:`kinema.nn.kv_cache.decode_cache_dtype`).
        callback: called after each sampled block, see :data:`Callback`.

    On a CPU the linears' oneDNN-packed copies stay on the model after the call, so the
    next call skips the packing; they take as much memory again as those weights
    (:func:`kinema.nn.packed.release_packed` frees them).
    """
    c = model.config
    if cfg_scale is not None and not c.has_condition:
        raise KinemaError("cfg_scale given but the model has no condition (empty prefix)")
    given = None
    if prompt is not None:
        num = _prompt_blocks(model, prompt, batch_size)
        given = model.to_blocks(_pad_prompt(model, prompt))[:, :num]
    blocks = decode_blocks(
        model,
        batch_size,
        model.positions,
        c.num_blocks,
        cond=dict(label=label, text=text, text_mask=text_mask, cond_tokens=cond_tokens),
        given=given,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        cfg_scale=cfg_scale,
        seed=seed,
        generator=generator,
        dtype=dtype,
        callback=callback,
    )
    return model.from_blocks(blocks)


@torch.inference_mode()
def generate_task(
    model: TokenLM,
    seq: TaskSequence,
    *,
    label: torch.Tensor | None = None,
    text: torch.Tensor | None = None,
    text_mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    cfg_scale: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Generate the target of a multitask layout -> raw tokens ``(B, *seq.target_shape)``:
    visual tokens ``(B, t, h, w)`` (tokenizer ids) or audio tokens ``(B, A * Q)`` (codec LM
    tokens).

    ``seq`` from :func:`kinema.lm.tasks.task_sequence` (its ``target`` is ignored);
    ``label`` / ``text`` / ``text_mask`` and the sampling options as in :func:`generate`.
    Sampling is restricted per position to the ids it may hold
    (:meth:`~kinema.lm.vocab.Vocabulary.position_ranges`: the target modality's range; for
    audio, the range of the position's RVQ level), so the output is always decodable; the
    logits given to ``callback`` cover the modality's range. Guidance's null condition keeps
    the task marker and replaces the prefix's visual / audio tokens by ``<null>``.
    """
    vocab = model.config.vocabulary
    if vocab is None:
        raise KinemaError("generate_task needs a multitask model (TokenLMConfig.vocabulary)")
    if tuple(seq.block_shape) != tuple(model.config.block_shape):
        raise KinemaError(
            f"the sequence was laid out for block_shape {seq.block_shape}, the model has "
            f"{model.config.block_shape}"
        )
    b = seq.batch_size
    ranges = vocab.position_ranges(seq.modality, tuple(seq.target_shape))  # (*target, 2)
    ranges = seq.to_blocks(rearrange(ranges, "... two -> two ..."))  # (2, n, L) block order
    ranges = rearrange(ranges, "two n l -> n l two")
    blocks = decode_blocks(
        model,
        b,
        seq.positions,
        seq.num_blocks,
        cond=dict(label=label, text=text, text_mask=text_mask),
        prefix_ids=seq.prefix_ids,
        start_id=torch.full((b,), seq.start_id, dtype=torch.long),
        id_ranges=ranges,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        cfg_scale=cfg_scale,
        seed=seed,
        generator=generator,
        dtype=dtype,
        callback=callback,
    )
    return vocab.from_unified(seq.from_blocks(blocks), seq.modality)


@torch.inference_mode()
def decode_blocks(
    model: TokenLM,
    batch_size: int,
    positions: torch.Tensor,
    num_blocks: int,
    *,
    cond: dict[str, torch.Tensor | None],
    prefix_ids: torch.Tensor | None = None,
    start_id: torch.Tensor | None = None,
    given: torch.Tensor | None = None,
    id_ranges: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    cfg_scale: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """The decode loop: ``num_blocks`` blocks ``(B, n, L)`` long after the prefix.

    ``positions (N, 3)`` of the whole layout; ``cond`` the :meth:`TokenLM.embed_prefix`
    conditions (batch ``B``); ``prefix_ids (B, Pt)`` / ``start_id (B,)``: multitask prefix
    tokens and target begin token; ``given (B, k, L)``: leading blocks that are prefilled and
    returned unchanged; ``id_ranges (n, L, 2)`` long: sample at slot ``l`` of block ``i`` only
    ids in ``[id_ranges[i, l, 0], id_ranges[i, l, 1])`` (the head is evaluated on the rows
    any slot may take, other ids of a slot are masked to ``-inf``). The other options as in
    :func:`generate`.
    """
    c = model.config
    if dtype is not None:
        cast_parameters_(model, dtype)
    param = model.tok_embed.weight
    device = param.device
    if seed is not None:
        generator = torch.Generator(device).manual_seed(seed)
    guided = cfg_scale is not None
    b, big = batch_size, 2 * batch_size if guided else batch_size
    blen, n = c.block_len, num_blocks
    lo, hi, head, bounds = 0, c.vocab_size, model.head, None
    if id_ranges is not None:
        if tuple(id_ranges.shape) != (n, blen, 2):
            raise KinemaError(
                f"id_ranges must be (n={n}, L={blen}, 2), got {tuple(id_ranges.shape)}"
            )
        lo, hi = int(id_ranges[..., 0].min()), int(id_ranges[..., 1].max())
        head = _head_rows(model.head.weight, lo, hi)
        bounds = (id_ranges - lo).to(device)  # (n, L, 2) into the head rows
        if bool((bounds[..., 0] == 0).all() and (bounds[..., 1] == hi - lo).all()):
            bounds = None  # every slot takes every head row: nothing to mask

    def rows(x: torch.Tensor | None) -> torch.Tensor | None:
        """Conditional rows on the model's device, repeated for the unconditional half."""
        if x is None:
            return None
        x = x.to(device)
        return repeat(x, "b ... -> (g b) ...", g=2) if guided else x

    drop = None
    if guided:
        drop = torch.arange(big, device=device) >= b
    prefix, valid = model.embed_prefix(
        big,
        **{k: rows(v) for k, v in cond.items()},
        prefix_ids=rows(prefix_ids),
        drop=drop,
    )
    p = prefix.shape[1]
    if positions.shape[-2] != p + n * blen:
        raise KinemaError(
            f"positions cover {positions.shape[-2]} slots; prefix {p} + {n} blocks of {blen} "
            f"need {p + n * blen}"
        )
    positions = positions.to(device)
    mask = model.attention_mask(valid, prefix_len=p, num_blocks=n)
    out = torch.empty(b, n, blen, dtype=torch.long, device=device)
    parts = [prefix, model.start_block(big, rows(start_id))]
    num_given = 0
    if given is not None:
        num_given = given.shape[1]
        out[:, :num_given] = given
        parts.append(model.embed_blocks(rows(given)))

    was_training = model.training
    try:
        model.eval()
        model.setup_caches(big, decode_cache_dtype(param.dtype, device), max_len=p + n * blen)
        # CPU weights packed for oneDNN once and kept for the next call (not re-laid out per
        # call, not re-packed per generate while the weights are unchanged)
        with packed_linears(model, rows_hint=big * blen, keep=True):
            x = torch.cat(parts, dim=1)
            slot = x.shape[1]  # next free cache slot
            logits = _flat(head, model.decode_step(x, 0, mask, positions)[:, -blen:])
            for step in range(num_given, n):
                if guided or callback is not None:  # else the sampler converts to fp32 itself
                    logits = logits.float()  # (big, L, hi - lo)
                if guided:
                    logits = cfg_combine(logits, cfg_scale)
                if bounds is None:
                    tokens = sample_logits(logits, temperature, top_k, top_p, generator)
                else:
                    tokens = _sample_within(
                        logits, bounds[step], temperature, top_k, top_p, generator
                    )
                tokens = tokens + lo  # (B, L)
                out[:, step] = tokens
                if callback is not None:
                    callback(step, logits, tokens)
                if step == n - 1:
                    break
                x = model.embed_blocks(rows(tokens[:, None]))  # (big, L, D)
                logits = _flat(head, model.decode_step(x, slot, mask, positions))
                slot += blen
    finally:
        model.clear_caches()
        model.train(was_training)
    return out


def _flat(head: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    """``head`` on ``h (B, L, D)`` as one 2D matmul -> ``(B, L, V)``. A strided 3D input (the
    prefill's last block is a slice) sends ``linear`` through a bmm that first copies the
    whole ``(D, V)`` head, ~0.1-0.4 s at V = 64K on CPU."""
    return head(h.reshape(-1, h.shape[-1])).unflatten(0, h.shape[:2])


def _sample_within(
    logits: torch.Tensor,
    bounds: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Sample ``logits (B, L, V)`` with slot ``l`` restricted to ``[bounds[l, 0], bounds[l, 1])``
    (``bounds (L, 2)``) -> ``(B, L)`` long. The restriction is applied after guidance (its
    difference of ``-inf`` logits would be NaN) and before top-k / top-p."""
    ids = torch.arange(logits.shape[-1], device=logits.device)
    lo, hi = bounds[:, :1], bounds[:, 1:]  # (L, 1)
    outside = (ids < lo) | (ids >= hi)  # (L, V)
    tokens = sample_logits(
        logits.masked_fill(outside, float("-inf")), temperature, top_k, top_p, generator
    )
    # sample_logits clamps a CDF overshoot (float rounding) to the last id; keep it in range
    return tokens.clamp(lo[:, 0], hi[:, 0] - 1)


def _head_rows(weight: torch.Tensor, lo: int, hi: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The output head restricted to ids ``[lo, hi)``: logits ``(..., hi - lo)``."""
    rows = weight[lo:hi]
    return lambda h: torch.nn.functional.linear(h, rows)


def _prompt_blocks(model: TokenLM, prompt: torch.Tensor, batch_size: int) -> int:
    """Number of leading blocks covered by ``prompt (B, tp, h, w)`` (validated)."""
    t, h, w = model.config.latent_shape
    bt, bh, bw = model.config.block_shape
    tp = prompt.shape[1] if prompt.ndim == 4 else -1
    if prompt.ndim != 4 or tuple(prompt.shape) != (batch_size, tp, h, w) or not 0 < tp < t:
        raise KinemaError(
            f"prompt must be (B={batch_size}, tp, {h}, {w}) with 0 < tp < {t}, "
            f"got {tuple(prompt.shape)}"
        )
    if tp % bt:
        raise KinemaError(
            f"prompt has {tp} latent frames; with block_shape "
            f"{model.config.block_shape} it must be a multiple of {bt}"
        )
    return (tp // bt) * (h // bh) * (w // bw)


def _pad_prompt(model: TokenLM, prompt: torch.Tensor) -> torch.Tensor:
    """``(B, tp, h, w)`` -> ``(B, t, h, w)`` with zero frames after the prompt (only the
    leading whole blocks are used; blocks are frame-major, so they are the prompt's)."""
    t = model.config.latent_shape[0]
    pad = prompt.new_zeros(prompt.shape[0], t - prompt.shape[1], *prompt.shape[2:])
    return torch.cat([prompt.to(model.tok_embed.weight.device), pad], dim=1)
