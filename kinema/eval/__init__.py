"""Evaluation: physics velocity error (and later FVD, PSNR/SSIM, text adherence)."""

from kinema.eval.physics import ball_centroids, ball_weights, interval_errors, velocity_errors
from kinema.eval.physics_eval import (
    PhysicsResults,
    evaluate_physics_folder,
    evaluate_physics_model,
    evaluate_physics_videos,
)

__all__ = [
    "PhysicsResults",
    "ball_centroids",
    "ball_weights",
    "evaluate_physics_folder",
    "evaluate_physics_model",
    "evaluate_physics_videos",
    "interval_errors",
    "velocity_errors",
]
