"""Errors that speak the user's language: one line naming the input and what is allowed."""

from __future__ import annotations


class KinemaError(Exception):
    """Base class for errors the CLI reports as a single line (no traceback)."""


class VideoDecodeError(KinemaError):
    """A file could not be decoded as video or image."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # keep it on one line
        super().__init__(f"cannot decode video '{self.path}': {self.reason}")
