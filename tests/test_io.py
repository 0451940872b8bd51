"""Video I/O: round trips, options, grids, atomic writes and every bad-input case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import moving_square

from kinema.errors import VideoDecodeError
from kinema.io import (
    make_grid,
    probe,
    read_video,
    read_video_tensor,
    resize_video,
    to_tensor,
    to_uint8,
    write_video,
)


@pytest.mark.parametrize("suffix, max_mean_err", [(".mp4", 3.0), (".webm", 3.0), (".gif", 3.0)])
def test_lossy_round_trip(tmp_path: Path, suffix: str, max_mean_err: float):
    video = moving_square()
    path = write_video(tmp_path / f"v{suffix}", video, fps=8)
    back = read_video(path)
    assert back.shape == video.shape and back.dtype == np.uint8
    err = np.abs(back.astype(int) - video.astype(int)).mean()
    assert err < max_mean_err
    info = probe(path)
    assert (info.width, info.height, info.frames) == (48, 32, 9)
    assert info.fps == pytest.approx(8.0, rel=0.05)  # GIF stores centiseconds


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_lossless_round_trip_is_exact(tmp_path: Path, suffix: str):
    video = moving_square()
    back = read_video(write_video(tmp_path / f"v{suffix}", video, fps=10, lossless=True))
    np.testing.assert_array_equal(back, video)


def test_gif_with_few_colours_is_exact(tmp_path: Path):
    video = np.zeros((5, 16, 16, 3), np.uint8)
    for i in range(5):
        video[i, 4:8, i : i + 4] = (255, 0, 0)
    np.testing.assert_array_equal(read_video(write_video(tmp_path / "a.gif", video)), video)


def test_odd_size_and_tensor_input(tmp_path: Path):
    video = torch.rand(3, 4, 15, 21) * 2 - 1
    back = read_video(write_video(tmp_path / "odd.mp4", video, fps=5, quality=0))
    assert back.shape == (4, 15, 21, 3)
    assert np.abs(back.astype(int) - to_uint8(video).astype(int)).mean() < 6


def test_tensor_conversions_round_trip():
    video = moving_square()
    x = to_tensor(video)
    assert x.shape == (3, 9, 32, 48) and x.min() >= -1 and x.max() <= 1
    np.testing.assert_array_equal(to_uint8(x), video)
    gray = to_uint8(torch.zeros(1, 2, 4, 4))
    assert gray.shape == (2, 4, 4, 3) and (gray == 128).all()


def test_frame_range_and_fps_resampling(tmp_path: Path):
    video = moving_square(t=20)
    path = write_video(tmp_path / "v.mp4", video, fps=10, lossless=True)
    np.testing.assert_array_equal(read_video(path, start_frame=3, num_frames=4), video[3:7])
    # Half the frame rate keeps every other frame; double repeats each frame.
    np.testing.assert_array_equal(read_video(path, fps=5), video[::2])
    np.testing.assert_array_equal(
        read_video(path, fps=5, start_frame=2, num_frames=3), video[4:10:2]
    )
    double = read_video(path, fps=20, num_frames=8)
    np.testing.assert_array_equal(double, np.repeat(video[:4], 2, axis=0))
    assert len(read_video(path, fps=20)) == 40


def test_resize_and_centre_crop():
    video = np.zeros((1, 40, 80, 3), np.uint8)
    video[:, :, 20:60] = 200  # the central half of the width
    out = resize_video(video, 20)  # 40x80 -> 20x40 -> centre crop 20x20
    assert out.shape == (1, 20, 20, 3)
    assert (out[0, :, 2:18] == 200).all()
    assert resize_video(video, (10, 40)).shape == (1, 10, 40, 3)


def test_read_video_tensor_size(real_videos):
    x = read_video_tensor(real_videos[0], num_frames=5, size=(32, 48))
    assert x.shape == (3, 5, 32, 48) and x.dtype == torch.float32
    assert -1 <= x.min() < x.max() <= 1


def test_make_grid_places_videos():
    a = np.full((3, 4, 4, 3), 10, np.uint8)
    b = np.full((5, 4, 4, 3), 20, np.uint8)
    g = make_grid([a, b, a], ncols=2, pad=1, pad_value=255)
    assert g.shape == (5, 1 + 2 * 5, 1 + 2 * 5, 3)
    assert (g[:, 1:5, 1:5] == 10).all() and (g[:, 1:5, 6:10] == 20).all()
    assert (g[:, 6:10, 1:5] == 10).all() and (g[:, 6:10, 6:10] == 255).all()
    assert (g[4, 1:5, 1:5] == 10).all()  # the shorter video holds its last frame


def test_write_is_atomic(tmp_path: Path, monkeypatch):
    import kinema.io as kio

    target = tmp_path / "out.mp4"
    write_video(target, moving_square(), fps=8)
    before = target.read_bytes()

    def broken(path, *args, **kwargs):
        Path(path).write_bytes(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(kio, "_write_av", broken)
    with pytest.raises(RuntimeError):
        write_video(target, moving_square(), fps=8)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


@pytest.mark.parametrize("case", ["empty", "text", "truncated", "noise", "missing"])
def test_bad_files_raise_one_line_decode_error(bad_files, case):
    path = bad_files[case]
    for fn in (read_video, probe):
        with pytest.raises(VideoDecodeError) as info:
            fn(path)
        msg = str(info.value)
        assert str(path) in msg and "\n" not in msg and "cannot decode video" in msg


def test_folder_is_not_a_video(tmp_path: Path):
    with pytest.raises(VideoDecodeError, match="folder"):
        read_video(tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_frames": 0}, "num_frames must be >= 1"),
        ({"start_frame": -1}, "start_frame must be >= 0"),
        ({"fps": 0}, "fps must be > 0"),
        ({"size": -4}, "size must be positive"),
        ({"size": (0, 8)}, "size must be positive"),
    ],
)
def test_impossible_read_options(real_videos, kwargs, match):
    with pytest.raises(ValueError, match=match):
        read_video(real_videos[0], **kwargs)


def test_impossible_write_options(tmp_path: Path):
    with pytest.raises(ValueError, match="format 'avi' is not one of"):
        write_video(tmp_path / "x.avi", moving_square())
    with pytest.raises(ValueError, match="fps must be > 0"):
        write_video(tmp_path / "x.mp4", moving_square(), fps=0)
    with pytest.raises(ValueError, match=r"\(C, T, H, W\)"):
        write_video(tmp_path / "x.mp4", torch.zeros(2, 3, 4))
    assert not any(tmp_path.iterdir())


def test_start_past_the_end(real_videos):
    n = probe(real_videos[0], count=True).frames
    with pytest.raises(VideoDecodeError, match="no frames"):
        read_video(real_videos[0], start_frame=n + 5)


def test_real_sample_videos_decode(real_videos):
    for f in real_videos:
        info = probe(f, count=True)
        assert info.frames > 10 and info.width > 0 and info.fps > 0
        clip = read_video(f, num_frames=5, size=32)
        assert clip.shape == (5, 32, 32, 3)


def test_written_files_get_the_usual_permissions(tmp_path: Path):
    import os

    mask = os.umask(0o022)
    try:
        path = write_video(tmp_path / "p.gif", moving_square(t=2))
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_atomic_dir_files_get_the_usual_permissions(tmp_path: Path):
    import os
    import stat

    from safetensors.torch import save_file

    from kinema.utils.fs import atomic_dir

    with atomic_dir(tmp_path / "model") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))  # written as 0600
        (tmp / "config.json").write_text("{}")
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "config.json"):
        mode = stat.S_IMODE((tmp_path / "model" / name).stat().st_mode)
        assert mode == 0o666 & ~umask, (name, oct(mode))
