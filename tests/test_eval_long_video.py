"""Long-video drift: the ball's radius and colour read only where the whole ball is in view,
and `kinema eval long-video` on a tiny token LM."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kinema.cli import app
from kinema.eval.long_video import drift_scores
from kinema.eval.multitask import ball_stats

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from model_folders import lm_folder  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_lm_folder(tmp_path_factory):
    """A random tiny token LM: 1 given + 1 generated latent frame, 5-frame 32x32 clips."""
    return lm_folder(tmp_path_factory.mktemp("lm") / "lm")


def disc_video(centres, radii, size: int = 32, rgb=(255, 0, 0)) -> np.ndarray:
    """uint8 (T, size, size, 3): a hard-edged disc per frame on white."""
    yy, xx = np.mgrid[:size, :size] + 0.5
    frames = np.full((len(radii), size, size, 3), 255, dtype=np.uint8)
    for f, ((cx, cy), r) in enumerate(zip(centres, radii, strict=True)):
        frames[f][(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = rgb
    return frames


def by_metric(scores) -> dict[str, float]:
    return {s.metric: s.model for s in scores}


def test_ball_stats_whole_leaves_out_a_ball_at_the_border():
    video = disc_video([(16, 16), (2, 16)], [5, 5])  # the second crosses the left edge
    radius, rgb = ball_stats(video)
    assert np.isfinite(radius).all() and radius[1] < radius[0]  # cut off: looks smaller
    whole_r, whole_rgb = ball_stats(video, whole=True)
    assert np.isfinite(whole_r[0]) and np.isnan(whole_r[1]) and np.isnan(whole_rgb[1]).all()
    assert whole_r[0] == pytest.approx(radius[0]) and np.allclose(whole_rgb[0], rgb[0])


def test_drift_scores_against_known_videos():
    clip, rounds = 4, 3
    steady = disc_video([(16, 16)] * clip * rounds, [6] * clip * rounds)
    rows = by_metric(drift_scores([steady], clip))
    assert rows["ball radius, last / first clip (ratio)"] == pytest.approx(1.0)
    assert rows["ball colour, last vs first clip (RGB distance)"] == pytest.approx(0.0)
    assert rows["frames of the last clip with the ball seen (fraction)"] == 1.0
    # radius 6 -> 3 and red -> a darker red
    shrunk = np.concatenate([steady[:clip], disc_video([(16, 16)] * clip, [3] * clip,
                                                       rgb=(200, 0, 0))])  # fmt: skip
    rows = by_metric(drift_scores([shrunk], clip))
    assert rows["ball radius, last / first clip (ratio)"] == pytest.approx(0.5, rel=0.1)
    assert rows["ball colour, last vs first clip (RGB distance)"] == pytest.approx(55.0)
    # a ball leaving the view is not a shrinking ball: frames at the border are left out
    leaving = disc_video([(16, 16)] * clip + [(16, 16), (16, 16), (2, 16), (-1, 16)],
                         [6] * 2 * clip)  # fmt: skip
    rows = by_metric(drift_scores([leaving], clip))
    assert rows["ball radius, last / first clip (ratio)"] == pytest.approx(1.0)
    assert rows["frames of the last clip with the ball seen (fraction)"] == 1.0
    assert rows["frames of the last clip with the whole ball seen (fraction)"] == 0.5
    # the title states the length
    assert drift_scores([steady], clip)[0].task == "long video (12 frames = 3.0x the clip)"
    # against a truth: the distance between the ball centres in the last clip
    moved = disc_video([(16, 16)] * clip * rounds, [6] * clip * rounds)
    truth = disc_video([(16, 16)] * clip * (rounds - 1) + [(19, 12)] * clip, [6] * clip * rounds)
    rows = by_metric(drift_scores([moved], clip, truths=[truth]))
    assert rows["ball centre vs the simulated truth, last clip (px)"] == pytest.approx(5.0)
    rows = by_metric(drift_scores([truth], clip, truths=[truth]))
    assert rows["ball centre vs the simulated truth, last clip (px)"] == 0.0
    assert "ball centre vs the simulated truth, last clip (px)" not in by_metric(
        drift_scores([truth], clip)
    )


def test_cli_extends_a_tiny_model(tiny_lm_folder, tmp_path):
    out = tmp_path / "long.json"
    res = runner.invoke(
        app,
        ["eval", "long-video", "--model", str(tiny_lm_folder), "--times", "2", "--n", "2",
         "--top-k", "4", "--threads", "1", "--json", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    saved = json.loads(out.read_text())
    assert saved["metric"] == "long-video" and saved["source"]["sampling"] == {"top_k": 4}
    assert saved["source"]["scenario"] == "bounce"  # a truth of the whole length: 6 rows
    assert len(saved["scores"]) == 6 and "x the clip" in saved["scores"][0]["task"]
    truth = saved["scores"][-1]
    assert truth["metric"].startswith("ball centre vs the simulated truth")
    res = runner.invoke(app, ["eval", "long-video", "--model", str(tiny_lm_folder), "--n", "0"])
    assert res.exit_code != 0
    res = runner.invoke(
        app, ["eval", "long-video", "--model", str(tiny_lm_folder), "--scenario", "orbit"]
    )
    assert res.exit_code != 0 and "unknown physics scenario 'orbit'" in str(res.exception)
