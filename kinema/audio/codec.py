"""SoundStream-style neural audio codec: causal 1D conv encoder -> residual VQ -> decoder.

>>> codec = AudioCodec(preset("cpu"))
>>> codes = codec.encode(wave)        # (B, 1, S) in [-1, 1] at 16 kHz -> (B, ceil(S/320), 4)
>>> wave = codec.decode(codes)        # -> (B, 1, L * 320)
>>> tokens = codec.codes_to_tokens(codes)   # (B, L * 4) in [0, 4 * codebook_size)

Architecture (Zeghidour et al. 2021, arXiv 2107.03312): a kernel-7 conv to ``channels``; one
block per stride ``s`` of residual units (dilated kernel-7 conv + kernel-1 conv, ELU) followed
by a conv of kernel ``2s`` and stride ``s`` that doubles the width; a kernel-3 conv to the
embedding ``dim``. The decoder mirrors it with transposed convs. Every conv is causal (padded
on the left only; transposed convs drop their right overhang), so frame ``l`` of the codes
depends on samples ``< (l + 1) * hop`` only and decoding can stream. Training loss: L1 and
MSE on the waveform, MSE of its first difference (pre-emphasis), multi-resolution STFT
magnitude (linear and log), optionally the log energy envelope of the first difference
(``envelope_weight``) and RVQ commitment, with the RVQ and STFT terms switched on at steps
``vq_start`` / ``stft_start`` (the waveform first).
SoundStream's adversarial and feature-matching losses are not implemented.

**Token order (for a language model): frame-major, level-minor, offset per level.**
``tokens[b, l * Q + q] = q * K + codes[b, l, q]`` for ``Q`` levels of ``K`` codes, so the
``Q`` tokens of a frame are contiguous (coarse level first) and each level owns its own
range of ``K`` ids; ``vocab_size = Q * K`` (4 x 1024 = 4,096 audio tokens in VideoPoet).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from kinema.audio.fsq import GroupedFSQ
from kinema.audio.metrics import diff_energy
from kinema.audio.rvq import ResidualVQ
from kinema.errors import KinemaError
from kinema.modeling import ModelMixin
from kinema.tokenizer.quantizers import QuantizerOutput


@dataclass
class AudioCodecConfig:
    """Hyper-parameters of :class:`AudioCodec`. ``hop_length = prod(strides)`` samples per
    code frame (320 at 16 kHz = 50 frames/s, VideoPoet's 106 frames per 2.125 s)."""

    sample_rate: int = 16_000
    channels: int = 32  # width after the input conv; doubled by every downsampling
    strides: tuple[int, ...] = (2, 4, 5, 8)
    dilations: tuple[int, ...] = (1, 3, 9)  # one residual unit per dilation in every block
    kernel_size: int = 7
    # the encoder sees ``input_gain * wave`` and the decoder's output is divided by it: at
    # the physics sound's RMS of 0.07 the convs' default-initialised biases drown the
    # signal and a bare autoencoder stays at 0 dB SNR; x10 lets it learn (measured)
    input_gain: float = 1.0
    dim: int = 256  # embedding width entering the quantizer
    # "rvq": SoundStream's residual VQ of `levels` learned codebooks; "fsq": `levels` groups
    # of dim / levels channels, each on the FSQ grid `fsq_levels` (codebook_size must be
    # their product; kinema.audio.fsq says why)
    quantizer: str = "rvq"
    fsq_levels: tuple[int, ...] = (4, 4, 4, 4)
    levels: int = 4  # RVQ depth / FSQ groups: LM tokens per code frame
    codebook_size: int = 1024
    vq_ema: bool = True  # EMA codebooks; False = learned codebooks (straight-through)
    vq_decay: float = 0.99
    commit_weight: float = 0.25
    vq_restart: float = 0.1  # EMA usage below this x average moves a code (0 = never)
    l1_weight: float = 1.0
    # MSE on the waveform. Unlike L1, whose gradient has the same size on every sample, it
    # weighs a sample by its error, so sparse clicks are not outvoted by the silence and
    # tone around them (measured: an autoencoder of isolated clicks, gain 10, reaches
    # 3.27 dB SNR after 300 steps with MSE and stays at 0.00 dB with L1)
    l2_weight: float = 0.0
    # MSE of the first difference (pre-emphasis): a sample's error weighed by its frequency,
    # |2 sin(pi f / sr)|^2, so the 3 kHz clicks count ~30x as much as a 500 Hz tone of the
    # same amplitude. With waveform MSE alone the tone is ~97% of the loss and a codec
    # trained on the sound forgets the clicks it learned in isolation (measured: 64 -> 2 of
    # 64 held-out clicks)
    diff_l2_weight: float = 0.0
    # L1 of the log energy envelope of the first difference (what click detection reads,
    # see envelope_loss); phase-blind, unlike an L1 on the difference itself, which pulls
    # a codec that cannot yet place a click's phase towards silence (measured). Not enough
    # alone: the cpu preset with weight 1 still rendered no clicks after 600 steps. 0 = off
    envelope_weight: float = 0.0
    envelope_window: int = 64  # samples per envelope frame (hop = window / 4)
    stft_weight: float = 1.0
    stft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64)  # FFT sizes, hop = size / 4
    stft_log_floor: float = 1e-5  # magnitudes are floored here before the log term
    # a staged schedule, in optimizer steps (the trainer's set_train_step): the RVQ is
    # bypassed (encoder -> decoder) before vq_start, so its codebooks are initialised from
    # an encoder that already carries the waveform; the STFT loss joins at stft_start.
    # From scratch either one keeps the waveform from being learned at all (measured)
    vq_start: int = 0
    stft_start: int = 0

    def __post_init__(self) -> None:
        self.strides, self.dilations = tuple(self.strides), tuple(self.dilations)
        self.stft_sizes, self.fsq_levels = tuple(self.stft_sizes), tuple(self.fsq_levels)
        if not self.strides or any(s < 1 for s in self.strides):
            raise KinemaError(f"strides must be positive integers, got {self.strides}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise KinemaError(f"kernel_size must be odd, got {self.kernel_size}")
        if min(self.channels, self.dim, self.levels) < 1 or self.codebook_size < 2:
            raise KinemaError(
                "channels, dim and levels must be >= 1 and codebook_size >= 2, got "
                f"{self.channels}, {self.dim}, {self.levels}, {self.codebook_size}"
            )
        if self.quantizer not in ("rvq", "fsq"):
            raise KinemaError(f"quantizer must be 'rvq' or 'fsq', got {self.quantizer!r}")
        if self.quantizer == "fsq":
            need = self.levels * len(self.fsq_levels)
            if math.prod(self.fsq_levels) != self.codebook_size or self.dim != need:
                raise KinemaError(
                    f"an fsq codec needs codebook_size = prod(fsq_levels) = "
                    f"{math.prod(self.fsq_levels)} and dim = levels * len(fsq_levels) = {need}, "
                    f"got codebook_size {self.codebook_size} and dim {self.dim}"
                )
        weights = (
            self.l1_weight,
            self.l2_weight,
            self.diff_l2_weight,
            self.envelope_weight,
            self.stft_weight,
        )
        if min(weights) < 0:
            raise KinemaError(
                "l1_weight, l2_weight, diff_l2_weight, envelope_weight and stft_weight must be "
                ">= 0, got " + ", ".join(map(str, weights))
            )
        if not self.input_gain > 0:
            raise KinemaError(f"input_gain must be > 0, got {self.input_gain}")
        if min(self.vq_start, self.stft_start) < 0:
            raise KinemaError(
                f"vq_start and stft_start must be >= 0, got {self.vq_start}, {self.stft_start}"
            )
        if self.envelope_window < 4:
            raise KinemaError(f"envelope_window must be >= 4, got {self.envelope_window}")
        if any(n < 4 or n & (n - 1) for n in self.stft_sizes):
            raise KinemaError(f"stft_sizes must be powers of two >= 4, got {self.stft_sizes}")

    @property
    def hop_length(self) -> int:
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        """Code frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def vocab_size(self) -> int:
        """Distinct LM tokens: ``levels * codebook_size``."""
        return self.levels * self.codebook_size

    def replace(self, **changes) -> AudioCodecConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, dict] = {
    # tests: 2 x 64 codes at 50 Hz; 28k parameters
    "tiny": dict(
        channels=2,
        dilations=(1,),
        dim=8,
        levels=2,
        codebook_size=64,
        stft_sizes=(256, 64),
    ),
    # CPU: 50 Hz frames, 4 levels x 256 codes (1,024 LM tokens), 0.57M parameters.
    # vq_decay 0.9: with small CPU batches the codebooks must follow the encoder's fast early
    # drift (measured, batch 8 x 0.5 s: mean perplexity 27 at step 400 vs 2 with 0.99).
    # Input gain 10 and MSE, no STFT term: the L1 + STFT codec with the RVQ from step 0
    # learned no waveform at all (-1.81 dB SNR). Trained in three stages (kinema train
    # audio-codec): isolated clicks without then with the RVQ, then the sound with extra
    # clicks; a codec whose RVQ first met the sound dropped every click (BENCHMARKS.md)
    "cpu": dict(
        channels=8,
        dilations=(1, 3),
        input_gain=10.0,
        dim=64,
        levels=4,
        codebook_size=256,
        vq_decay=0.9,
        l1_weight=0.0,
        l2_weight=100.0,
        stft_weight=0.0,
        stft_sizes=(1024, 512, 256, 128, 64),
    ),
    # SoundStream's widths (C = 32, strides 2-4-5-8, dilations 1-3-9) at 16 kHz with
    # VideoPoet's RVQ (4 x 1024 at 50 Hz); D = 256. 10.5M parameters; not trained here
    "soundstream-paper": dict(channels=32, dim=256, levels=4, codebook_size=1024),
}


def preset(name: str, **overrides) -> AudioCodecConfig:
    """A named configuration (:data:`PRESETS`), optionally with fields replaced."""
    if name not in PRESETS:
        raise KinemaError(f"unknown audio codec preset {name!r}; valid: {sorted(PRESETS)}")
    return AudioCodecConfig(**{**PRESETS[name], **overrides})


# ---------------------------------------------------------------------------- layers


class CausalConv1d(nn.Conv1d):
    """``nn.Conv1d`` zero-padded on the left only: ``(B, C, S) -> (B, C', S / stride)``
    when ``stride`` divides ``S`` and ``kernel >= stride``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.dilation[0] * (self.kernel_size[0] - 1) + 1 - self.stride[0]
        return super().forward(F.pad(x, (pad, 0)))


class CausalConvTranspose1d(nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` with the right overhang dropped: ``(B, C, L) -> (B, C', L * s)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out[..., : x.shape[-1] * self.stride[0]]


class ResidualUnit(nn.Module):
    """``x + conv1(elu(conv7_dilated(elu(x))))`` at constant width, ``(B, C, S)``."""

    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ELU(),
            CausalConv1d(channels, channels, kernel_size, dilation=dilation),
            nn.ELU(),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def _units(cfg: AudioCodecConfig, channels: int) -> list[nn.Module]:
    return [ResidualUnit(channels, cfg.kernel_size, d) for d in cfg.dilations]


class Encoder(nn.Module):
    """``(B, 1, S)`` -> ``(B, dim, S / hop)``; ``S`` a multiple of ``hop_length``. Scales the
    input by ``input_gain`` (the decoder undoes it)."""

    def __init__(self, cfg: AudioCodecConfig) -> None:
        super().__init__()
        c = cfg.channels
        layers: list[nn.Module] = [CausalConv1d(1, c, cfg.kernel_size)]
        for s in cfg.strides:
            layers += [*_units(cfg, c), nn.ELU(), CausalConv1d(c, 2 * c, 2 * s, stride=s)]
            c *= 2
        layers += [nn.ELU(), CausalConv1d(c, cfg.dim, 3)]
        self.net = nn.Sequential(*layers)
        self.gain = cfg.input_gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * self.gain)


class Decoder(nn.Module):
    """``(B, dim, L)`` -> ``(B, 1, L * hop)`` (linear output divided by ``input_gain``;
    :meth:`AudioCodec.decode` clamps)."""

    def __init__(self, cfg: AudioCodecConfig) -> None:
        super().__init__()
        c = cfg.channels * 2 ** len(cfg.strides)
        layers: list[nn.Module] = [CausalConv1d(cfg.dim, c, cfg.kernel_size)]
        for s in reversed(cfg.strides):
            layers += [nn.ELU(), CausalConvTranspose1d(c, c // 2, 2 * s, stride=s)]
            c //= 2
            layers += _units(cfg, c)
        layers += [nn.ELU(), CausalConv1d(c, 1, cfg.kernel_size)]
        self.net = nn.Sequential(*layers)
        self.gain = cfg.input_gain

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z) / self.gain


# ---------------------------------------------------------------------------- losses


def stft_loss(
    pred: torch.Tensor, target: torch.Tensor, sizes: tuple[int, ...], log_floor: float = 1e-5
) -> torch.Tensor:
    """Multi-resolution STFT loss of ``(B, 1, S)`` waveforms, in fp32: per FFT size ``n``
    (Hann window, hop ``n / 4``), mean |magnitude difference| + mean |log-magnitude
    difference| (magnitudes floored at ``log_floor``), averaged over the sizes. Sizes of
    more than twice the clip length are left out (zero when none is left)."""
    sizes = tuple(n for n in sizes if n // 2 < pred.shape[-1])
    with torch.autocast(device_type=pred.device.type, enabled=False):
        p = rearrange(pred.float(), "b 1 s -> b s")
        t = rearrange(target.float(), "b 1 s -> b s")
        total = p.new_zeros(())
        for n in sizes:
            window = torch.hann_window(n, device=p.device)
            mags = [
                torch.stft(x, n, n // 4, window=window, return_complex=True).abs() for x in (p, t)
            ]
            log_diff = mags[0].clamp_min(log_floor).log() - mags[1].clamp_min(log_floor).log()
            total = total + (mags[0] - mags[1]).abs().mean() + log_diff.abs().mean()
        return total / max(len(sizes), 1)


def envelope_loss(
    pred: torch.Tensor, target: torch.Tensor, window: int, floor: float = 1e-8
) -> torch.Tensor:
    """Mean |log envelope difference| of ``(B, 1, S)`` waveforms in fp32, the envelope being
    the one onset detection reads (:func:`kinema.audio.metrics.diff_energy`, hop
    ``window // 4``, floored at ``floor``): a click missing from ``pred`` costs its log
    energy ratio over the background, whatever its phase; 0 for clips of ``<= window``
    samples."""
    if pred.shape[-1] <= window:
        return pred.new_zeros((), dtype=torch.float32)
    hop = max(1, window // 4)
    with torch.autocast(device_type=pred.device.type, enabled=False):
        p, t = (diff_energy(x.float(), window, hop).clamp_min(floor).log() for x in (pred, target))
        return (p - t).abs().mean()


# ---------------------------------------------------------------------------- tokens


def codes_to_tokens(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """``(B, L, Q)`` codes -> ``(B, L * Q)`` LM tokens, frame-major with a per-level offset:
    ``tokens[b, l * Q + q] = q * K + codes[b, l, q]`` (``K = codebook_size``)."""
    q = codes.shape[-1]
    offset = torch.arange(q, device=codes.device) * codebook_size
    return rearrange(codes.long() + offset, "b l q -> b (l q)")


def tokens_to_codes(tokens: torch.Tensor, levels: int, codebook_size: int) -> torch.Tensor:
    """Inverse of :func:`codes_to_tokens`: ``(B, L * Q)`` -> ``(B, L, Q)``; raises if the
    length is not a multiple of ``levels`` or a token is outside its level's range."""
    if tokens.ndim != 2 or tokens.shape[1] % levels:
        raise KinemaError(
            f"audio tokens must be (B, L * {levels}) (whole frames of {levels} levels), got "
            f"shape {tuple(tokens.shape)}"
        )
    codes = rearrange(tokens.long(), "b (l q) -> b l q", q=levels)
    codes = codes - torch.arange(levels, device=tokens.device) * codebook_size
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
        raise KinemaError(
            f"audio token out of range: position l * {levels} + q must hold a token in "
            f"[q * {codebook_size}, (q + 1) * {codebook_size})"
        )
    return codes


# ---------------------------------------------------------------------------- model


class AudioCodec(ModelMixin):
    """SoundStream-style codec: mono waveforms in [-1, 1] <-> ``(B, L, levels)`` RVQ codes.

    Training: ``loss(batch)`` with ``batch["audio"] (B, 1, S)`` (and optionally
    ``batch["sample_rate"]``) returns ``"loss"`` and logged scalars (``l1``, ``stft``,
    ``vq_loss``, ``snr_db``, ``perplexity``, ``commit``, ``restarts``) for
    :class:`kinema.train.Trainer`.
    """

    config_class = AudioCodecConfig

    def __init__(self, config: AudioCodecConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config if config is not None else AudioCodecConfig()
        self.encoder = Encoder(cfg)
        if cfg.quantizer == "fsq":
            self.quantizer: nn.Module = GroupedFSQ(cfg.levels, cfg.fsq_levels)
        else:
            self.quantizer = ResidualVQ(
                cfg.dim,
                cfg.codebook_size,
                cfg.levels,
                ema=cfg.vq_ema,
                decay=cfg.vq_decay,
                commit_weight=cfg.commit_weight,
                restart=cfg.vq_restart,
            )
        self.decoder = Decoder(cfg)
        self.train_step = 0  # optimizer steps done, for the vq_start / stft_start schedule

    def set_train_step(self, step: int) -> None:
        """Called by :class:`kinema.train.Trainer` before every optimizer step."""
        self.train_step = int(step)

    # ------------------------------------------------------------------ geometry

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def num_frames(self, num_samples: int) -> int:
        """Code frames of ``num_samples`` samples: ``ceil(S / hop_length)``."""
        return -(-num_samples // self.hop_length)

    def check_wave(self, wave: torch.Tensor, sample_rate: int | float | None = None) -> None:
        """Raise a one-line :class:`KinemaError` unless ``wave`` is ``(B, 1, S)`` floating
        audio at the codec's sample rate (when ``sample_rate`` is given)."""
        sr = self.config.sample_rate
        if not isinstance(wave, torch.Tensor) or wave.ndim != 3 or wave.shape[1] != 1:
            shape = tuple(wave.shape) if isinstance(wave, torch.Tensor) else type(wave).__name__
            raise KinemaError(f"expected mono audio (B, 1, S), got {shape}")
        if not wave.is_floating_point() or wave.shape[-1] < 1:
            got = f"{wave.dtype} {tuple(wave.shape)}"
            raise KinemaError(f"expected float audio with at least one sample, got {got}")
        if sample_rate is not None and sample_rate != sr:
            raise KinemaError(
                f"audio is at {sample_rate} Hz; this codec works at {sr} Hz (resample first)"
            )

    def _padded(self, wave: torch.Tensor) -> torch.Tensor:
        """Right-pad with silence to a whole number of code frames."""
        return F.pad(wave, (0, self.num_frames(wave.shape[-1]) * self.hop_length - wave.shape[-1]))

    # ------------------------------------------------------------------ encode / decode

    @torch.no_grad()
    def encode(self, wave: torch.Tensor, *, sample_rate: int | None = None) -> torch.Tensor:
        """``wave (B, 1, S)`` -> codes ``(B, ceil(S / hop_length), levels)`` long."""
        self.check_wave(wave, sample_rate)
        return self.quantizer.encode_indices(self.encoder(self._padded(wave)))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, *, length: int | None = None) -> torch.Tensor:
        """``codes (B, L, n)`` of the first ``n <= levels`` levels -> ``(B, 1, L * hop)`` in
        [-1, 1] (cut to ``length`` samples if given). Fewer levels decode coarser audio."""
        cfg = self.config
        if codes.ndim != 3 or not 1 <= codes.shape[-1] <= cfg.levels:
            raise KinemaError(
                f"expected codes (B, L, levels<={cfg.levels}), got shape {tuple(codes.shape)}"
            )
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise KinemaError(f"codes must be integer indices, got {codes.dtype}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= cfg.codebook_size):
            raise KinemaError(
                f"codes must be in [0, {cfg.codebook_size}), got values in "
                f"[{int(codes.min())}, {int(codes.max())}]"
            )
        wave = self.decoder(self.quantizer.indices_to_embedding(codes)).clamp(-1, 1)
        return wave if length is None else wave[..., :length]

    @torch.no_grad()
    def clip_tokens(self, wave: torch.Tensor, num_frames: int) -> torch.Tensor:
        """LM tokens ``(B, num_frames * levels)`` of ``wave (B, 1, S)`` padded with silence or
        cut to ``num_frames`` code frames (a fixed length, so that audio targets of a multitask
        LM split into whole blocks)."""
        if num_frames < 1:
            raise KinemaError(f"num_frames must be >= 1, got {num_frames}")
        samples = num_frames * self.hop_length
        wave = wave.float()[..., :samples]
        wave = F.pad(wave, (0, samples - wave.shape[-1]))
        return self.codes_to_tokens(self.encode(wave))

    @torch.no_grad()
    def tokens_to_wave(self, tokens: torch.Tensor) -> torch.Tensor:
        """LM tokens ``(B, L * levels)`` -> waveform ``(B, 1, L * hop_length)`` in [-1, 1]."""
        return self.decode(self.tokens_to_codes(tokens))

    def codes_to_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, L, levels)`` -> ``(B, L * levels)`` LM tokens (see the module docstring)."""
        return codes_to_tokens(codes, self.config.codebook_size)

    def tokens_to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, L * levels)`` LM tokens -> ``(B, L, levels)`` codes."""
        return tokens_to_codes(tokens, self.config.levels, self.config.codebook_size)

    # ------------------------------------------------------------------ training

    def forward(self, wave: torch.Tensor, *, quantize: bool = True) -> dict:
        """Training pass: ``{"recon": (B, 1, S), "quant": QuantizerOutput}``; with
        ``quantize=False`` the RVQ is bypassed (no codebook update, zero VQ loss and
        metrics, indices None)."""
        self.check_wave(wave)
        z = self.encoder(self._padded(wave))
        if quantize:
            q: QuantizerOutput = self.quantizer(z)
        else:
            zero = z.new_zeros((), dtype=torch.float32)
            names = ("perplexity", "commit", "restarts")
            q = QuantizerOutput(z, None, zero, {k: zero for k in names})
        return {"recon": self.decoder(q.z)[..., : wave.shape[-1]], "quant": q}

    def loss(self, batch: dict | torch.Tensor) -> dict[str, torch.Tensor]:
        """L1 + MSE + pre-emphasised MSE + multi-resolution STFT + envelope + RVQ loss of
        ``batch["audio"] (B, 1, S)``, the RVQ and STFT terms from steps ``vq_start`` and
        ``stft_start`` of training on."""
        cfg = self.config
        wave = batch["audio"] if isinstance(batch, dict) else batch
        rate = batch.get("sample_rate") if isinstance(batch, dict) else None
        if isinstance(rate, torch.Tensor):
            rates = rate.unique().tolist()
            rate = rates[0] if len(rates) == 1 else rates
        self.check_wave(wave, rate)
        step = self.train_step if self.training else max(cfg.vq_start, cfg.stft_start)
        out = self(wave, quantize=step >= cfg.vq_start)
        q: QuantizerOutput = out["quant"]
        recon, target = out["recon"].float(), wave.float()
        l1 = (recon - target).abs().mean()
        l2 = (recon - target).pow(2).mean()
        diff_l2 = (recon - target).diff(dim=-1).pow(2).mean()
        env = envelope_loss(recon, target, cfg.envelope_window)
        stft_weight = cfg.stft_weight if step >= cfg.stft_start else 0.0
        spec = (  # skipped when the config never uses it (five FFT sizes cost time)
            stft_loss(recon, target, cfg.stft_sizes, cfg.stft_log_floor)
            if cfg.stft_weight > 0
            else recon.new_zeros(())
        )
        err = (recon - target).pow(2).sum().clamp_min(1e-12)
        snr = 10 * torch.log10(target.pow(2).sum().clamp_min(1e-12) / err)
        return {
            "loss": cfg.l1_weight * l1
            + cfg.l2_weight * l2
            + cfg.diff_l2_weight * diff_l2
            + stft_weight * spec
            + cfg.envelope_weight * env
            + q.loss,
            "l1": l1.detach(),
            "l2": l2.detach(),
            "diff_l2": diff_l2.detach(),
            "envelope": env.detach(),
            "stft": spec.detach(),
            "vq_loss": q.loss.detach(),
            "snr_db": snr.detach(),
            **q.metrics,
        }

    def num_tokens(self, batch: dict | torch.Tensor) -> int:
        """Code frames x levels in ``batch`` (the trainer's tokens/s)."""
        wave = batch["audio"] if isinstance(batch, dict) else batch
        return int(wave.shape[0]) * self.num_frames(wave.shape[-1]) * self.config.levels

    def no_weight_decay(self) -> set[str]:
        """Learned codebooks must not decay toward 0 (EMA codebooks are buffers)."""
        return {n for n, _ in self.named_parameters() if n.endswith(".codebook")}
