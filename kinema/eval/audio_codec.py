"""How well an audio codec carries the physics sound: waveform SNR and the clicks.

A video-to-audio model can be no better than the codec it decodes through, so this is the
check to run on a codec before encoding multitask shards with it. On held-out physics clips
(seed :data:`~kinema.eval.physics_eval.EVAL_SEED`; training uses seed 0) of ``scenario``
(``collision``: one click per clip where the balls meet) the codec reconstructs the true
sound through its RVQ, and the reconstruction is scored:

- SNR of the reconstruction in dB (10 log10 of signal over error energy, over all clips);
- click timing (:func:`~kinema.audio.metrics.click_timing_error`): matched, missed and extra
  clicks and the mean timing error, next to the same detector on the true waveform as the
  ceiling.

>>> results = evaluate_audio_codec("runs/codec/model", n=64)
>>> print(results.markdown())
"""

from __future__ import annotations

import os

import torch

from kinema.audio.metrics import ClickTally, click_timing_error
from kinema.data.physics_audio import PhysicsAudioVisualDataset
from kinema.errors import KinemaError
from kinema.eval.multitask import MultitaskResults, TaskScore, click_scores
from kinema.eval.physics_eval import DT, EVAL_SEED


def load_codec(model: str | os.PathLike):
    """An :class:`~kinema.audio.AudioCodec` from its own folder or from a multitask model
    folder that stores one (``audio_codec/``)."""
    from kinema.api import load_audio_codec
    from kinema.audio import AudioCodec
    from kinema.hub import model_kind, resolve_model

    if model_kind(model) == "AudioCodec":
        return AudioCodec.from_pretrained(resolve_model(model)).eval()
    return load_audio_codec(model)


@torch.no_grad()
def evaluate_audio_codec(
    model: str | os.PathLike | torch.nn.Module,
    *,
    n: int = 64,
    scenario: str = "collision",
    frames: int = 17,
    batch: int = 16,
    seed: int = EVAL_SEED,
) -> MultitaskResults:
    """Score a codec (folder or module) on ``n`` held-out clips of ``frames`` video frames;
    rows ``codec`` with ``model`` = the reconstruction and ``ceiling`` = the true sound."""
    if not 1 <= n <= 10_000 or not 1 <= batch <= 1024 or frames < 2:
        raise KinemaError(
            f"n must be in [1, 10000], batch in [1, 1024] and frames >= 2; got {n}, {batch}, "
            f"{frames}"
        )
    codec = model if isinstance(model, torch.nn.Module) else load_codec(model)
    data = PhysicsAudioVisualDataset(
        scenario=scenario, split="id", length=n, num_frames=frames, cond_frames=1,
        dt=DT, seed=seed, video=False,
    )  # fmt: skip
    sr = data.sample_rate
    if sr != codec.config.sample_rate:
        raise KinemaError(
            f"the codec works at {codec.config.sample_rate} Hz; the physics sound is {sr} Hz"
        )
    param = next(codec.parameters())
    signal = error = 0.0
    tally = {"rec": ClickTally(), "true": ClickTally()}
    for start in range(0, n, batch):
        items = [data[i] for i in range(start, min(n, start + batch))]
        wave = torch.stack([it["audio"] for it in items])  # (B, 1, S)
        codes = codec.encode(wave.to(param.device, param.dtype))
        rec = codec.decode(codes, length=wave.shape[-1]).float().cpu()
        signal += float(wave.pow(2).sum())
        error += float((rec - wave).pow(2).sum())
        for it, r in zip(items, rec, strict=True):
            true = it["events"][: it["num_events"]].numpy()
            tally["rec"].add(click_timing_error(r[0], true, sr))
            tally["true"].add(click_timing_error(it["audio"][0], true, sr))
    snr = 10 * torch.log10(torch.tensor(signal / max(error, 1e-12))).item()
    rows = [TaskScore("codec", "reconstruction SNR (dB)", snr, n=n)]
    rows += click_scores("codec", tally["rec"], tally["true"], n=n)
    source = {"model": str(model) if not isinstance(model, torch.nn.Module) else "module",
              "n": n, "scenario": scenario, "frames": frames, "seed": seed}  # fmt: skip
    return MultitaskResults(rows, source, metric="audio-codec")
