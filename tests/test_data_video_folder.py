"""Real-video clips: sample videos, captions, images, and bad files skipped with a warning."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import moving_square

from kinema.data import VideoFolderDataset, collate
from kinema.errors import VideoDecodeError
from kinema.io import write_video


def test_sample_videos_as_clips(real_videos):
    ds = VideoFolderDataset(real_videos, num_frames=17, size=48, seed=0)
    assert len(ds) == len(real_videos) and not ds.skipped
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["video"].shape == (len(real_videos), 3, 17, 48, 48)
    assert -1 <= batch["video"].min() < batch["video"].max() <= 1
    # Seeded start frames: the same seed gives the same clips.
    again = VideoFolderDataset(real_videos, num_frames=17, size=48, seed=0)
    assert [again[i]["start"] for i in range(len(ds))] == batch["start"].tolist()


def test_folder_with_captions_images_and_bad_files(tmp_path: Path, bad_files, caplog):
    folder = tmp_path / "clips"
    folder.mkdir()
    write_video(folder / "a.mp4", moving_square(t=12), fps=10, lossless=True)
    write_video(folder / "b.mp4", moving_square(t=3), fps=10, lossless=True)  # short
    from PIL import Image

    Image.fromarray(moving_square()[0]).save(folder / "still.png")
    shutil.copy(bad_files["truncated"], folder / "broken.mp4")
    shutil.copy(bad_files["empty"], folder / "zero.mp4")
    (folder / "captions.jsonl").write_text(
        json.dumps({"file": "a.mp4", "caption": "a square moves right"})
        + "\n"
        + json.dumps({"file": "still.png", "caption": "a still"})
        + "\n"
    )
    with caplog.at_level(logging.WARNING):
        ds = VideoFolderDataset(folder, num_frames=5, size=16, clips_per_file=2)
    assert sorted(Path(p).name for p in ds.skipped) == ["broken.mp4", "zero.mp4"]
    assert sum("broken.mp4" in r.message for r in caplog.records) == 1
    assert len(ds) == 6  # a, b, still x 2 clips each
    names = {Path(ds[i]["path"]).name: ds[i] for i in range(len(ds))}
    assert names["a.mp4"]["caption"] == "a square moves right"
    assert names["a.mp4"]["video"].shape == (3, 5, 16, 16)
    assert names["still.png"]["video"].shape == (3, 1, 16, 16)  # an image is a 1-frame clip
    short = names["b.mp4"]["video"]
    assert short.shape == (3, 5, 16, 16)
    assert (short[:, 3] == short[:, 2]).all()  # held last frame


def test_file_that_breaks_after_construction_is_skipped(tmp_path: Path, caplog):
    for name in ("a.mp4", "b.mp4"):
        write_video(tmp_path / name, moving_square(t=9), fps=10)
    ds = VideoFolderDataset(tmp_path, num_frames=5, size=16)
    (tmp_path / "a.mp4").write_bytes(b"gone")
    with caplog.at_level(logging.WARNING):
        item = ds[0]
    assert Path(item["path"]).name == "b.mp4"
    assert [Path(p).name for p in ds.skipped] == ["a.mp4"]
    ds[0]
    assert len(ds.skipped) == 1  # counted once, warned once
    (tmp_path / "b.mp4").write_bytes(b"gone too")
    with pytest.raises(VideoDecodeError, match="no file in the dataset decodes"):
        ds[1]


def test_bad_arguments(tmp_path: Path, real_videos, bad_files):
    with pytest.raises(ValueError, match=r"1 \+ 4k"):
        VideoFolderDataset(real_videos, num_frames=6)
    with pytest.raises(ValueError, match="does not exist"):
        VideoFolderDataset(tmp_path / "nope")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="no video or image files"):
        VideoFolderDataset(tmp_path / "empty_dir")
    with pytest.raises(ValueError, match="none of the given video files can be decoded"):
        VideoFolderDataset([bad_files["empty"], bad_files["text"]])
    bad_caps = tmp_path / "caps.jsonl"
    bad_caps.write_text("{not json\n")
    with pytest.raises(ValueError, match="caps.jsonl:1"):
        VideoFolderDataset(real_videos[:1], captions=bad_caps)


def test_fps_resampling_in_dataset(tmp_path: Path):
    video = moving_square(t=20)
    write_video(tmp_path / "v.mp4", video, fps=10, lossless=True)
    ds = VideoFolderDataset(tmp_path, num_frames=5, size=(32, 48), fps=5, seed=0)
    item = ds[0]
    marks = ((item["video"][2, :, 0, 0] + 1) * 127.5).round().numpy()  # frame index * 10
    steps = np.diff(marks)
    assert (steps == 20).all()  # every other source frame
