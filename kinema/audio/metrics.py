"""Audio evaluation: click onsets against ground-truth impact times, and dominant pitch.

Onsets come from an energy envelope of the first difference of the waveform (a pre-emphasis
that keeps the broadband clicks and damps low tones), taken over a *forward* window so that a
click, loudest at its start, peaks exactly at its onset; a peak counts when it stands
``ratio`` times above the running median of the envelope, so a steady or slowly gliding tone
never triggers. Works on clean synthetic audio and on codec or model output alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import median_filter
from scipy.optimize import linear_sum_assignment

from kinema.errors import KinemaError


def _mono(wave: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(S,)``, ``(1, S)`` or ``(1, 1, S)`` -> float64 ``(S,)``."""
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().float().cpu().numpy()
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim == 0 or wave.size != wave.shape[-1]:
        raise KinemaError(f"expected one mono waveform (S,) or (1, S), got shape {wave.shape}")
    return wave.reshape(-1)


def diff_energy(wave: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """Pre-emphasised energy envelope ``(B, 1, S)`` -> ``(B, 1, F)``: the mean squared first
    difference over ``[f hop, f hop + window)`` for every window that fits (``S > window``),
    in ``wave``'s dtype. Onset detection thresholds it; the codec's envelope loss compares
    its logarithm (:func:`kinema.audio.codec.envelope_loss`)."""
    return F.avg_pool1d(wave.diff(dim=-1).pow(2), window, hop)


def detect_onsets(
    wave: np.ndarray | torch.Tensor,
    sample_rate: int,
    *,
    hop_s: float = 0.001,
    window_s: float = 0.004,
    context_s: float = 0.1,
    ratio: float = 4.0,
    min_gap_s: float = 0.05,
) -> np.ndarray:
    """Click onsets of a mono waveform, in seconds, sorted.

    Envelope ``E[n]`` = mean squared first difference over ``[n hop, n hop + window)``;
    onsets are local maxima of ``E / running median(E over context_s)`` above ``ratio``,
    strongest first, at least ``min_gap_s`` apart. Resolution: ``hop_s``.
    """
    x = _mono(wave)
    hop, win = max(1, round(hop_s * sample_rate)), max(1, round(window_s * sample_rate))
    if len(x) <= win:
        return np.zeros(0)
    env = diff_energy(torch.from_numpy(x)[None, None], win, hop)[0, 0].numpy()  # float64
    starts = np.arange(len(env)) * hop
    if len(starts) < 3:
        return np.zeros(0)
    ctx = max(3, round(context_s / hop_s) | 1)
    # the absolute floor keeps digital silence (and its rounding noise) from firing
    floor = max(1e-12, 1e-6 * env.max())
    score = env / (median_filter(env, size=ctx, mode="nearest") + floor)
    peak = (score[1:-1] >= score[:-2]) & (score[1:-1] > score[2:]) & (score[1:-1] >= ratio)
    candidates = np.flatnonzero(peak) + 1
    kept: list[int] = []
    gap = min_gap_s / hop_s
    for i in candidates[np.argsort(-score[candidates], kind="stable")]:
        if all(abs(i - j) >= gap for j in kept):
            kept.append(int(i))
    return np.sort(starts[kept] / sample_rate)


@dataclass
class ClickTiming:
    """``error_s``: mean |onset - true time| over matched pairs (NaN when none matched);
    ``matched``, ``missed`` (true events without an onset), ``extra`` (onsets without an
    event); ``onsets``: every detected onset in seconds."""

    error_s: float
    matched: int
    missed: int
    extra: int
    onsets: np.ndarray


def click_timing_error(
    wave: np.ndarray | torch.Tensor,
    true_times: np.ndarray | torch.Tensor,
    sample_rate: int,
    *,
    tolerance_s: float = 0.05,
    **onset_options,
) -> ClickTiming:
    """Detect clicks in ``wave`` and match them one-to-one to ``true_times`` (seconds; NaN
    entries, the dataset's padding, are ignored) with the smallest total time error; pairs
    further apart than ``tolerance_s`` do not match. ``onset_options`` go to
    :func:`detect_onsets`."""
    onsets = detect_onsets(wave, sample_rate, **onset_options)
    true = np.asarray(true_times, dtype=np.float64).reshape(-1)
    true = true[~np.isnan(true)]
    errors = np.zeros(0)
    if len(onsets) and len(true):
        cost = np.abs(onsets[:, None] - true[None, :])
        rows, cols = linear_sum_assignment(np.where(cost <= tolerance_s, cost, 1e6))
        errors = cost[rows, cols]
        errors = errors[errors <= tolerance_s]
    n = len(errors)
    return ClickTiming(
        float(errors.mean()) if n else float("nan"), n, len(true) - n, len(onsets) - n, onsets
    )


@dataclass
class ClickTally:
    """Running totals of :func:`click_timing_error` over many clips."""

    error_s: float = 0.0  # summed over matched pairs
    matched: int = 0
    missed: int = 0
    extra: int = 0

    def add(self, timing: ClickTiming) -> None:
        if timing.matched:
            self.error_s += timing.error_s * timing.matched
        self.matched += timing.matched
        self.missed += timing.missed
        self.extra += timing.extra

    @property
    def mean_ms(self) -> float:
        """Mean click-timing error of the matched pairs in ms (NaN when none matched)."""
        return 1000 * self.error_s / self.matched if self.matched else float("nan")


def dominant_frequency(
    wave: np.ndarray | torch.Tensor,
    sample_rate: int,
    start_s: float = 0.0,
    end_s: float | None = None,
    *,
    min_hz: float = 20.0,
    max_hz: float | None = None,
) -> float:
    """Frequency (Hz) of the strongest spectral peak of ``wave[start_s:end_s]`` between
    ``min_hz`` and ``max_hz``: Hann window, 8x zero padding, parabolic interpolation of the
    log magnitude around the peak bin (accurate to a small fraction of a bin)."""
    x = _mono(wave)
    a = round(start_s * sample_rate)
    b = len(x) if end_s is None else round(end_s * sample_rate)
    seg = x[a:b]
    if len(seg) < 16:
        raise KinemaError(f"window [{start_s}, {end_s}] s holds {len(seg)} samples; need >= 16")
    n_fft = 8 * len(seg)
    mag = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), n_fft))
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    band = (freqs >= min_hz) & (freqs <= (max_hz or sample_rate / 2))
    k = int(np.flatnonzero(band)[np.argmax(mag[band])])
    if 0 < k < len(mag) - 1:
        lo, mid, hi = np.log(mag[k - 1 : k + 2] + 1e-30)
        denom = lo - 2 * mid + hi
        k = k + (0.5 * (lo - hi) / denom if denom else 0.0)
    return float(k * sample_rate / n_fft)
