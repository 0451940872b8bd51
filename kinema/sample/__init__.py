"""Sampling loops: the token-LM block decoder, vectorised token sampling, guidance, the
pyramid-flow Euler sampler and its temporal (frame by frame) loop."""

from kinema.sample.decode import cast_parameters_, generate
from kinema.sample.flow import generate_latents, sample_pyramid
from kinema.sample.guidance import cfg_combine
from kinema.sample.sampling import filter_logits, sample_logits

__all__ = [
    "cast_parameters_",
    "cfg_combine",
    "filter_logits",
    "generate",
    "generate_latents",
    "sample_logits",
    "sample_pyramid",
]
