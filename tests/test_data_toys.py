"""Shapes and digits: determinism, captions that match what is drawn, bounce kinematics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kinema.data import DigitsDataset, ShapesDataset, build_dataset
from kinema.data.render import reflect
from kinema.data.toys import COLORS, DIRECTIONS
from kinema.io import to_uint8


@pytest.mark.parametrize("cls", [ShapesDataset, DigitsDataset])
def test_deterministic_and_seeded(cls):
    a, b, c = cls(seed=1), cls(seed=1), cls(seed=2)
    assert torch.equal(a[5]["video"], b[5]["video"]) and a[5]["caption"] == b[5]["caption"]
    assert not torch.equal(a[5]["video"], c[5]["video"])


@pytest.mark.parametrize("cls", [ShapesDataset, DigitsDataset])
def test_caption_matches_pixels(cls):
    ds = cls(length=40, resolution=48, num_frames=9)
    for i in range(40):
        it = ds[i]
        frames = to_uint8(it["video"]).astype(np.float32)
        assert it["color"] in it["caption"] and it["object"] in it["caption"]
        assert it["direction"] in it["caption"]
        # The drawn colour is the named one: compare the mean colour of lit pixels.
        lit = frames.max(-1) > 100
        mean = frames[lit].mean(0)
        target = np.array(COLORS[it["color"]], np.float32)
        assert np.abs(mean / mean.max() - target / 255).max() < 0.25
        # The object moves in the named direction over the first step (before any bounce).
        w = frames.max(-1)
        ys, xs = np.mgrid[0 : w.shape[1], 0 : w.shape[2]]
        cx = (w * xs).sum((1, 2)) / w.sum((1, 2))
        cy = (w * ys).sum((1, 2)) / w.sum((1, 2))
        dx, dy = DIRECTIONS[it["direction"]]
        pos = it["positions"].numpy()
        step = pos[1] - pos[0]
        bounced = np.sign(step[0]) != np.sign(dx) or np.sign(-step[1]) != np.sign(dy)
        if not bounced:
            if dx:
                assert np.sign(cx[1] - cx[0]) == np.sign(dx)
            if dy:
                assert np.sign(cy[0] - cy[1]) == np.sign(dy)


def test_reflect_is_a_bounce():
    x = np.linspace(-3, 5, 801)
    y = reflect(x, 0.0, 1.0)
    assert y.min() >= 0 and y.max() <= 1
    np.testing.assert_allclose(np.abs(np.diff(y)), np.diff(x)[0], atol=1e-9)  # speed kept
    np.testing.assert_allclose(reflect(np.array([1.25, -0.25, 2.5]), 0, 1), [0.75, 0.25, 0.5])


def test_build_dataset_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        build_dataset("nope")
    with pytest.raises(ValueError, match="num_frames must be an integer >= 2"):
        build_dataset("shapes", num_frames=0)
    with pytest.raises(ValueError, match="resolution must be between"):
        build_dataset("digits", resolution=-1)
