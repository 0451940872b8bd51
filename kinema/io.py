"""Video I/O with PyAV: read any decodable file, write mp4 / webm / gif atomically, make grids.

Pixel conventions: uint8 ``(T, H, W, 3)`` arrays at the edges, float ``(C, T, H, W)`` tensors in
[-1, 1] inside models. Every failure to decode raises :class:`VideoDecodeError` naming the file.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from kinema.errors import VideoDecodeError
from kinema.utils.fs import atomic_file

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg", ".ts")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
WRITE_FORMATS = ("mp4", "webm", "gif")

Size = int | tuple[int, int]


@dataclass(frozen=True)
class VideoInfo:
    """What ``kinema info`` prints about a file."""

    path: str
    frames: int
    fps: float
    width: int
    height: int
    codec: str
    duration: float


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoDecodeError(path, "no such file")
    if path.is_dir():
        raise VideoDecodeError(path, "is a folder, not a file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "file is empty")


def _open(path: Path):
    _check_file(path)
    try:
        container = av.open(str(path))
    except Exception as e:  # PyAV raises many error types; all mean "not decodable"
        raise VideoDecodeError(path, f"not a readable video or image ({_reason(e)})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "has no video stream")
    return container


def _reason(e: Exception) -> str:
    """FFmpeg's own words (``strerror``) without the file name PyAV appends."""
    text = getattr(e, "strerror", None) or str(e)
    return " ".join(str(text).split()) or type(e).__name__


def probe(path: str | os.PathLike, count: bool = False) -> VideoInfo:
    """Read a file's header: frame count, fps, size, codec, duration.

    Containers that do not store a frame count (webm, some avi) get an estimate from the
    duration, unless ``count=True`` in which case every frame is decoded and counted.
    """
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        frames = stream.frames
        if count or frames <= 0:
            if count or duration <= 0 or fps <= 0:
                frames = sum(1 for _ in _decode_frames(container, path))
            else:
                frames = int(round(duration * fps))
        if frames <= 0:
            raise VideoDecodeError(path, "contains no frames")
        if duration <= 0 and fps > 0:
            duration = frames / fps
        ctx = stream.codec_context
        return VideoInfo(
            path=str(path),
            frames=int(frames),
            fps=fps,
            width=ctx.width,
            height=ctx.height,
            codec=ctx.name,
            duration=duration,
        )
    finally:
        container.close()


