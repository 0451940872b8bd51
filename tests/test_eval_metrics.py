"""PSNR / SSIM / bits per pixel: closed forms, and SSIM against scikit-image as the peer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from kinema.eval.metrics import bits_per_pixel, psnr, ssim
from kinema.io import read_video, to_tensor

pytestmark = pytest.mark.usefixtures("one_thread")


def skimage_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Peer reference: mean over frames of scikit-image's SSIM on ``(T, H, W, C)`` arrays."""
    return float(
        np.mean(
            [
                structural_similarity(
                    a,
                    b,
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                    data_range=data_range,
                    channel_axis=-1,
                )
                for a, b in zip(x, y, strict=True)
            ]
        )
    )


def noisy(video: np.ndarray, std: float, seed: int = 0) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` with Gaussian noise added (clipped)."""
    rng = np.random.default_rng(seed)
    return np.clip(video + rng.normal(0, std, video.shape), 0, 255).round().astype(np.uint8)


# --- PSNR ---------------------------------------------------------------------------------


def test_psnr_constant_error_closed_form():
    x = torch.rand(3, 4, 16, 16) * 1.8 - 0.9
    got = psnr(x, x + 0.1)
    assert got.shape == ()
    assert float(got) == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-4)


def test_psnr_per_video_shapes():
    x = torch.rand(2, 5, 3, 4, 8, 8) * 2 - 1
    err = torch.tensor([0.1, 0.2, 0.4, 0.05, 0.3]).view(1, 5, 1, 1, 1, 1)
    got = psnr(x, x + err)
    assert got.shape == (2, 5)
    want = 10 * torch.log10(4 / err.flatten().double() ** 2)
    torch.testing.assert_close(got, want.expand(2, 5), atol=1e-4, rtol=0)
    image = psnr(x[0, 0, :, 0], x[0, 0, :, 0] - 0.2)  # (C, H, W)
    assert image.shape == () and float(image) == pytest.approx(10 * math.log10(100), abs=1e-4)


def test_psnr_identical_is_inf_or_capped():
    x = torch.rand(3, 2, 8, 8) * 2 - 1
    assert math.isinf(float(psnr(x, x)))
    assert float(psnr(x, x, max_db=100.0)) == 100.0


def test_psnr_uint8_matches_0_255_definition():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (3, 12, 10, 3), dtype=np.uint8)
    b = noisy(a, 8.0)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    want = 10 * math.log10(255**2 / mse)
    assert float(psnr(a, b)) == pytest.approx(want, abs=1e-6)
    assert float(psnr(to_tensor(a), to_tensor(b))) == pytest.approx(want, abs=1e-4)


def test_psnr_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.zeros(3, 2, 8, 8), torch.zeros(3, 2, 8, 9))


# --- SSIM ---------------------------------------------------------------------------------


def test_ssim_identical_is_one():
    x = torch.rand(2, 3, 3, 16, 20) * 2 - 1
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))


def test_ssim_matches_skimage_on_random():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 24, 31, 3), dtype=np.uint8)
    b = noisy(a, 40.0)
    want = skimage_ssim(a, b, data_range=255)
    assert float(ssim(to_tensor(a), to_tensor(b))) == pytest.approx(want, abs=1e-4)
    assert float(ssim(a, b)) == pytest.approx(want, abs=1e-4)  # uint8 in directly
    # [0, 1] floats with vmin = 0, the scale scikit-image users usually pass
    fa, fb = a / 255.0, b / 255.0
    want01 = skimage_ssim(fa, fb, data_range=1.0)
    ta, tb = (torch.from_numpy(v).permute(3, 0, 1, 2) for v in (fa, fb))  # (C, T, H, W)
    got01 = ssim(ta, tb, data_range=1.0, vmin=0.0)
    assert float(got01) == pytest.approx(want01, abs=1e-4)


def test_ssim_matches_skimage_on_real_clip(real_videos):
    clip = read_video(real_videos[1], num_frames=5, size=64)  # (5, 64, 64, 3)
    for std in (3.0, 20.0):
        other = noisy(clip, std)
        want = skimage_ssim(clip, other, data_range=255)
        got = ssim(to_tensor(clip), to_tensor(other))
        assert float(got) == pytest.approx(want, abs=1e-4)
        assert float(ssim(to_tensor(other), to_tensor(clip))) == pytest.approx(float(got), abs=1e-9)


def test_ssim_batch_and_image_shapes():
    x = torch.rand(4, 3, 2, 16, 16) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    batch = ssim(x, y)
    assert batch.shape == (4,)
    torch.testing.assert_close(batch[2], ssim(x[2], y[2]))
    frame = ssim(x[0, :, 1], y[0, :, 1])  # (C, H, W)
    assert frame.shape == () and 0 < float(frame) < 1


def test_ssim_too_small():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(3, 2, 10, 32), torch.zeros(3, 2, 10, 32))


# --- bits per pixel -----------------------------------------------------------------------


def test_bits_per_pixel():
    # 5x16x16 tokens from a 2^16 codebook for 17 frames of 128x128
    assert bits_per_pixel(1280, 65536, 17, 128, 128) == pytest.approx(1280 * 16 / (17 * 16384))
    assert bits_per_pixel(10, 1000, 1, 10, 1) == pytest.approx(math.log2(1000))
    with pytest.raises(ValueError, match="vocab_size"):
        bits_per_pixel(10, 1, 1, 8, 8)
