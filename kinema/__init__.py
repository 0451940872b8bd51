"""kinema: efficient video generation (VideoPoet, Next-Block Prediction, Pyramidal Flow).

One foundation (tokenizer, transformer core, data, trainer, samplers) for three methods.
"""

from kinema.errors import KinemaError, VideoDecodeError

__version__ = "0.1.0"

__all__ = ["KinemaError", "VideoDecodeError", "__version__"]
