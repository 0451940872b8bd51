"""Sampling loops: the token-LM block decoder, vectorised token sampling, guidance, and the
pyramid-flow Euler sampler."""

from kinema.sample.decode import cast_parameters_, generate
from kinema.sample.flow import sample_pyramid
from kinema.sample.guidance import cfg_combine
from kinema.sample.sampling import filter_logits, sample_logits

__all__ = [
    "cast_parameters_",
    "cfg_combine",
    "filter_logits",
    "generate",
    "sample_logits",
    "sample_pyramid",
]