def _decode_frames(container, path: Path):
    """Yield decoded video frames, turning decoder errors into VideoDecodeError."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    try:
        yield from container.decode(stream)
    except VideoDecodeError:
        raise
    except Exception as e:
        raise VideoDecodeError(path, f"decoding failed ({_reason(e)})") from None


def read_video(
    path: str | os.PathLike,
    *,
    start_frame: int = 0,
    num_frames: int | None = None,
    fps: float | None = None,
    size: Size | None = None,
) -> np.ndarray:
    """Decode a video (or image) file to uint8 ``(T, H, W, 3)``.

    Args:
        start_frame: first frame to return, counted in output frames (at ``fps`` if given).
        num_frames: how many frames to return (``None``: to the end of the file).
        fps: resample to this frame rate by taking the source frame nearest each output time.
        size: output size; an int gives a square, ``(H, W)`` a rectangle. The frame is resized
            so that it covers the target (aspect ratio kept), then centre-cropped.
    """
    path = Path(path)
    if start_frame < 0:
        raise ValueError(f"start_frame must be >= 0, got {start_frame}")
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be >= 1 (or None for all), got {num_frames}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    target = _parse_size(size)

    container = _open(path)
    try:
        stream = container.streams.video[0]
        src_rate = stream.average_rate or stream.guessed_rate
        src_fps = float(src_rate) if src_rate else 25.0
        frames = []
        if fps is None:
            stop = None if num_frames is None else start_frame + num_frames
            for i, frame in enumerate(_decode_frames(container, path)):
                if stop is not None and i >= stop:
                    break
                if i >= start_frame:
                    frames.append(frame.to_ndarray(format="rgb24"))
        else:
            frames = _resample(container, path, src_fps, fps, start_frame, num_frames)
    finally:
        container.close()
    if not frames:
        raise VideoDecodeError(path, f"contains no frames from frame {start_frame} on")
    video = np.stack(frames)
    if target is not None:
        video = resize_video(video, target)
    return video


def _resample(container, path, src_fps, fps, start_frame, num_frames) -> list[np.ndarray]:
    """Output frame k shows the source frame nearest to time ``(start_frame + k) / fps``."""
    t_first = start_frame / fps
    t_last = None if num_frames is None else (start_frame + num_frames - 1) / fps
    times: list[float] = []
    arrs: list[np.ndarray] = []
    t0 = None
    for i, frame in enumerate(_decode_frames(container, path)):
        t = frame.time if frame.time is not None else i / src_fps
        t0 = t if t0 is None else t0
        t -= t0  # streams may not start at zero
        if t_last is not None and t > t_last + 1.0 / src_fps:
            break
        if t < t_first - 1.0 / src_fps:
            continue
        times.append(t)
        arrs.append(frame.to_ndarray(format="rgb24"))
    if not times:
        return []
    end = times[-1] + 0.5 / src_fps  # the last frame stays on screen for half an interval
    n_out = math.floor((end - t_first) * fps + 1e-9) + 1
    if num_frames is not None:
        n_out = min(n_out, num_frames)
    want = t_first + np.arange(max(n_out, 0)) / fps
    ts = np.asarray(times)
    idx = (
        np.clip(np.searchsorted(ts, want), 1, len(ts) - 1)
        if len(ts) > 1
        else np.zeros_like(want, int)
    )
    if len(ts) > 1:
        idx = np.where(np.abs(ts[idx - 1] - want) <= np.abs(ts[idx] - want), idx - 1, idx)
    return [arrs[j] for j in idx]


def _parse_size(size: Size | None) -> tuple[int, int] | None:
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive (an int or (height, width)), got {size}")
    return int(h), int(w)


def resize_video(video: np.ndarray, size: Size) -> np.ndarray:
    """Resize uint8 ``(T, H, W, 3)`` to cover ``size`` (aspect kept), then centre-crop."""
    th, tw = _parse_size(size)
    t, h, w, _ = video.shape
    if (h, w) == (th, tw):
        return video
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    x = torch.from_numpy(video).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - th) // 2, (nw - tw) // 2
    x = x[:, :, top : top + th, left : left + tw]
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def to_tensor(video: np.ndarray) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> float ``(C, T, H, W)`` in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(video)).float().div(127.5).sub(1.0)
    return rearrange(x, "t h w c -> c t h w")


def to_uint8(video: torch.Tensor | np.ndarray) -> np.ndarray:
    """float ``(C, T, H, W)`` in [-1, 1] (or uint8 ``(T, H, W, 3)``) -> uint8 ``(T, H, W, 3)``."""
    if isinstance(video, np.ndarray):
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(
                f"expected a uint8 (T, H, W, 3) array, got {video.dtype} {video.shape}"
            )
        return video
    if video.ndim != 4 or video.shape[0] not in (1, 3):
        raise ValueError(
            f"expected a (C, T, H, W) tensor with C = 1 or 3, got {tuple(video.shape)}"
        )
    x = video.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    x = rearrange(x, "c t h w -> t h w c")
    if x.shape[-1] == 1:
        x = x.expand(-1, -1, -1, 3)
    return x.contiguous().numpy()


def read_video_tensor(path: str | os.PathLike, **kwargs) -> torch.Tensor:
    """Like :func:`read_video` but returns float ``(C, T, H, W)`` in [-1, 1]."""
    return to_tensor(read_video(path, **kwargs))


def write_video(
    path: str | os.PathLike,
    video: np.ndarray | torch.Tensor,
    fps: float = 10.0,
    *,
    quality: int = 18,
    lossless: bool = False,
    full_chroma: bool = False,
) -> Path:
    """Write a video atomically; the format follows the suffix (.mp4 h264, .webm vp9, .gif).

    Args:
        video: uint8 ``(T, H, W, 3)`` or float ``(C, T, H, W)`` in [-1, 1].
        quality: constant rate factor for mp4/webm (lower is better; 0-51 for h264).
        lossless: exact RGB (mp4: libx264rgb at qp 0; webm: vp9 lossless in RGB). GIFs are
            lossless whenever every frame has at most 256 colours.
        full_chroma: keep colour at full resolution (yuv444p) instead of 4:2:0. Small saturated
            objects (the physics balls) lose their colour edges under 4:2:0; browsers prefer it.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in WRITE_FORMATS:
        raise ValueError(f"cannot write '{path}': format '{fmt}' is not one of {WRITE_FORMATS}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    frames = to_uint8(video)
    if frames.shape[0] < 1 or frames.shape[1] < 1 or frames.shape[2] < 1:
        raise ValueError(f"cannot write an empty video of shape {frames.shape}")
    with atomic_file(path) as tmp:
        if fmt == "gif":
            _write_gif(tmp, frames, fps)
        else:
            _write_av(tmp, frames, fps, fmt, quality, lossless, full_chroma or _is_odd(frames))
    return path


def _is_odd(frames: np.ndarray) -> bool:
    return bool(frames.shape[1] % 2 or frames.shape[2] % 2)  # 4:2:0 needs even sizes


def _write_av(
    path: Path,
    frames: np.ndarray,
    fps: float,
    fmt: str,
    quality: int,
    lossless: bool,
    chroma444: bool,
) -> None:
    _, h, w, _ = frames.shape
    if fmt == "mp4":
        codec = "libx264rgb" if lossless else "libx264"
        pix_fmt = "rgb24" if lossless else ("yuv444p" if chroma444 else "yuv420p")
        options = {"qp": "0"} if lossless else {"crf": str(quality), "preset": "medium"}
    else:
        codec = "libvpx-vp9"
        pix_fmt = "gbrp" if lossless else ("yuv444p" if chroma444 else "yuv420p")
        options = {"lossless": "1"} if lossless else {"crf": str(quality + 12), "b:v": "0"}
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    from PIL import Image  # Pillow ships with matplotlib; its adaptive palette beats ffmpeg's

    images = []
    for arr in frames:
        img = Image.fromarray(arr)
        colors = len(np.unique(arr.reshape(-1, 3), axis=0))
        images.append(
            img.quantize(
                colors=256,
                method=Image.Quantize.MAXCOVERAGE if colors > 256 else Image.Quantize.FASTOCTREE,
                dither=Image.Dither.NONE,
            )
        )
    duration = max(20, int(round(1000 / fps)))
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=duration,
        loop=0,
        disposal=1,
        optimize=False,
    )


