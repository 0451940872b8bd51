"""H.264 reference for the tokenizer rate-distortion benchmark (libx264 via PyAV, in memory).

Encoding settings: libx264 defaults except ``crf`` and ``preset`` (``medium``: 3 B-frames,
CABAC, ...), one thread (deterministic), all frames in one GOP (``keyint = min-keyint = T``,
no scene-cut I-frames) at a fixed 25 fps. Frames go RGB -> ``pix_fmt`` -> RGB through
swscale's defaults (BT.601, limited range), so colour conversion and chroma subsampling are
part of the codec's loss.

Bits are the H.264 bitstream itself: the NAL units (headers, SPS/PPS, slices) without their
Annex-B start codes and without SEI units. SEI is not needed for decoding; x264 writes a
~670-byte version/options string there, which would dominate small clips.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from fractions import Fraction

import av
import numpy as np

from kinema.errors import KinemaError
from kinema.eval.metrics import psnr, ssim

log = logging.getLogger(__name__)

FPS = 25
CRF_MIN, CRF_MAX = 0, 51
_START_CODE = re.compile(b"\x00\x00\x01")
_NAL_SEI = 6


def _check_frames(frames: np.ndarray, pix_fmt: str) -> None:
    ok = isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4
    if not ok or frames.shape[-1] != 3 or min(frames.shape[:3]) < 1:
        got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames)
        raise KinemaError(f"H.264 reference needs uint8 (T, H, W, 3) frames, got {got}")
    _, h, w, _ = frames.shape
    try:
        planes = av.VideoFormat(pix_fmt, 2, 2).components  # subsampled planes come out 1 wide
    except ValueError:
        raise KinemaError(f"unknown pixel format '{pix_fmt}' (try yuv420p or yuv444p)") from None
    odd_h = h % 2 and any(c.height < 2 for c in planes)
    odd_w = w % 2 and any(c.width < 2 for c in planes)
    if odd_h or odd_w:
        need = " and ".join(n for n, odd in (("height", odd_h), ("width", odd_w)) if odd)
        raise KinemaError(
            f"H.264 with pix_fmt {pix_fmt} needs an even {need}, got a {h}x{w} (HxW) video "
            "(crop it, or use pix_fmt='yuv444p')"
        )


def stream_bits(packets: Iterable[bytes]) -> int:
    """Bits of an Annex-B H.264 stream: NAL units without start codes, SEI units left out."""
    total = 0
    for data in packets:
        starts = [m.end() for m in _START_CODE.finditer(data)]
        for i, s in enumerate(starts):
            end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
            nal = data[s:end].rstrip(b"\x00")  # a 4-byte start code's zero belongs to no NAL
            if nal and nal[0] & 0x1F != _NAL_SEI:
                total += 8 * len(nal)
    return total


def encode_h264(
    frames: np.ndarray, crf: int, pix_fmt: str = "yuv420p", preset: str = "medium"
) -> tuple[np.ndarray, int]:
    """Encode and decode uint8 ``(T, H, W, 3)`` frames with libx264 at constant rate factor.

    Returns:
        the decoded uint8 ``(T, H, W, 3)`` frames and the stream's size in bits (see the
        module docstring for what is counted).
    """
    _check_frames(frames, pix_fmt)
    if not CRF_MIN <= crf <= CRF_MAX:
        raise KinemaError(f"crf must be in {CRF_MIN}..{CRF_MAX}, got {crf}")
    t, h, w, _ = frames.shape
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, pix_fmt
    enc.time_base, enc.framerate = Fraction(1, FPS), Fraction(FPS)
    enc.thread_count = 1
    enc.options = {
        "crf": str(int(crf)),
        "preset": preset,
        "x264-params": f"keyint={t}:min-keyint={t}:scenecut=0",
    }
    packets = []
    for i, arr in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
        frame = frame.reformat(format=pix_fmt)
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)
    bits = stream_bits(bytes(p) for p in packets)

    dec = av.CodecContext.create("h264", "r")
    dec.thread_count = 1
    decoded = []
    for p in [*packets, None]:
        decoded += [f.to_ndarray(format="rgb24") for f in dec.decode(p)]
    if len(decoded) != t:
        raise KinemaError(f"H.264 round trip returned {len(decoded)} frames for {t}")
    return np.stack(decoded), bits


def h264_at_bpp(
    frames: np.ndarray,
    target_bpp: float,
    pix_fmt: str = "yuv420p",
    preset: str = "medium",
) -> dict:
    """The best H.264 encoding of uint8 ``(T, H, W, 3)`` frames within a bits-per-pixel budget.

    Binary search over integer crf 0..51 for the lowest crf whose bpp <= ``target_bpp``
    (assumes bpp falls with crf, which holds for x264 in practice; the result's crf - 1 is
    always over budget unless crf is 0). If even crf 51 is over, crf 51 is returned with
    ``over_budget=True``.

    Returns:
        dict with ``crf``, ``bpp``, ``bits``, ``psnr`` and ``ssim`` (dB / mean SSIM of decoded
        vs input, RGB), ``decoded`` (uint8 ``(T, H, W, 3)``) and ``over_budget``.
    """
    _check_frames(frames, pix_fmt)
    t, h, w, _ = frames.shape
    pixels = t * h * w
    cache: dict[int, tuple[np.ndarray, int]] = {}

    def bpp(crf: int) -> float:
        if crf not in cache:
            cache[crf] = encode_h264(frames, crf, pix_fmt, preset)
        return cache[crf][1] / pixels

    if bpp(CRF_MAX) > target_bpp:
        best, over = CRF_MAX, True
        log.warning(
            "H.264 needs %.4f bpp at crf %d, over the %.4f budget", bpp(best), best, target_bpp
        )
    elif bpp(CRF_MIN) <= target_bpp:
        best, over = CRF_MIN, False
    else:
        lo, hi = CRF_MIN, CRF_MAX  # lo is over budget, hi within
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if bpp(mid) <= target_bpp:
                hi = mid
            else:
                lo = mid
        best, over = hi, False
    decoded, bits = cache[best]
    log.debug("H.264 search: %s", {c: round(b / pixels, 5) for c, (_, b) in sorted(cache.items())})
    return {
        "crf": best,
        "bpp": bits / pixels,
        "bits": bits,
        "psnr": float(psnr(decoded, frames)),
        "ssim": float(ssim(decoded, frames)),
        "decoded": decoded,
        "over_budget": over,
    }
