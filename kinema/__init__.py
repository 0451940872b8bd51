"""kinema: efficient video generation (VideoPoet, Next-Block Prediction, Pyramidal Flow).

One foundation (tokenizer, transformer core, data, trainer, samplers) for three methods.
``kinema.generate(...)`` (see :func:`kinema.api.generate`) is imported on first use, so
``import kinema`` stays cheap.
"""

from __future__ import annotations

from typing import Any

from kinema.errors import KinemaError, VideoDecodeError

__version__ = "0.1.0"

__all__ = ["KinemaError", "VideoDecodeError", "__version__", "generate"]


def __getattr__(name: str) -> Any:
    if name == "generate":
        from kinema.api import generate

        return generate
    raise AttributeError(f"module 'kinema' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