def make_grid(
    videos: list[np.ndarray], ncols: int | None = None, pad: int = 2, pad_value: int = 255
) -> np.ndarray:
    """Tile uint8 ``(T, H, W, 3)`` videos into one ``(T, H', W', 3)`` grid video.

    Shorter videos hold their last frame; smaller ones are centred in the largest cell.
    """
    if not videos:
        raise ValueError("make_grid needs at least one video")
    videos = [to_uint8(v) for v in videos]
    n = len(videos)
    ncols = ncols or math.ceil(math.sqrt(n))
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    nrows = math.ceil(n / ncols)
    t = max(v.shape[0] for v in videos)
    h = max(v.shape[1] for v in videos)
    w = max(v.shape[2] for v in videos)
    grid = np.full((t, pad + nrows * (h + pad), pad + ncols * (w + pad), 3), pad_value, np.uint8)
    for i, v in enumerate(videos):
        r, c = divmod(i, ncols)
        if v.shape[0] < t:
            v = np.concatenate([v, np.repeat(v[-1:], t - v.shape[0], axis=0)])
        y0 = pad + r * (h + pad) + (h - v.shape[1]) // 2
        x0 = pad + c * (w + pad) + (w - v.shape[2]) // 2
        grid[:, y0 : y0 + v.shape[1], x0 : x0 + v.shape[2]] = v
    return grid
