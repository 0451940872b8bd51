"""Latent bottlenecks: FSQ, LFQ, VQ (discrete) and a diagonal Gaussian (continuous, KL).

Every quantizer maps encoder output ``z (B, C, t, h, w)`` to a :class:`QuantizerOutput`
and, if discrete, converts between token indices ``(...)`` and channel-last codes
``(..., C)`` with ``indices_to_codes`` / ``codes_to_indices``.

**Index order (fixed, little-endian): channel 0 is the least significant digit.**

- LFQ: channel ``i`` carries bit ``i`` (1 iff the channel is positive);
  ``index = sum_i bit_i * 2**i``. For ``d = 4``, index 5 = 0b0101 has bits (1, 0, 1, 0)
  for channels (0, 1, 2, 3), i.e. codes (+1, -1, +1, -1). Factorized halves:
  ``lo = index % 2**(d/2)`` (channels ``0 .. d/2-1``), ``hi = index // 2**(d/2)``,
  ``index = lo + hi * 2**(d/2)``.
- FSQ: mixed radix with the same order, ``index = sum_i digit_i * prod_{j<i} L_j`` where
  ``digit_i in [0, L_i)`` is channel ``i``'s level (``code = (digit - L // 2) / (L // 2)``);
  this is also vector-quantize-pytorch's FSQ order.

Quantization itself runs in fp32 with autocast off: rounding or sign of bf16 values would
change indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from vector_quantize_pytorch import FSQ as _LibFSQ

from kinema.errors import KinemaError


@dataclass
class QuantizerOutput:
    """``z``: quantized (or sampled) latent ``(B, C, t, h, w)`` fp32, with straight-through
    gradients; ``indices``: ``(B, t, h, w)`` long (None for KL); ``loss``: the weighted
    auxiliary loss (scalar); ``metrics``: unweighted scalars worth logging."""

    z: torch.Tensor
    indices: torch.Tensor | None
    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


def _no_autocast(x: torch.Tensor):
    return torch.autocast(device_type=x.device.type, enabled=False)


def _channel_last(z: torch.Tensor) -> torch.Tensor:
    return rearrange(z, "b c ... -> b ... c")


def _channel_first(z: torch.Tensor) -> torch.Tensor:
    return rearrange(z, "b ... c -> b c ...")


class FSQ(nn.Module):
    """Finite scalar quantization (vector-quantize-pytorch's bounding and rounding).

    ``levels`` per channel, e.g. (8, 8, 8, 5, 5, 5) = 64,000 codes on a 6-d latent. No
    parameters and no auxiliary loss.
    """

    def __init__(self, levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)) -> None:
        super().__init__()
        if any(level < 3 for level in levels):
            raise KinemaError(f"FSQ levels must be >= 3, got {tuple(levels)}")
        self.levels = tuple(int(level) for level in levels)
        self.dim = len(levels)
        self.codebook_size = math.prod(self.levels)
        # only its bound-and-round is used; indices are computed here (no 64,000 x d table)
        self.fsq = _LibFSQ(levels=list(self.levels), return_indices=False)
        lv = torch.tensor(self.levels)
        self.register_buffer("_levels", lv, persistent=False)
        self.register_buffer("_half", lv // 2, persistent=False)
        basis = torch.cumprod(torch.tensor((1,) + self.levels[:-1]), 0)
        self.register_buffer("_basis", basis, persistent=False)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """``(..., d)`` codes on the FSQ grid -> ``(...)`` long indices."""
        digits = torch.round(codes.float() * self._half + self._half).long()
        return (digits * self._basis).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """``(...)`` indices -> ``(..., d)`` fp32 codes in [-1, 1]."""
        digits = (indices.long()[..., None] // self._basis) % self._levels
        return (digits - self._half).float() / self._half

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """``z (B, d, t, h, w)`` -> quantized ``(B, d, t, h, w)`` and ``(B, t, h, w)`` indices."""
        with _no_autocast(z):
            zq = _channel_first(self.fsq.quantize(_channel_last(z.float())))
        indices = self.codes_to_indices(_channel_last(zq.detach()))
        return QuantizerOutput(zq, indices, zq.new_zeros(()))

    def encode_indices(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, d, t, h, w)`` -> ``(B, t, h, w)`` long, without side effects."""
        return self.forward(z).indices  # type: ignore[return-value]


def binary_entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of Bernoulli(sigmoid(logits)), elementwise and stable."""
    p = torch.sigmoid(logits)
    return p * F.softplus(-logits) + (1 - p) * F.softplus(logits)


def _bit_table(bits: int, device: torch.device) -> torch.Tensor:
    """``(2**bits, bits)`` {0,1} table; row ``n`` is index ``n`` in little-endian order."""
    n = torch.arange(2**bits, device=device)
    return ((n[:, None] >> torch.arange(bits, device=device)) & 1).float()


class LFQ(nn.Module):
    """Lookup-free quantization (MAGVIT-v2): each of ``bits`` channels -> its sign (+-1).

    Written here rather than taken from vector-quantize-pytorch because that LFQ (a) orders
    bits most-significant first and (b) computes the entropy over the full 2**d codebook
    (``N x 262,144`` probabilities for d = 18). Here the per-token code distribution
    ``p(c | z) ~ exp(-||z - c||^2 / T)`` factorizes over bits, ``p(bit_i = 1) =
    sigmoid(4 z_i / T)``, so the per-sample entropy is an exact sum of binary entropies, and
    the batch-code entropy is taken over groups of at most ``entropy_group_bits`` bits (exact
    when ``bits <= entropy_group_bits``; otherwise the sum of group entropies, an upper bound
    of the joint entropy that is maximal exactly when every group is used uniformly).

    Loss: ``entropy_weight * (H_sample - diversity * H_batch) + commit_weight * commit``
    (entropies in nats; ``commit = mean (z - sign(z))^2``).
    """

    def __init__(
        self,
        bits: int = 18,
        *,
        entropy_weight: float = 0.1,
        diversity: float = 1.0,
        commit_weight: float = 0.25,
        temperature: float = 0.01,
        entropy_group_bits: int = 9,
        factorize: bool = False,
    ) -> None:
        super().__init__()
        if factorize and bits % 2:
            raise KinemaError(f"LFQ factorization needs an even number of bits, got {bits}")
        self.bits = self.dim = bits
        self.codebook_size = 2**bits
        self.entropy_weight = entropy_weight
        self.diversity = diversity
        self.commit_weight = commit_weight
        self.temperature = temperature
        self.group_bits = max(1, min(entropy_group_bits, bits))
        self.factorize = factorize
        self.register_buffer("_powers", 2 ** torch.arange(bits), persistent=False)

    # ---------------------------------------------------------------- index <-> code

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """``(..., d)`` codes (only the sign matters) -> ``(...)`` long, little-endian."""
        return ((codes > 0).long() * self._powers).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """``(...)`` indices -> ``(..., d)`` fp32 codes in {-1, +1}."""
        bits = (indices.long()[..., None] >> torch.arange(self.bits, device=indices.device)) & 1
        return bits.float() * 2 - 1

    @property
    def factor_size(self) -> int:
        """Vocabulary of one factorized half: ``2 ** (bits / 2)``."""
        return 2 ** (self.bits // 2)

    def split_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """``(...)`` full indices -> ``(..., 2)`` halves ``[lo, hi]`` (channels ``0..d/2-1``
        then ``d/2..d-1``), each in ``[0, 2**(d/2))``."""
        if self.bits % 2:
            raise KinemaError(f"cannot split {self.bits}-bit LFQ indices into equal halves")
        n = self.factor_size
        return torch.stack([indices % n, indices // n], dim=-1)

    def merge_indices(self, halves: torch.Tensor) -> torch.Tensor:
        """``(..., 2)`` halves ``[lo, hi]`` -> ``(...)`` full indices ``lo + hi * 2**(d/2)``."""
        return halves[..., 0] + halves[..., 1] * self.factor_size

    # ---------------------------------------------------------------- losses

    def entropies(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample and batch-code entropy (nats) of ``z (N, d)``: see the class doc."""
        logits = 4.0 * z / self.temperature  # log p(bit=1) - log p(bit=0)
        per_sample = binary_entropy_from_logits(logits).sum(-1).mean()
        log_p1, log_p0 = F.logsigmoid(logits), F.logsigmoid(-logits)
        batch = z.new_zeros(())
        for start in range(0, self.bits, self.group_bits):
            g = slice(start, min(start + self.group_bits, self.bits))
            table = _bit_table(g.stop - g.start, z.device)  # (2^g, g)
            # log p(code) = sum over the group's bits of log p(bit value): (N, 2^g)
            log_p = log_p1[:, g] @ table.T + log_p0[:, g] @ (1 - table).T
            avg = log_p.exp().mean(0)
            batch = batch - (avg * avg.clamp_min(1e-12).log()).sum()
        return per_sample, batch

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """``z (B, d, t, h, w)`` -> codes (straight-through) and ``(B, t, h, w)`` indices."""
        with _no_autocast(z):
            zc = _channel_last(z.float())
            q = torch.where(zc > 0, 1.0, -1.0)
            indices = self.codes_to_indices(q)
            zq = zc + (q - zc).detach() if zc.requires_grad else q  # exact codes in inference
            loss = zc.new_zeros(())
            metrics: dict[str, torch.Tensor] = {}
            if self.training:
                flat = zc.reshape(-1, self.bits)
                h_sample, h_batch = self.entropies(flat)
                commit = F.mse_loss(flat, q.reshape(-1, self.bits))
                loss = self.entropy_weight * (h_sample - self.diversity * h_batch)
                loss = loss + self.commit_weight * commit
                metrics = {
                    "entropy_sample": h_sample.detach(),
                    "entropy_batch": h_batch.detach(),
                    "commit": commit.detach(),
                }
        return QuantizerOutput(_channel_first(zq), indices, loss, metrics)

    def encode_indices(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, d, t, h, w)`` -> ``(B, t, h, w)`` long."""
        return self.codes_to_indices(_channel_last(z.float()))


class VQ(nn.Module):
    """Nearest-neighbour vector quantization with a ``codebook_size x dim`` codebook.

    ``ema=True``: the codebook follows an exponential moving average of the vectors assigned
    to each code (buffers; loss = commitment only). ``ema=False``: the codebook is a
    parameter trained by the codebook loss ``||sg(z) - q||^2``, the encoder by the
    commitment loss ``commit_weight * ||z - sg(q)||^2``; both pass gradients straight
    through. The codebook is initialised from random encoder outputs of the first training
    batch. Written here (not vector-quantize-pytorch's VectorQuantize) to keep the distance
    computation in fp32 under CPU autocast and the state small and explicit.
    """

    def __init__(
        self,
        dim: int = 8,
        codebook_size: int = 1024,
        *,
        ema: bool = True,
        decay: float = 0.99,
        commit_weight: float = 0.25,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.dim, self.codebook_size = dim, codebook_size
        self.ema, self.decay, self.commit_weight, self.eps = ema, decay, commit_weight, eps
        init = torch.randn(codebook_size, dim)
        if ema:
            self.register_buffer("codebook", init)
            self.register_buffer("ema_count", torch.ones(codebook_size))
            self.register_buffer("ema_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """``(N, dim)`` -> ``(N,)`` index of the closest code (squared L2, fp32)."""
        cb = self.codebook.float()
        d2 = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ cb.T + cb.pow(2).sum(1)
        return d2.argmin(1)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """``(..., dim)`` -> ``(...)`` long (nearest code)."""
        return self.nearest(codes.float().reshape(-1, self.dim)).reshape(codes.shape[:-1])

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """``(...)`` -> ``(..., dim)`` fp32 codebook vectors."""
        return self.codebook.float()[indices.long()]

    @torch.no_grad()
    def _init_codebook(self, flat: torch.Tensor) -> None:
        n, k = flat.shape[0], self.codebook_size
        if n >= k:  # distinct vectors: duplicate codes would never both be used
            init = flat[torch.randperm(n, device=flat.device)[:k]]
        else:
            init = flat[torch.randint(0, n, (k,), device=flat.device)]
            init = init + 1e-3 * flat.std() * torch.randn_like(init)
        self.codebook.data.copy_(init)
        if self.ema:
            self.ema_sum.copy_(init)
            self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        counts = torch.bincount(indices, minlength=self.codebook_size).float()
        sums = torch.zeros_like(self.ema_sum).index_add_(0, indices, flat)
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (n + self.codebook_size * self.eps) * n
        self.codebook.copy_(self.ema_sum / smoothed[:, None])

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """``z (B, dim, t, h, w)`` -> quantized ``(B, dim, t, h, w)``, ``(B, t, h, w)`` indices."""
        with _no_autocast(z):
            zc = _channel_last(z.float())
            flat = zc.reshape(-1, self.dim)
            if self.training and not bool(self.initialized):
                self._init_codebook(flat.detach())
            indices = self.nearest(flat.detach())
            q = self.codebook.float()[indices]
            loss = flat.new_zeros(())
            metrics: dict[str, torch.Tensor] = {}
            if self.training:
                commit = F.mse_loss(flat, q.detach())
                loss = self.commit_weight * commit
                if self.ema:
                    self._ema_update(flat.detach(), indices)
                else:
                    loss = loss + F.mse_loss(q, flat.detach())
                usage = torch.bincount(indices, minlength=self.codebook_size).float()
                usage = usage / usage.sum()
                perplexity = (-(usage * usage.clamp_min(1e-12).log()).sum()).exp()
                metrics = {"commit": commit.detach(), "perplexity": perplexity}
            zq = flat + (q - flat).detach() if flat.requires_grad else q
        zq = _channel_first(zq.reshape(zc.shape))
        return QuantizerOutput(zq, indices.reshape(zc.shape[:-1]), loss, metrics)

    def encode_indices(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, dim, t, h, w)`` -> ``(B, t, h, w)`` long, no codebook update."""
        return self.codes_to_indices(_channel_last(z))


class DiagonalGaussian(nn.Module):
    """Continuous latent for flow models: the encoder predicts mean and log-variance.

    ``forward`` samples ``mean + std * eps`` in training (the mean in eval) and returns the
    KL to N(0, I) per latent element times ``kl_weight``. ``normalize`` / ``denormalize``
    apply the per-dataset ``shift`` / ``scale`` buffers (saved with the weights):
    ``z_norm = (z - shift) * scale``; set them with :meth:`set_stats` so that normalised
    latents have roughly zero mean and unit variance.
    """

    def __init__(self, channels: int = 16, kl_weight: float = 1e-6) -> None:
        super().__init__()
        self.dim = channels
        self.kl_weight = kl_weight
        self.codebook_size = None
        self.register_buffer("shift", torch.zeros(channels))
        self.register_buffer("scale", torch.ones(channels))

    def _view(self, v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.to(like.dtype).reshape(1, -1, *([1] * (like.ndim - 2)))

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, C, t, h, w)`` raw latent -> normalised latent."""
        return (z - self._view(self.shift, z)) * self._view(self.scale, z)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`."""
        return z / self._view(self.scale, z) + self._view(self.shift, z)

    @torch.no_grad()
    def set_stats(self, shift: float | torch.Tensor, scale: float | torch.Tensor) -> None:
        """Store ``shift`` and ``scale`` (scalars or per-channel ``(C,)``)."""
        self.shift.copy_(torch.as_tensor(shift, dtype=torch.float32).expand(self.dim))
        self.scale.copy_(torch.as_tensor(scale, dtype=torch.float32).expand(self.dim))

    def forward(self, moments: torch.Tensor) -> QuantizerOutput:
        """``moments (B, 2C, t, h, w)`` (mean, log-variance) -> ``z (B, C, t, h, w)``."""
        with _no_autocast(moments):
            mean, logvar = moments.float().chunk(2, dim=1)
            logvar = logvar.clamp(-30.0, 20.0)
            z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if self.training else mean
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        return QuantizerOutput(z, None, self.kl_weight * kl, {"kl": kl.detach()})

    def mean(self, moments: torch.Tensor) -> torch.Tensor:
        """``(B, 2C, ...)`` -> the mean ``(B, C, ...)`` (fp32)."""
        return moments.float().chunk(2, dim=1)[0]


Quantizer = FSQ | LFQ | VQ | DiagonalGaussian


def build_quantizer(cfg) -> nn.Module:
    """The bottleneck named by ``cfg.quantizer`` (a :class:`TokenizerConfig`)."""
    if cfg.quantizer == "fsq":
        return FSQ(cfg.fsq_levels)
    if cfg.quantizer == "lfq":
        return LFQ(
            cfg.lfq_bits,
            entropy_weight=cfg.lfq_entropy_weight,
            diversity=cfg.lfq_diversity,
            commit_weight=cfg.commit_weight,
            temperature=cfg.lfq_temperature,
            entropy_group_bits=cfg.lfq_entropy_group_bits,
            factorize=cfg.lfq_factorize,
        )
    if cfg.quantizer == "vq":
        return VQ(
            cfg.vq_dim,
            cfg.vq_codebook_size,
            ema=cfg.vq_ema,
            decay=cfg.vq_decay,
            commit_weight=cfg.commit_weight,
        )
    if cfg.quantizer == "kl":
        return DiagonalGaussian(cfg.kl_channels, cfg.kl_weight)
    raise KinemaError(f"unknown quantizer {cfg.quantizer!r}")
