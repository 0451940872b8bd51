"""The video tokenizer: causal encoder -> quantizer -> causal decoder.

>>> tok = Tokenizer(preset("tiny"))
>>> tokens = tok.encode(video)          # (B, 3, 17, 64, 64) in [-1, 1] -> (B, 5, 8, 8) long
>>> video = tok.decode(tokens)          # -> (B, 3, 17, 64, 64)

With the KL bottleneck ``encode`` returns normalised latents ``(B, C, t, h, w)`` instead.
Images are clips of one frame: ``(B, 3, 1, H, W)`` (or ``(B, 3, H, W)``) -> one latent frame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from einops import rearrange

from kinema.errors import KinemaError
from kinema.modeling import ModelMixin
from kinema.tokenizer.chunked import blend_tiles, decode_chunked, encode_chunked
from kinema.tokenizer.config import TokenizerConfig
from kinema.tokenizer.discriminator import (
    PatchDiscriminator3D,
    adaptive_gan_weight,
    frozen_call,
    hinge_d_loss,
    hinge_g_loss,
)
from kinema.tokenizer.model import Decoder, Encoder
from kinema.tokenizer.quantizers import QuantizerOutput, build_quantizer

log = logging.getLogger(__name__)

LOG_MSE_EPS = 1e-5  # floor of the log-MSE term (56 dB on [-1, 1] pixels): no blow-up at 0


class Tokenizer(ModelMixin):
    """MAGVIT-v2-style causal video tokenizer (FSQ / LFQ / VQ tokens or KL latents).

    Training: ``loss(batch)`` with ``batch["video"] (B, 3, 1 + ft*k, H, W)`` returns a dict
    with ``"loss"`` (L1 [+ L2] [+ per-clip log-MSE] reconstruction + quantizer losses
    [+ GAN]) and logged scalars (``recon`` = L1, ``psnr``, quantizer metrics), as
    :class:`kinema.train.Trainer` expects.
    """

    config_class = TokenizerConfig

    def __init__(self, config: TokenizerConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config if config is not None else TokenizerConfig()
        c = cfg.latent_channels
        self.encoder = Encoder(cfg, 2 * c if cfg.quantizer == "kl" else c)
        self.quantizer = build_quantizer(cfg)
        self.decoder = Decoder(cfg, c)
        self.discriminator = None
        if cfg.gan:
            self.discriminator = PatchDiscriminator3D(
                cfg.channels, cfg.disc_channels, cfg.disc_layers
            )
            # loss() calls so far, to start the GAN at gan_start_step (saved for resume)
            self.register_buffer("gan_calls", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ geometry

    @property
    def is_discrete(self) -> bool:
        return self.config.is_discrete

    @property
    def vocab_size(self) -> int | None:
        """Number of distinct tokens (None for the KL latent)."""
        return self.quantizer.codebook_size

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """``(t, h, w)`` of the tokens of a ``frames x height x width`` clip."""
        return self.config.latent_shape(frames, height, width)

    def check_video(self, video: torch.Tensor) -> torch.Tensor:
        """Validate a ``(B, 3, T, H, W)`` (or image ``(B, 3, H, W)``) batch; returns 5-D."""
        cfg = self.config
        if video.ndim == 4:
            video = video.unsqueeze(2)
        if video.ndim != 5 or video.shape[1] != cfg.channels:
            raise KinemaError(
                f"expected video (B, {cfg.channels}, T, H, W), got shape {tuple(video.shape)}"
            )
        t, h, w = video.shape[2:]
        ft, fs = cfg.temporal_compression, cfg.spatial_compression
        if (t - 1) % ft:
            valid = [1 + ft * k for k in range(max(0, (t - 1) // ft - 1), (t - 1) // ft + 2)]
            raise KinemaError(
                f"video has {t} frames; this tokenizer (temporal factor {ft}) needs 1 + {ft}*k "
                f"frames, e.g. {valid}"
            )
        if h % fs or w % fs:
            raise KinemaError(
                f"video is {h}x{w}; height and width must be multiples of {fs} "
                f"(e.g. {max(fs, h // fs * fs)}x{max(fs, w // fs * fs)})"
            )
        return video

    # ------------------------------------------------------------------ encode / decode

    def encode(
        self,
        video: torch.Tensor,
        *,
        chunk: int | None = None,
        tile: int | None = None,
        tile_overlap: int = 2,
    ) -> torch.Tensor:
        """``video (B, 3, 1 + ft*k, H, W)`` in [-1, 1] -> tokens ``(B, 1 + k, H/fs, W/fs)``
        long, or normalised KL latents ``(B, C, 1 + k, H/fs, W/fs)``.

        ``chunk``: encode that many latent frames at a time (exact). ``tile``: encode
        spatial tiles of ``tile x tile`` latent positions overlapping by ``tile_overlap``,
        blending encoder outputs before quantization (approximate; see
        :mod:`kinema.tokenizer.chunked`).
        """
        video = self.check_video(video)
        z = self._encoder_out(video, chunk, tile, tile_overlap)
        if self.is_discrete:
            return self.quantizer.encode_indices(z)
        return self.quantizer.normalize(self.quantizer.mean(z))

    def decode(
        self,
        x: torch.Tensor,
        *,
        chunk: int | None = None,
        tile: int | None = None,
        tile_overlap: int = 2,
    ) -> torch.Tensor:
        """Tokens ``(B, t, h, w)`` (integer), codes ``(B, C, t, h, w)`` (float, discrete
        quantizers) or normalised latents ``(B, C, t, h, w)`` (KL) -> video
        ``(B, 3, 1 + ft*(t-1), fs*h, fs*w)``, roughly in [-1, 1] (not clamped).

        ``chunk`` / ``tile`` / ``tile_overlap`` as in :meth:`encode` (chunking is exact,
        tiling approximate).
        """
        z = self._decoder_in(x)
        if tile is not None:
            fs = self.config.spatial_compression

            def run(rows: slice, cols: slice) -> torch.Tensor:
                return self._decode_z(z[..., rows, cols], chunk)

            return blend_tiles(run, z.shape[-2:], tile, tile_overlap, fs)
        return self._decode_z(z, chunk)

    def _encoder_out(
        self, video: torch.Tensor, chunk: int | None, tile: int | None, overlap: int
    ) -> torch.Tensor:
        ft, fs = self.config.temporal_compression, self.config.spatial_compression

        def run(v: torch.Tensor) -> torch.Tensor:
            return self.encoder(v) if chunk is None else encode_chunked(self.encoder, v, chunk, ft)

        if tile is None:
            return run(video)
        grid = (video.shape[-2] // fs, video.shape[-1] // fs)

        def run_tile(rows: slice, cols: slice) -> torch.Tensor:
            ys = slice(rows.start * fs, rows.stop * fs)
            xs = slice(cols.start * fs, cols.stop * fs)
            return run(video[..., ys, xs])

        return blend_tiles(run_tile, grid, tile, overlap, 1)

    def _decode_z(self, z: torch.Tensor, chunk: int | None) -> torch.Tensor:
        z = z.to(self.decoder.conv_in.weight.dtype)  # quantizers work in fp32; bf16 weights
        return self.decoder(z) if chunk is None else decode_chunked(self.decoder, z, chunk)

    def _decoder_in(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens / codes / normalised latents -> decoder input ``(B, C, t, h, w)``."""
        c = self.config.latent_channels
        if not x.is_floating_point():
            if not self.is_discrete:
                raise KinemaError("this tokenizer has a continuous (KL) latent; pass floats")
            if x.ndim != 4:
                raise KinemaError(f"expected tokens (B, t, h, w), got shape {tuple(x.shape)}")
            if x.numel() and (x.min() < 0 or x.max() >= self.vocab_size):
                raise KinemaError(
                    f"token ids must be in [0, {self.vocab_size}), got "
                    f"[{int(x.min())}, {int(x.max())}]"
                )
            return rearrange(self.quantizer.indices_to_codes(x), "b t h w c -> b c t h w")
        if x.ndim != 5 or x.shape[1] != c:
            raise KinemaError(f"expected latents (B, {c}, t, h, w), got shape {tuple(x.shape)}")
        return x if self.is_discrete else self.quantizer.denormalize(x.float())

    @torch.no_grad()
    def reconstruct(self, video: torch.Tensor, **kwargs) -> torch.Tensor:
        """``decode(encode(video))`` clamped to [-1, 1]; kwargs go to both."""
        return self.decode(self.encode(video, **kwargs), **kwargs).clamp(-1.0, 1.0)

    # ------------------------------------------------------------------ LFQ factorization

    def split_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """LFQ tokens ``(...)`` -> factorized halves ``(..., 2)`` ``[lo, hi]``."""
        if self.config.quantizer != "lfq":
            raise KinemaError("token factorization needs the LFQ quantizer")
        return self.quantizer.split_indices(tokens)

    def merge_tokens(self, halves: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`split_tokens`."""
        if self.config.quantizer != "lfq":
            raise KinemaError("token factorization needs the LFQ quantizer")
        return self.quantizer.merge_indices(halves)

    # ------------------------------------------------------------------ KL statistics

    @torch.no_grad()
    def fit_latent_stats(
        self, videos: Iterable[torch.Tensor], per_channel: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Set the KL latent's ``shift`` / ``scale`` from batches ``(B, 3, T, H, W)`` of a
        dataset so that normalised latents have zero mean and unit variance; returns them."""
        if self.is_discrete:
            raise KinemaError("latent statistics only apply to the KL tokenizer")
        dims = (0, 2, 3, 4) if per_channel else (0, 1, 2, 3, 4)
        n, s1, s2 = 0, 0.0, 0.0
        for video in videos:
            z = self.quantizer.mean(self.encoder(self.check_video(video))).double()
            n += z.numel() // (z.shape[1] if per_channel else 1)
            s1 = s1 + z.sum(dims)
            s2 = s2 + z.pow(2).sum(dims)
        if n == 0:
            raise KinemaError("fit_latent_stats got no videos")
        mean = torch.as_tensor(s1 / n)
        std = (torch.as_tensor(s2 / n) - mean**2).clamp_min(1e-12).sqrt()
        self.quantizer.set_stats(mean.float(), (1.0 / std).float())
        return self.quantizer.shift.clone(), self.quantizer.scale.clone()

    # ------------------------------------------------------------------ training

    def forward(self, video: torch.Tensor) -> dict:
        """Training pass: ``{"recon": (B, 3, T, H, W), "quant": QuantizerOutput}``."""
        video = self.check_video(video)
        q: QuantizerOutput = self.quantizer(self.encoder(video))
        return {"recon": self.decoder(q.z), "quant": q}

    def video_groups(self, batch: dict | torch.Tensor | list) -> list[torch.Tensor]:
        """``batch["video"]`` as validated ``(B, 3, T, H, W)`` tensors, one per clip shape
        (a joint batch collates images and videos into a list of per-item tensors)."""
        video = batch["video"] if isinstance(batch, dict) else batch
        if isinstance(video, torch.Tensor):
            return [self.check_video(video)]
        groups: dict[tuple, list[torch.Tensor]] = {}
        for v in video:
            v = v.unsqueeze(1) if v.ndim == 3 else v  # an image (3, H, W)
            groups.setdefault(tuple(v.shape), []).append(v)
        return [self.check_video(torch.stack(g)) for g in groups.values()]

    def loss(self, batch: dict | torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruction + quantizer (+ GAN) loss of ``batch["video"]`` for the trainer.

        Joint image/video batches are encoded per clip shape; every term is averaged over
        the groups in proportion to their pixels.
        """
        groups = self.video_groups(batch)
        use_gan = self.discriminator is not None and self._gan_active()
        total_px = sum(v.numel() for v in groups)
        out: dict[str, torch.Tensor] = {}
        for video in groups:
            share = video.numel() / total_px
            for k, v in self._group_loss(video, use_gan).items():
                out[k] = out[k] + share * v if k in out else share * v
        out["psnr"] = 10 * torch.log10(4.0 / out.pop("mse").clamp_min(1e-10))
        return out

    def _gan_active(self) -> bool:
        """Counts training calls (saved with the model, for resume) against gan_start_step."""
        calls = int(self.gan_calls)
        if self.training:
            self.gan_calls += 1
        return self.training and torch.is_grad_enabled() and calls >= self.config.gan_start_step

    def _group_loss(self, video: torch.Tensor, use_gan: bool) -> dict[str, torch.Tensor]:
        cfg = self.config
        out = self(video)
        q: QuantizerOutput = out["quant"]
        recon, target = out["recon"].float(), video.float()
        l1 = (recon - target).abs().mean()
        clip_mse = (recon - target).square().flatten(1).mean(1)  # (B,)
        mse = clip_mse.mean()
        rec_loss = cfg.l1_weight * l1 + cfg.l2_weight * mse
        if cfg.log_mse_weight:
            rec_loss = rec_loss + cfg.log_mse_weight * (clip_mse + LOG_MSE_EPS).log().mean()
        metrics = {
            "loss": rec_loss + q.loss,
            "recon": l1.detach(),
            "mse": mse.detach(),
            "quant_loss": q.loss.detach(),
            **q.metrics,
        }
        if self.discriminator is not None:
            gan_total, gan_metrics = self._gan_loss(video, out["recon"], rec_loss, use_gan)
            metrics["loss"] = metrics["loss"] + gan_total
            metrics.update(gan_metrics)
        return metrics

    def _gan_loss(
        self, video: torch.Tensor, recon: torch.Tensor, rec_loss: torch.Tensor, active: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Generator + discriminator hinge terms for one shared backward pass.

        The generator term goes through a parameter-detached copy of the discriminator
        (:func:`frozen_call`) and the discriminator term sees detached videos, so summing
        them trains each network only on its own objective.
        """
        cfg = self.config
        zero = rec_loss.new_zeros(())
        if not active:
            return zero, {"gan_g": zero, "gan_d": zero, "gan_w": zero}
        g_loss = hinge_g_loss(frozen_call(self.discriminator, recon))
        weight = (
            adaptive_gan_weight(rec_loss, g_loss, self.decoder.last_layer)
            if cfg.adaptive_gan_weight
            else torch.ones((), device=recon.device)
        )
        d_loss = hinge_d_loss(
            self.discriminator(video.detach()), self.discriminator(recon.detach())
        )
        total = cfg.gan_weight * weight * g_loss + d_loss
        return total, {"gan_g": g_loss.detach(), "gan_d": d_loss.detach(), "gan_w": weight}

    def num_tokens(self, batch: dict | torch.Tensor) -> int:
        """Latent positions in ``batch`` (the trainer's tokens/s)."""
        total = 0
        for video in self.video_groups(batch):
            t, h, w = self.latent_shape(*video.shape[2:])
            total += int(video.shape[0]) * t * h * w
        return total

    def no_weight_decay(self) -> set[str]:
        """Parameters the trainer must not decay: a learned VQ codebook (decay would pull
        codes toward 0) and the discriminator (GANs train without it)."""
        names = {n for n, _ in self.named_parameters() if n.startswith("discriminator.")}
        if self.config.quantizer == "vq" and not self.config.vq_ema:
            names.add("quantizer.codebook")
        return names

    def fsdp_units(self) -> list[torch.nn.Module]:
        """Encoder and decoder levels shard as their own FSDP2 units."""
        return [*self.encoder.levels, *self.decoder.levels]
