"""Decoding of VideoPoet's super-resolution transformer
(:class:`~kinema.lm.superres.SuperResTransformer`) and the cascade that upscales a video.

>>> hr = upsample(model, lr, steps=8, seed=0)                        # lr (B, 2, 4, 4)
>>> video = upscale_video(model, lr_tokenizer, hr_tokenizer, frames)  # uint8 (T, H, W, 3)

Decoding (:func:`upsample`): start all masked; each step samples every masked cell, keeps
the most confident so that ``floor(N * cos(pi/2 * k / steps))`` cells stay masked after
step ``k``, and re-masks the rest; fixed cells never change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from einops import rearrange, repeat

from kinema.errors import KinemaError
from kinema.lm.superres import SuperResTransformer, cosine_schedule, merge_index, split_index
from kinema.sample.guidance import cfg_combine
from kinema.sample.sampling import sample_logits

if TYPE_CHECKING:
    from kinema.tokenizer import Tokenizer


# ---------------------------------------------------------------------- decoding


def sample_factorized(
    lo: torch.Tensor,
    hi: torch.Tensor,
    vocab_size: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw factorized tokens from ``lo (..., base)`` and ``hi (..., n_hi)`` logits -> full
    indices ``(...)`` long in ``[0, vocab_size)``.

    The halves are independent given the hidden state (the model predicts them with two
    heads), so each is drawn from its own head, ``hi`` first. Only when ``base * n_hi >
    vocab_size`` (not for LFQ) does the last ``hi`` row hold invalid ``lo`` values; then the
    pair is drawn from the product distribution restricted to valid indices: ``hi``'s last
    row is weighted by the ``lo`` mass that stays valid, and ``lo`` is then drawn among the
    valid values. ``temperature`` (0 = greedy: the best valid pair), ``top_k``, ``top_p``
    apply to each half as in :func:`~kinema.sample.sampling.sample_logits`.
    """
    lo, hi = lo.float(), hi.float()
    base, n_hi = lo.shape[-1], hi.shape[-1]
    valid = vocab_size - (n_hi - 1) * base  # lo values allowed on the last hi row
    if valid < base:
        if temperature > 0:
            keep = temperature * (
                (lo[..., :valid] / temperature).logsumexp(-1) - (lo / temperature).logsumexp(-1)
            )
        else:  # the limit temperature -> 0: best valid lo against best lo
            keep = lo[..., :valid].amax(-1) - lo.amax(-1)
        hi = torch.cat([hi[..., :-1], hi[..., -1:] + keep[..., None]], dim=-1)
    hi_s = sample_logits(hi, temperature, top_k, top_p, generator)
    if valid < base:
        bad = (hi_s == n_hi - 1)[..., None] & (torch.arange(base, device=lo.device) >= valid)
        lo = lo.masked_fill(bad, float("-inf"))
    lo_s = sample_logits(lo, temperature, top_k, top_p, generator)
    return merge_index(torch.stack([lo_s, hi_s], dim=-1), base)


# callback(step, tokens (B, t, H, W) long, masked (B, t, H, W) bool) after each step;
# token values at masked cells are meaningless
Callback = Callable[[int, torch.Tensor, torch.Tensor], None]


