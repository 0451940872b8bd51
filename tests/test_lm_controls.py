"""Control videos for stylization: Sobel edges on a rendered square, grayscale, the
registry, tokenization by the video tokenizer."""

from __future__ import annotations

import pytest
import torch

from kinema.errors import KinemaError
from kinema.lm.controls import (
    CONTROLS,
    control_tokens,
    control_video,
    register_control,
)
from kinema.lm.tasks import get_task
from kinema.tokenizer import Tokenizer, TokenizerConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def square_video(size: int = 32, lo: int = 10, hi: int = 22, frames: int = 3) -> torch.Tensor:
    """A white square ``[lo, hi)`` on black, ``(1, 3, T, H, W)`` in [-1, 1]."""
    v = -torch.ones(1, 3, frames, size, size)
    v[..., lo:hi, lo:hi] = 1.0
    return v


def test_edges_of_a_square_lie_on_its_border():
    lo, hi = 10, 22
    edges = control_video(square_video(lo=lo, hi=hi), "edges")
    assert edges.shape == (1, 3, 3, 32, 32) and set(edges.unique().tolist()) == {-1.0, 1.0}
    on = edges[0, 0] > 0  # (T, H, W)
    assert torch.equal(on, edges[0, 1] > 0) and torch.equal(on, edges[0, 2] > 0)
    # the border band: pixels within one pixel of the square's outline
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[lo:hi, lo:hi] = True
    grown = torch.zeros_like(inside)
    grown[lo - 1 : hi + 1, lo - 1 : hi + 1] = True
    shrunk = torch.zeros_like(inside)
    shrunk[lo + 1 : hi - 1, lo + 1 : hi - 1] = True
    band = grown & ~shrunk
    for t in range(3):
        assert on[t][band & ~_corners(lo, hi)].all()  # the whole outline is found
        assert not on[t][~band].any()  # nothing inside, outside, or at the frame border


def _corners(lo: int, hi: int) -> torch.Tensor:
    """The four outer diagonal corner pixels, where the 3x3 Sobel response is weakest."""
    c = torch.zeros(32, 32, dtype=torch.bool)
    for y in (lo - 1, hi):
        for x in (lo - 1, hi):
            c[y, x] = True
    return c


def test_grayscale_and_flat_frames():
    v = torch.rand(2, 3, 2, 8, 8) * 2 - 1
    g = control_video(v, "gray")
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 0], g[:, 2])
    want = (0.299 * v[:, 0] + 0.587 * v[:, 1] + 0.114 * v[:, 2] + 1) / 2 * 2 - 1
    torch.testing.assert_close(g[:, 0], want)
    flat = control_video(torch.full((1, 3, 1, 8, 8), 0.3), "edges")
    assert (flat == -1).all()  # replicate padding: no edges at the frame border


def test_registry_and_tokens():
    @register_control("invert")
    def invert(video):
        return -video

    try:
        assert "invert" in CONTROLS
        assert get_task("stylize:invert").conditions == ("control",)
        torch.manual_seed(0)
        tok = Tokenizer(
            TokenizerConfig(
                spatial_compression=4,
                resolution=16,
                num_frames=5,
                base_channels=8,
                channel_mult=(1, 1, 1),
                fsq_levels=(4, 4),
                norm_groups=4,
            )
        ).eval()
        video = torch.rand(2, 3, 5, 16, 16) * 2 - 1
        tokens = control_tokens(tok, video, "invert")
        assert torch.equal(tokens, tok.encode(-video))
        assert tokens.shape == (2, 2, 4, 4)
    finally:
        del CONTROLS["invert"]
    with pytest.raises(KinemaError, match="unknown control 'depth'"):
        control_video(video, "depth")
    with pytest.raises(KinemaError, match="without ':'"):
        register_control("a:b")
