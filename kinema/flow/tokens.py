"""Sequence length of a pyramid-flow training sample, full-sequence vs temporal pyramid.

With the temporal pyramid, latent frame ``i`` at stage ``k`` attends a history kept at
reduced resolution: the most recent frame at stage ``k``, the one before at stage ``k-1``,
..., all older ones at stage 0. The longest sequence is the last frame at the last stage.
"""

from __future__ import annotations

from kinema.errors import KinemaError


def token_count(
    frames: int,
    height: int,
    width: int,
    *,
    vae_temporal: int = 8,
    vae_spatial: int = 8,
    patch: int = 2,
    stages: int = 3,
    pyramid: bool = True,
) -> int:
    """Tokens in one training sequence for a ``frames x height x width`` pixel clip.

    ``pyramid=False``: every latent frame at full resolution, ``T * tokens_per_frame`` with
    ``T = 1 + (frames - 1) / vae_temporal``. ``pyramid=True``: the maximum over frames and
    stages of (current frame at its stage + its reduced history), reached by the last frame
    at the last stage. 241 frames at 768x1280 (8x8x8 VAE, patch 2): 31 latent frames of
    48x80 latents = 3,840 tokens each; full 119,040, pyramid
    3,840 + 3,840 + 960 + 28*240 = 15,360.
    """
    named = [("vae_temporal", vae_temporal), ("vae_spatial", vae_spatial), ("patch", patch)]
    for name, value in [*named, ("stages", stages), ("frames", frames)]:
        if value < 1:
            raise KinemaError(f"{name} must be >= 1, got {value}")
    if (frames - 1) % vae_temporal:
        below = 1 + (frames - 1) // vae_temporal * vae_temporal
        raise KinemaError(
            f"frames {frames} must be 1 + {vae_temporal}*k, e.g. {below} or {below + vae_temporal}"
        )
    # the lowest stage must still patchify, so height and width halve cleanly K-1 times
    unit = vae_spatial * patch * (2 ** (stages - 1) if pyramid else 1)
    if height < unit or width < unit or height % unit or width % unit:
        raise KinemaError(f"height and width must be multiples of {unit}, got {height}x{width}")
    latent_frames = 1 + (frames - 1) // vae_temporal
    per_frame = (height // (vae_spatial * patch)) * (width // (vae_spatial * patch))
    if not pyramid:
        return latent_frames * per_frame

    def at(stage: int) -> int:  # tokens of one frame at ``stage``
        return per_frame // 4 ** (stages - 1 - stage)

    last = stages - 1
    history = latent_frames - 1
    recent = min(history, stages)  # at stages last, last-1, ..., down to 0
    older = history - recent  # all at stage 0
    return at(last) + sum(at(last - i) for i in range(recent)) + older * at(0)