@torch.inference_mode()
def upsample(
    model: SuperResTransformer,
    tokens_lr: torch.Tensor,
    *,
    text: torch.Tensor | None = None,
    text_mask: torch.Tensor | None = None,
    steps: int = 8,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    choice_temperature: float = 4.5,
    guidance: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """High-res tokens ``(B, t, s*h, s*w)`` long from low-res tokens ``(B, t, h, w)``.

    Args:
        model: the upsampler (put in eval mode for the call).
        tokens_lr: low-res tokens of the model's ``lr_shape``.
        text, text_mask: the text condition (text models), batch ``B``.
        steps: parallel decoding steps (MaskGIT / VideoPoet use about 8-12); after step
            ``k`` ``floor(N * cos(pi/2 * k / steps))`` cells stay masked (at least one fewer
            per step, so ``steps >= N`` decodes one cell per step).
        temperature, top_k, top_p: token sampling per half (:func:`sample_factorized`);
            ``temperature = 0`` is greedy and makes the whole decode deterministic.
        choice_temperature: Gumbel noise on the confidences (log-probabilities of the drawn
            tokens) that pick which cells to keep, scaled by ``1 - k / steps`` as in MaskGIT;
            off when ``temperature = 0``.
        guidance: ``None`` = no guidance; else text-conditional and null-text rows run in one
            ``2B`` batch and both halves' logits are mixed ``uncond + g * (cond - uncond)``.
        seed: seeds a fresh generator (same seed -> same tokens); else ``generator``; else
            torch's global RNG.
        callback: see :data:`Callback`.
    """
    c = model.config
    if steps < 1:
        raise KinemaError(f"steps must be >= 1, got {steps}")
    if choice_temperature < 0:
        raise KinemaError(f"choice_temperature must be >= 0, got {choice_temperature}")
    guided = guidance is not None
    if guided and not c.text_dim:
        raise KinemaError("guidance needs a text condition, but this model has no text")
    device = model.mask_embed.device
    tokens_lr = tokens_lr.to(device)
    model.check_tokens(tokens_lr)
    if seed is not None:
        generator = torch.Generator(device).manual_seed(seed)
    b, n = tokens_lr.shape[0], c.num_hr_tokens

    def rows(x: torch.Tensor | None) -> torch.Tensor | None:
        """Conditional rows on the model's device, repeated for the unconditional half."""
        if x is None:
            return None
        x = x.to(device)
        return repeat(x, "b ... -> (g b) ...", g=2) if guided else x

    drop = torch.arange(2 * b, device=device) >= b if guided else None
    tokens = torch.zeros(b, *c.hr_shape, dtype=torch.long, device=device)
    masked = torch.ones(b, *c.hr_shape, dtype=torch.bool, device=device)
    was_training = model.training
    try:
        model.eval()
        cond = model.condition(
            rows(tokens_lr), text=rows(text), text_mask=rows(text_mask), drop=drop
        )
        for step in range(steps):
            lo, hi = (z.float() for z in model(rows(tokens), rows(masked), cond))
            if guided:
                lo, hi = cfg_combine(lo, guidance), cfg_combine(hi, guidance)
            drawn = sample_factorized(
                lo, hi, c.hr_vocab_size, temperature, top_k, top_p, generator
            )  # (B, N)
            halves = split_index(drawn, lo.shape[-1])
            confidence = lo.log_softmax(-1).gather(-1, halves[..., :1]).squeeze(-1)
            confidence += hi.log_softmax(-1).gather(-1, halves[..., 1:]).squeeze(-1)
            progress = (step + 1) / steps
            noise = choice_temperature * (1.0 - progress) if temperature > 0 else 0.0
            if noise:
                u = torch.rand(confidence.shape, device=device, generator=generator)
                confidence += noise * -torch.log(-torch.log(u.clamp_min(1e-20)))
            flat_masked = masked.reshape(b, n)
            still = int(flat_masked[0].sum())  # the same for every row
            keep_masked = min(int(n * float(cosine_schedule(progress))), still - 1)
            tokens = torch.where(masked, drawn.reshape(tokens.shape), tokens)
            # fixed cells are never re-masked: they rank last
            confidence = confidence.masked_fill(~flat_masked, float("inf"))
            remask = confidence.argsort(dim=-1, stable=True)[:, : max(keep_masked, 0)]
            masked = torch.zeros_like(flat_masked).scatter_(1, remask, True).reshape(masked.shape)
            if callback is not None:
                callback(step, tokens, masked)
            if keep_masked <= 0:
                break
    finally:
        model.train(was_training)
    return tokens


# ---------------------------------------------------------------------- cascade


@torch.inference_mode()
def upscale_video(
    sr_model: SuperResTransformer,
    lr_tokenizer: Tokenizer,
    hr_tokenizer: Tokenizer,
    video: np.ndarray,
    **decode,
) -> np.ndarray:
    """Upscale a video: encode with ``lr_tokenizer``, :func:`upsample` the tokens, decode with
    ``hr_tokenizer``, in consecutive clips of the model's length.

    The model's ``lr_shape`` covers ``F = 1 + ft * (t - 1)`` frames (``ft``: the low-res
    tokenizer's temporal compression). A video of any length is cut into clips of ``F``
    frames, the last one padded by repeating the last frame; the clips are upscaled as one
    batch, joined and trimmed to the video's length (an extended video upscales whole).

    Args:
        video: uint8 ``(T, H, W, 3)``, ``T >= 1``, at the low-res tokenizer's frame size for
            the model's ``lr_shape``.
        decode: keyword arguments of :func:`upsample` (``steps``, ``temperature``, ``seed``,
            ``text``, ``guidance``, ...); ``text`` / ``text_mask`` of batch 1, used for
            every clip.

    Returns:
        uint8 ``(T', H', W', 3)``: the high-res tokenizer's decoding of the predicted tokens
        (``T' = T`` and ``H' = s * H`` when both tokenizers compress alike).
    """
    from kinema.io import to_tensor, to_uint8

    c = sr_model.config
    for name, tok, vocab in (
        ("low-res", lr_tokenizer, c.lr_vocab_size),
        ("high-res", hr_tokenizer, c.hr_vocab_size),
    ):
        if not tok.is_discrete:
            raise KinemaError(f"the {name} tokenizer has a continuous (KL) latent; it needs tokens")
        if tok.vocab_size != vocab:
            raise KinemaError(
                f"the {name} tokenizer has {tok.vocab_size} codes but the super-resolution "
                f"model expects {vocab}"
            )
    if (
        not isinstance(video, np.ndarray)
        or video.dtype != np.uint8
        or video.ndim != 4
        or not video.shape[0]
    ):
        raise KinemaError(
            f"video must be a uint8 (T, H, W, 3) array with T >= 1, got {_describe(video)}"
        )
    cfg = lr_tokenizer.config
    t, h, w = c.lr_shape
    ft, fs = cfg.temporal_compression, cfg.spatial_compression
    clip = 1 + ft * (t - 1)  # frames of one low-res clip
    got = cfg.latent_shape(clip, *video.shape[1:3])
    if got != c.lr_shape:
        raise KinemaError(
            f"video {video.shape[0]}x{video.shape[1]}x{video.shape[2]} (frames x H x W) gives "
            f"low-res tokens of {got[1]}x{got[2]} per frame; the model needs {h}x{w}: give "
            f"frames at {fs * h}x{fs * w} (any number; upscaled in clips of {clip})"
        )
    frames = video.shape[0]
    chunks = -(-frames // clip)
    pad = chunks * clip - frames
    if pad:
        video = np.concatenate([video, np.repeat(video[-1:], pad, axis=0)])
    for key in ("text", "text_mask"):
        cond = decode.get(key)
        if cond is not None and chunks > 1:
            if cond.shape[0] != 1:
                raise KinemaError(f"{key} must have batch 1 (one video), got {tuple(cond.shape)}")
            decode[key] = cond.expand(chunks, *cond.shape[1:])
    param = next(lr_tokenizer.parameters())
    x = rearrange(to_tensor(video), "c (k f) h w -> k c f h w", f=clip)
    x = x.to(device=param.device, dtype=param.dtype)
    tokens_hr = upsample(sr_model, lr_tokenizer.encode(x), **decode)  # (chunks, t, s*h, s*w)
    out = hr_tokenizer.decode(tokens_hr.to(next(hr_tokenizer.parameters()).device))
    per_clip = out.shape[2]  # frames of one high-res clip
    out = rearrange(out, "k c f h w -> c (k f) h w")[:, : frames * per_clip // clip]
    return to_uint8(out.clamp(-1.0, 1.0))


# ---------------------------------------------------------------------- helpers


def _describe(x: object) -> str:
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return f"{x.dtype} of shape {tuple(x.shape)}"
    return type(x).__name__
