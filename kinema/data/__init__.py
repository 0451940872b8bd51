"""Datasets: synthetic physics / shapes / digits, and real video folders.

``build_dataset(name, **options)`` maps a name (``physics``, ``shapes``, ``digits``) or a
path (file, folder) to a dataset, the way the CLI does.
"""

from __future__ import annotations

from pathlib import Path

from kinema.data.collate import collate
from kinema.data.physics import SCENARIOS, SPLITS, PhysicsDataset, Trajectory
from kinema.data.toys import DigitsDataset, ShapesDataset
from kinema.data.video_folder import VideoFolderDataset, check_num_frames

BUILTIN = ("physics", "shapes", "digits")

__all__ = [
    "BUILTIN",
    "SCENARIOS",
    "SPLITS",
    "DigitsDataset",
    "PhysicsDataset",
    "ShapesDataset",
    "Trajectory",
    "VideoFolderDataset",
    "build_dataset",
    "check_num_frames",
    "collate",
]


def build_dataset(
    name: str,
    *,
    length: int = 10_000,
    resolution: int = 64,
    num_frames: int = 17,
    seed: int = 0,
    scenario: str = "all",
    split: str = "id",
    fps: float | None = None,
):
    """A dataset by name (``physics``, ``shapes``, ``digits``) or by path (video folder)."""
    if name == "physics":
        # 5 conditioning frames as in the benchmark, fewer when the clips are shorter
        cond = min(5, num_frames - 1)
        return PhysicsDataset(
            scenario, split, length, resolution, num_frames, cond_frames=cond, seed=seed
        )
    if name in ("shapes", "digits"):
        cls = ShapesDataset if name == "shapes" else DigitsDataset
        return cls(length, resolution, num_frames, seed)
    if Path(name).exists():
        return VideoFolderDataset(name, num_frames, resolution, fps=fps, seed=seed)
    raise ValueError(
        f"unknown dataset '{name}': use one of {', '.join(BUILTIN)} or a video file/folder path"
    )
