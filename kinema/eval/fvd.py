"""Fréchet Video Distance (Unterthiner et al. 2018): the Fréchet distance between Gaussians
fitted to detector features of real and of generated clips.

Protocol (what :func:`video_features` does to every clip):
- the first ``frames`` frames (16 by default, the common protocol);
- each frame resized bilinearly so its shorter side is 224 (aspect ratio kept), then
  centre-cropped to 224 x 224 (:func:`kinema.io.resize_video`; antialiased when shrinking),
  as most PyTorch FVD implementations do; the original TensorFlow code instead squashed
  frames to 224 x 224;
- pixels scaled from uint8 to [-1, 1], the range the Kinetics I3D was trained on;
- features: the detector's output, for :class:`~kinema.eval.i3d.I3D` the 400 Kinetics
  logits before the softmax (averaged over time), the features the FVD paper and the
  widely used StyleGAN-V I3D port use, so kinema's protocol is theirs.

FVD is a biased estimator: its expectation exceeds the distance between the true
distributions by a term that shrinks roughly like 1 / N (N clips per set; the mean term
alone adds ``(tr S_real + tr S_fake) / N``), so values are only comparable at equal N (and
the same frames, resizing and detector weights). With N at most the feature dimension the
covariances are singular. Common protocols use 2048 clips (StyleGAN-V) or 256.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kinema.errors import KinemaError
from kinema.eval.i3d import MIN_FRAMES, SIZE, load_detector
from kinema.io import resize_video, to_tensor, to_uint8
from kinema.utils.jsonable import jsonable

log = logging.getLogger(__name__)

FRAMES = 16  # frames per clip of the common protocol
MIN_CLIPS = 2  # a covariance needs two samples


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``features (N, D)``, float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < MIN_CLIPS:
        raise ValueError(f"features must be (N >= {MIN_CLIPS}, D), got shape {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    vals, vecs = np.linalg.eigh(sigma)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet (2-Wasserstein) distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``:
    ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``, in float64.

    ``tr (sigma1 sigma2)^(1/2)`` is computed as the sum of the square roots of the
    eigenvalues of ``sqrt(sigma1) sigma2 sqrt(sigma1)``: a symmetric PSD matrix with the same
    eigenvalues as ``sigma1 sigma2``, so ``eigh`` applies and no complex parts or failed
    square roots arise when the covariances are singular (fewer clips than dimensions),
    where ``scipy.linalg.sqrtm`` of the non-symmetric product needs an ``eps * I`` patch.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[-1] if mu1.ndim == 1 else -1
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"expected means (D,) and covariances (D, D) of one D, got {mu1.shape}, {s1.shape}, "
            f"{mu2.shape}, {s2.shape}"
        )
    root = _psd_sqrt((s1 + s1.T) / 2)
    inner = root @ s2 @ root
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    cross = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * cross
    return max(float(value), 0.0)  # >= 0 in exact arithmetic; rounding can dip below


def preprocess(video: np.ndarray | torch.Tensor, frames: int = FRAMES) -> torch.Tensor:
    """One clip (uint8 ``(T, H, W, 3)`` or float ``(C, T, H, W)`` in [-1, 1]) -> the
    detector input ``(3, frames, 224, 224)`` in [-1, 1]: its first ``frames`` frames, shorter
    side resized to 224 and centre-cropped (see the module docstring)."""
    clip = to_uint8(video)
    if len(clip) < frames:
        raise ValueError(f"a {len(clip)}-frame clip; FVD takes its first {frames} frames")
    return to_tensor(resize_video(clip[:frames], SIZE))


def video_features(
    videos: Iterable[np.ndarray | torch.Tensor],
    detector: nn.Module,
    *,
    frames: int = FRAMES,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    name: str = "videos",
    on_clip: Callable[[], None] | None = None,
) -> np.ndarray:
    """Detector features ``(N, D)`` (float64) of clips (a possibly lazy iterable), computed
    ``batch_size`` clips at a time on ``device`` (default: the detector's)."""
    _check_options(frames, batch_size)
    if device is None:
        device = next(detector.parameters(), torch.empty(0)).device
    feats: list[np.ndarray] = []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        with torch.inference_mode():
            out = detector(torch.stack(batch).to(device))
        if out.ndim != 2 or out.shape[0] != len(batch):
            raise KinemaError(
                f"the detector returned shape {tuple(out.shape)} for {len(batch)} clips; "
                "expected (clips, features)"
            )
        feats.append(out.double().cpu().numpy())
        batch.clear()

    for i, video in enumerate(videos):
        try:
            batch.append(preprocess(video, frames))
        except ValueError as e:
            raise KinemaError(f"{name} clip {i}: {e}") from None
        if len(batch) == batch_size:
            flush()
        if on_clip is not None:
            on_clip()
    if batch:
        flush()
    if not feats:
        raise KinemaError(f"no {name} clips")
    return np.concatenate(feats)


def _check_options(frames: int, batch_size: int) -> None:
    if not MIN_FRAMES <= frames <= 1024:
        raise KinemaError(f"frames must be in [{MIN_FRAMES}, 1024] for the I3D, got {frames}")
    if not 1 <= batch_size <= 1024:
        raise KinemaError(f"batch size must be in [1, 1024], got {batch_size}")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> cuda if available, else cpu; a checked device otherwise."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise KinemaError(f"unknown device '{device}'; use cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise KinemaError(f"device '{device}' asked for, but no CUDA GPU is available")
    return dev


@dataclass
class FVDResult:
    """fvd: the distance; real, fake: clips per set; frames: per clip; features: the
    detector's feature dimension; ``source`` says what was compared."""

    fvd: float
    real: int
    fake: int
    frames: int
    features: int
    size: int = SIZE
    metric: str = "fvd"
    source: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return jsonable(asdict(self))

    def markdown(self) -> str:
        return "\n".join(
            [
                "| FVD | real clips | generated clips | frames | features |",
                "|---|---|---|---|---|",
                f"| {self.fvd:.2f} | {self.real} | {self.fake} | {self.frames} | {self.features} |",
            ]
        )


def _check_count(n: int, dim: int, name: str) -> None:
    if n < MIN_CLIPS:
        raise KinemaError(f"FVD needs at least {MIN_CLIPS} {name} clips, got {n}")
    if n <= dim:
        log.warning(
            "FVD from %d %s clips, not more than the %d feature dimensions: the covariance is "
            "singular and FVD strongly biased; compare FVDs only at equal N (common: 2048)",
            n,
            name,
            dim,
        )


def fvd(
    real_videos: Iterable[np.ndarray | torch.Tensor],
    fake_videos: Iterable[np.ndarray | torch.Tensor],
    detector: nn.Module | str | os.PathLike,
    *,
    frames: int = FRAMES,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    source: dict | None = None,
    on_clip: Callable[[], None] | None = None,
) -> FVDResult:
    """FVD between two sets of clips (uint8 ``(T, H, W, 3)`` or float ``(C, T, H, W)`` in
    [-1, 1], ``T >= frames``; lazy iterables are read once).

    detector: a module mapping ``(B, 3, frames, 224, 224)`` in [-1, 1] to ``(B, D)``, or a
    local file for :func:`~kinema.eval.i3d.load_detector`. device: where it runs (default:
    a module's own device; for a file, cuda if available). The result is biased upwards by
    small N: compare values only at equal N (module docstring).
    """
    _check_options(frames, batch_size)
    if not isinstance(detector, nn.Module):
        detector = load_detector(detector, resolve_device(device))
    elif device is not None:
        detector = detector.to(resolve_device(device))
    kw = dict(frames=frames, batch_size=batch_size, device=device, on_clip=on_clip)
    real = video_features(real_videos, detector, name="real", **kw)
    fake = video_features(fake_videos, detector, name="generated", **kw)
    for feats, name in ((real, "real"), (fake, "generated")):
        _check_count(len(feats), feats.shape[1], name)
    value = frechet_distance(*feature_stats(real), *feature_stats(fake))
    return FVDResult(value, len(real), len(fake), frames, real.shape[1], source=dict(source or {}))


def folder_videos(folder: str | os.PathLike, n: int | None = None) -> list[Path]:
    """The video files of a folder (recursively, sorted; images excluded), the first ``n``."""
    from kinema.data.video_folder import list_media
    from kinema.io import VIDEO_EXTENSIONS

    folder = Path(folder)
    if not folder.is_dir():
        raise KinemaError(f"'{folder}' is not a folder")
    try:
        files = [f for f in list_media(folder) if f.suffix.lower() in VIDEO_EXTENSIONS]
    except ValueError:  # nothing to list
        files = []
    if not files:
        raise KinemaError(f"'{folder}' has no video files ({', '.join(VIDEO_EXTENSIONS)})")
    return files[:n]


def fvd_folders(
    real: str | os.PathLike,
    fake: str | os.PathLike,
    detector: nn.Module | str | os.PathLike,
    *,
    frames: int = FRAMES,
    n: int | None = None,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    on_clip: Callable[[int, int], None] | None = None,
) -> FVDResult:
    """FVD between the video files of two folders (the first ``n`` of each, sorted).

    Every file is decoded (PyAV) up to ``frames`` frames; an undecodable or too short file
    is an error naming it, since skipping files would change N. on_clip: called with
    ``(done, total)`` clips.
    """
    from kinema.io import read_video

    if n is not None and n < MIN_CLIPS:
        raise KinemaError(f"n must be at least {MIN_CLIPS} clips per set, got {n}")
    _check_options(frames, batch_size)
    what = type(detector).__name__ if isinstance(detector, nn.Module) else str(detector)
    if not isinstance(detector, nn.Module):  # a bad detector file fails before any decoding
        detector = load_detector(detector, resolve_device(device))
    sets = {"real": folder_videos(real, n), "generated": folder_videos(fake, n)}
    for (name, files), folder in zip(sets.items(), (real, fake), strict=True):
        if len(files) < MIN_CLIPS:
            raise KinemaError(
                f"FVD needs at least {MIN_CLIPS} {name} clips, '{folder}' has {len(files)}"
            )
    total, done = sum(len(f) for f in sets.values()), [0]

    def read(files: list[Path]) -> Iterator[np.ndarray]:
        for f in files:
            clip = read_video(f, num_frames=frames)
            if len(clip) < frames:
                raise KinemaError(f"'{f}' has {len(clip)} frames; FVD takes {frames} per clip")
            yield clip

    def advance() -> None:
        done[0] += 1
        if on_clip is not None:
            on_clip(done[0], total)

    source = {"real": str(real), "fake": str(fake), "detector": what}
    return fvd(
        read(sets["real"]),
        read(sets["generated"]),
        detector,
        frames=frames,
        batch_size=batch_size,
        device=device,
        source=source,
        on_clip=advance,
    )


__all__ = [
    "FRAMES",
    "FVDResult",
    "feature_stats",
    "folder_videos",
    "frechet_distance",
    "fvd",
    "fvd_folders",
    "preprocess",
    "video_features",
]
