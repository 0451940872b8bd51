"""Evaluation: physics velocity error (and later FVD, PSNR/SSIM, text adherence)."""

from kinema.eval.physics import ball_centroids, ball_weights, velocity_errors

__all__ = ["ball_centroids", "ball_weights", "velocity_errors"]
