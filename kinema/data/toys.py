"""Text-conditioned toy datasets: coloured shapes and sklearn digits moving and bouncing.

Both share one motion model (constant velocity in one of eight directions, elastic bounces off
the frame) and one caption template naming colour, object and initial direction, so text
adherence can be scored with a colour-centroid detector.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from kinema.data.physics import check_clip_args
from kinema.data.render import DIRECTIONS, composite, reflect, sdf_alpha, shape_sdf
from kinema.io import to_tensor

COLORS = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
}
SHAPES = ("circle", "square", "triangle")


class MovingObjectDataset(Dataset):
    """Base: one object per clip moving in a seeded direction and bouncing off the frame.

    Items: ``video (3, T, H, W)`` in [-1, 1]; ``positions (T, 2)`` object centre in [0, 1]
    image coordinates (x right, y down); ``caption``; ``color``, ``direction``, ``object``
    (names) and their integer ids ``label_color``, ``label_direction``, ``label_object``.
    """

    objects: tuple[str, ...] = ()

    def __init__(
        self,
        length: int = 10_000,
        resolution: int = 64,
        num_frames: int = 17,
        seed: int = 0,
        speed: tuple[float, float] = (0.02, 0.05),
    ) -> None:
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive integer, got {length}")
        if not isinstance(resolution, int):
            raise ValueError(f"resolution must be an integer, got {resolution}")
        check_clip_args(num_frames, resolution, 0.1)
        if not 0 <= speed[0] <= speed[1] <= 0.5:
            raise ValueError(f"speed must be (lo, hi) with 0 <= lo <= hi <= 0.5, got {speed}")
        self.length, self.res, self.num_frames, self.seed, self.speed = (
            length,
            resolution,
            num_frames,
            seed,
            speed,
        )

    def __len__(self) -> int:
        return self.length

    def _sample(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} clips")
        rng = np.random.default_rng([self.seed, index])
        color = list(COLORS)[rng.integers(len(COLORS))]
        direction = list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]
        obj = self.objects[rng.integers(len(self.objects))]
        half = rng.uniform(0.12, 0.2)  # object half-size, fraction of the frame
        speed = rng.uniform(*self.speed)  # fraction of the frame per frame
        dx, dy = DIRECTIONS[direction]
        norm = math.hypot(dx, dy)
        vx, vy = speed * dx / norm, -speed * dy / norm  # image y grows downwards
        lo, hi = half, 1.0 - half
        x0, y0 = rng.uniform(lo, hi), rng.uniform(lo, hi)
        t = np.arange(self.num_frames)
        pos = np.stack([reflect(x0 + vx * t, lo, hi), reflect(y0 + vy * t, lo, hi)], -1)
        return {
            "rng": rng,
            "color": color,
            "direction": direction,
            "object": obj,
            "half": half,
            "positions": pos.astype(np.float32),
        }

    def _alpha(self, s: dict) -> np.ndarray:
        raise NotImplementedError

    def caption(self, s: dict) -> str:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        s = self._sample(index)
        alpha = self._alpha(s)
        bg = np.zeros((self.num_frames, self.res, self.res, 3), np.float32)
        video = composite(bg, [(alpha, COLORS[s["color"]])])
        return {
            "video": to_tensor(video),
            "positions": torch.from_numpy(s["positions"]),
            "caption": self.caption(s),
            "color": s["color"],
            "direction": s["direction"],
            "object": s["object"],
            "label_color": list(COLORS).index(s["color"]),
            "label_direction": list(DIRECTIONS).index(s["direction"]),
            "label_object": self.objects.index(s["object"]),
            "index": index,
        }


class ShapesDataset(MovingObjectDataset):
    """A coloured circle, square or triangle on black, e.g. "a red square moves up-left"."""

    objects = SHAPES

    def _alpha(self, s: dict) -> np.ndarray:
        px = s["positions"] * self.res
        dist = shape_sdf(s["object"], px[:, 0], px[:, 1], s["half"] * self.res, self.res, self.res)
        return sdf_alpha(dist, 1.0)

    def caption(self, s: dict) -> str:
        return f"a {s['color']} {s['object']} moves {s['direction']}"


class DigitsDataset(MovingObjectDataset):
    """A coloured handwritten digit (sklearn's bundled 8x8 digits), e.g. "a cyan digit 3 moves
    down"."""

    objects = tuple(str(d) for d in range(10))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

        digits = load_digits()
        self.images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)  # (N, 8, 8)
        self.by_digit = [np.flatnonzero(digits.target == d) for d in range(10)]

    def _alpha(self, s: dict) -> np.ndarray:
        choices = self.by_digit[int(s["object"])]
        img = self.images[choices[s["rng"].integers(len(choices))]]
        t = self.num_frames
        # Affine sampling grid: output pixel -> digit coordinates in [-1, 1], one per frame.
        pos = torch.from_numpy(s["positions"]) * 2 - 1  # frame coords in [-1, 1]
        scale = 0.5 / s["half"]  # frame coords span 2: the digit box is 2 * half of the frame
        theta = torch.zeros(t, 2, 3)
        theta[:, 0, 0] = scale
        theta[:, 1, 1] = scale
        theta[:, :, 2] = -pos * scale
        grid = F.affine_grid(theta, [t, 1, self.res, self.res], align_corners=False)
        src = img.expand(t, 1, 8, 8)
        alpha = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return alpha[:, 0].clamp(0, 1).numpy()

    def caption(self, s: dict) -> str:
        return f"a {s['color']} digit {s['object']} moves {s['direction']}"
