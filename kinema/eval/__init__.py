"""Evaluation: physics velocity error, FVD (with a local I3D), text adherence, HTML report."""

from kinema.eval.adherence import AdherenceResults, evaluate_adherence, evaluate_adherence_folder
from kinema.eval.fvd import FVDResult, feature_stats, frechet_distance, fvd, fvd_folders
from kinema.eval.i3d import I3D, I3DConfig, load_detector
from kinema.eval.physics import ball_centroids, ball_weights, interval_errors, velocity_errors
from kinema.eval.physics_eval import (
    PhysicsResults,
    evaluate_physics_folder,
    evaluate_physics_model,
    evaluate_physics_videos,
)
from kinema.eval.report import write_report

__all__ = [
    "I3D",
    "AdherenceResults",
    "FVDResult",
    "I3DConfig",
    "PhysicsResults",
    "ball_centroids",
    "ball_weights",
    "evaluate_adherence",
    "evaluate_adherence_folder",
    "evaluate_physics_folder",
    "evaluate_physics_model",
    "evaluate_physics_videos",
    "feature_stats",
    "frechet_distance",
    "fvd",
    "fvd_folders",
    "interval_errors",
    "load_detector",
    "velocity_errors",
    "write_report",
]
