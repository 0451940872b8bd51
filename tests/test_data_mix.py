"""Dataset mixtures, joint image/video collation, augmented real clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kinema.data import PhysicsDataset, ShapesDataset, VideoFolderDataset, collate
from kinema.data.mix import MixtureDataset, parse_weighted
from kinema.train.data import batch_len


def test_parse_weighted():
    assert parse_weighted("physics:3") == ("physics", 3.0)
    assert parse_weighted("physics") == ("physics", 1.0)
    assert parse_weighted("/a/b:c/clip.mp4") == ("/a/b:c/clip.mp4", 1.0)
    assert parse_weighted("clips/x.mp4:0.5") == ("clips/x.mp4", 0.5)
    with pytest.raises(ValueError, match="weight must be > 0"):
        parse_weighted("physics:0")


def _mixture(**kw) -> MixtureDataset:
    parts = {
        "physics": PhysicsDataset(length=50, resolution=32, num_frames=5, cond_frames=1),
        "shapes": ShapesDataset(length=50, resolution=32, num_frames=5),
    }
    return MixtureDataset(parts, **{"weights": [3.0, 1.0], "length": 400, **kw})


def test_mixture_is_deterministic_and_follows_the_weights():
    a, b = _mixture(), _mixture()
    for i in (0, 7, 399):
        assert a[i]["source"] == b[i]["source"]
        assert torch.equal(a[i]["video"], b[i]["video"])
    share = np.mean([a[i]["source"] == "physics" for i in range(400)])
    assert 0.68 < share < 0.82  # 0.75 expected; 400 draws: sd 0.022
    assert set(a[0]) == {"video", "caption", "source"}
    with pytest.raises(IndexError):
        a[400]


def test_mixture_image_items_and_joint_collate():
    mix = _mixture(image_prob=0.5)
    items = [mix[i] for i in range(16)]
    frames = {it["video"].shape[1] for it in items}
    assert frames == {1, 5}
    # an image item is one frame of the clip the index drew
    batch = collate(items)
    assert isinstance(batch["video"], list) and len(batch["video"]) == 16
    assert batch_len(batch) == 16
    same = collate([it for it in items if it["video"].shape[1] == 5])
    assert isinstance(same["video"], torch.Tensor) and same["video"].shape[1:] == (3, 5, 32, 32)


def test_mixture_rejects_bad_arguments():
    parts = {"shapes": ShapesDataset(length=5, resolution=32, num_frames=5)}
    with pytest.raises(ValueError, match="one positive weight per dataset"):
        MixtureDataset(parts, weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="image_prob"):
        MixtureDataset(parts, image_prob=1.5)
    with pytest.raises(ValueError, match="at least one dataset"):
        MixtureDataset({})


def test_video_folder_random_crops_and_cache(real_videos):
    clip = real_videos[2]  # carphone, 176x144
    plain = VideoFolderDataset(clip, num_frames=5, size=32, clips_per_file=4, seed=3)
    aug = VideoFolderDataset(clip, 5, 32, clips_per_file=4, seed=3, crop_scale=1.5)
    cached = VideoFolderDataset(clip, 5, 32, clips_per_file=4, seed=3, crop_scale=1.5, cache=True)
    for i in range(4):
        a, c = aug[i], cached[i]
        assert a["video"].shape == (3, 5, 32, 32)
        assert a["start"] == c["start"] == plain[i]["start"]
        torch.testing.assert_close(a["video"], c["video"])  # cache changes speed, not data
    assert not torch.equal(aug[0]["video"], plain[0]["video"])
    assert len(cached._frames) == 1
    with pytest.raises(ValueError, match="crop_scale must be >= 1"):
        VideoFolderDataset(clip, 5, 32, crop_scale=0.5)
