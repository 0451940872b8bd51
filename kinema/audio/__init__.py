"""Audio for VideoPoet-style multitask models: a SoundStream-style codec (residual VQ tokens)
and evaluation of generated sound against the physics clips' impact times.

The synthetic sound of the physics benchmark lives with the data:
:mod:`kinema.data.physics_audio` (``synthesize``, ``PhysicsAudioVisualDataset``).
"""

from kinema.audio.codec import (
    PRESETS,
    AudioCodec,
    AudioCodecConfig,
    codes_to_tokens,
    envelope_loss,
    preset,
    stft_loss,
    tokens_to_codes,
)
from kinema.audio.metrics import ClickTiming, click_timing_error, detect_onsets, dominant_frequency
from kinema.audio.rvq import ResidualVQ

__all__ = [
    "PRESETS",
    "AudioCodec",
    "AudioCodecConfig",
    "ClickTiming",
    "ResidualVQ",
    "click_timing_error",
    "codes_to_tokens",
    "detect_onsets",
    "dominant_frequency",
    "envelope_loss",
    "preset",
    "stft_loss",
    "tokens_to_codes",
]
