"""Clips of ``1 + 4k`` frames from real video files (a file, a folder or a list), images as
one-frame clips, with optional captions from ``captions.jsonl``.

Bad files never crash a run: a file that cannot be probed is dropped at construction, one
that fails to decode later is skipped; each is warned about once, by name, and counted in
``skipped``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from kinema.errors import KinemaError, VideoDecodeError
from kinema.io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, probe, read_video, to_tensor

log = logging.getLogger(__name__)

CAPTION_FILES = ("captions.jsonl", "meta.jsonl")  # meta.jsonl: written by `kinema data make`


def check_num_frames(num_frames: int) -> None:
    """Causal tokenizers want ``1 + 4k`` frames (1, 5, 9, 13, 17, ...)."""
    if not isinstance(num_frames, int) or num_frames < 1 or (num_frames - 1) % 4:
        raise ValueError(f"num_frames must be 1 + 4k (1, 5, 9, 13, 17, ...), got {num_frames}")


def list_media(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Expand a file, a folder (recursively, sorted) or a list of them into media files."""
    sources = [source] if isinstance(source, str | os.PathLike) else list(source)
    if not sources:
        raise ValueError("no video files given: pass a file, a folder or a list of files")
    files: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            exts = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
        elif p.exists():
            files.append(p)
        else:
            raise ValueError(f"video source '{p}' does not exist")
    if not files:
        raise ValueError(f"no video or image files found in {', '.join(map(str, sources))}")
    return files


def load_captions(files: list[Path], captions: str | os.PathLike | None) -> dict[Path, str]:
    """Read ``{"file": ..., "caption": ...}`` lines; ``file`` is relative to the jsonl file.

    Without an explicit path, a ``captions.jsonl`` (else ``meta.jsonl``) next to each file
    is used if present.
    """
    if captions is not None:
        sidecars = [Path(captions)]
    else:
        sidecars = sorted({s for f in files if (s := _sidecar(f.parent)) is not None})
    out: dict[Path, str] = {}
    for side in sidecars:
        if not side.is_file():
            raise ValueError(f"captions file '{side}' does not exist")
        for n, line in enumerate(side.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                out[(side.parent / rec["file"]).resolve()] = str(rec["caption"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(
                    f"{side}:{n}: expected a JSON object with 'file' and 'caption'"
                ) from None
    return out


def _sidecar(folder: Path) -> Path | None:
    for name in CAPTION_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


class VideoFolderDataset(Dataset):
    """Fixed-length clips from real videos, resized and centre-cropped.

    Each file gives ``clips_per_file`` clips whose start frames are seeded per index.
    Videos shorter than ``num_frames`` hold their last frame; images give one-frame clips
    (``video (3, 1, H, W)``) so image/video joint training can group them separately.

    Augmentation for training on few files: ``crop_scale > 1`` decodes at ``crop_scale x
    size`` and takes a seeded random ``size`` crop, flipped left-right half of the time.
    ``cache=True`` decodes each file once (at the target fps and size) and keeps its frames
    in memory: worth it for a handful of large files read many times.

    Items: ``video (3, T, H, W)`` in [-1, 1], ``caption`` ("" if none), ``path``, ``start``.
    """

    def __init__(
        self,
        source: str | os.PathLike | Sequence[str | os.PathLike],
        num_frames: int = 17,
        size: int | tuple[int, int] = 64,
        fps: float | None = None,
        captions: str | os.PathLike | None = None,
        clips_per_file: int = 1,
        seed: int = 0,
        crop_scale: float = 1.0,
        cache: bool = False,
    ) -> None:
        check_num_frames(num_frames)
        if not crop_scale >= 1.0:
            raise ValueError(f"crop_scale must be >= 1, got {crop_scale}")
        if clips_per_file < 1:
            raise ValueError(f"clips_per_file must be >= 1, got {clips_per_file}")
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.num_frames, self.size, self.fps, self.seed = num_frames, size, fps, seed
        self.clips_per_file = clips_per_file
        self.crop_scale, self.cache = crop_scale, cache
        self._frames: dict[int, np.ndarray] = {}  # file index -> all frames (cache=True)
        self.skipped: list[str] = []
        self.files: list[Path] = []
        self.lengths: list[int] = []  # usable frames per file at the target fps
        for f in list_media(source):
            try:
                info = probe(f)
            except KinemaError as e:
                self._skip(f, e)
                continue
            n = info.frames
            if fps is not None and info.fps > 0:
                n = max(1, int(info.duration * fps))
            self.files.append(f)
            self.lengths.append(n)
        if not self.files:
            raise ValueError(f"none of the given video files can be decoded: {self.skipped}")
        self.captions = load_captions(self.files, captions)

    def _skip(self, path: Path, err: Exception) -> None:
        if str(path) not in self.skipped:
            self.skipped.append(str(path))
            log.warning("skipping %s", err)

    def __len__(self) -> int:
        return len(self.files) * self.clips_per_file

    def _is_image(self, path: Path) -> bool:
        return path.suffix.lower() in IMAGE_EXTENSIONS

    def load(self, index: int) -> dict:
        """Decode item ``index``; raises :class:`VideoDecodeError` for a bad file."""
        f_idx = index // self.clips_per_file
        path, n = self.files[f_idx], self.lengths[f_idx]
        rng = np.random.default_rng([self.seed, index])
        want = 1 if self._is_image(path) else self.num_frames
        start = int(rng.integers(0, max(1, n - want + 1)))
        h, w = (self.size, self.size) if isinstance(self.size, int) else self.size
        size = (round(h * self.crop_scale), round(w * self.crop_scale))
        if self.cache:
            if f_idx not in self._frames:
                self._frames[f_idx] = read_video(path, fps=self.fps, size=size)
            frames = self._frames[f_idx][start : start + want]
        else:
            frames = read_video(path, start_frame=start, num_frames=want, fps=self.fps, size=size)
        if self.crop_scale > 1.0:
            y = int(rng.integers(0, size[0] - h + 1))
            x = int(rng.integers(0, size[1] - w + 1))
            frames = frames[:, y : y + h, x : x + w]
            if rng.random() < 0.5:
                frames = frames[:, :, ::-1]
            frames = np.ascontiguousarray(frames)
        if len(frames) < want:  # short video: hold the last frame
            frames = np.concatenate([frames, np.repeat(frames[-1:], want - len(frames), 0)])
        return {
            "video": to_tensor(frames),
            "caption": self.captions.get(path.resolve(), ""),
            "path": str(path),
            "start": start,
        }

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        # A file that fails now (truncated mid-stream, deleted) is skipped: try the next ones.
        for k in range(len(self)):
            i = (index + k * self.clips_per_file) % len(self)
            try:
                return self.load(i)
            except VideoDecodeError as e:
                self._skip(Path(e.path), e)
        raise VideoDecodeError(self.files[0], "no file in the dataset decodes any more")
