"""The kinema command: help, info, data preview/make, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from kinema.cli import app
from kinema.eval.physics import velocity_errors
from kinema.io import probe, read_video

runner = CliRunner()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kinema.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_command_groups():
    out = runner.invoke(app, ["--help"]).output
    for group in ("data", "info"):
        assert group in out


def test_info_on_real_videos(real_videos):
    res = runner.invoke(app, ["info", str(real_videos[0]), str(real_videos[3])])
    assert res.exit_code == 0, res.output
    info = probe(real_videos[3], count=True)
    assert f"{info.width}x{info.height}" in res.output and str(info.frames) in res.output


def test_data_preview(tmp_path: Path):
    out = tmp_path / "p.gif"
    res = runner.invoke(app, ["data", "preview", "physics", "--n", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "red ball" in res.output
    frames = read_video(out)
    assert frames.shape[0] == 17 and frames.shape[1] > 2 * 64


def test_data_make_writes_clips_and_ground_truth(tmp_path: Path):
    out = tmp_path / "phys"
    res = runner.invoke(
        app,
        [
            "data",
            "make",
            "physics",
            "--scenario",
            "parabola",
            "--n",
            "6",
            "--out",
            str(out),
            "--seed",
            "5",
        ],
    )
    assert res.exit_code == 0, res.output
    meta = [json.loads(line) for line in (out / "meta.jsonl").read_text().splitlines()]
    assert len(meta) == 6 and sorted(p.name for p in out.glob("*.mp4")) == [
        f"clip_{i:06d}.mp4" for i in range(6)
    ]
    errs = []
    for rec in meta:
        assert rec["scenario"] == "parabola" and "red ball" in rec["caption"]
        frames = read_video(out / rec["file"])
        pos = np.array(rec["positions"], dtype=float)[:, 0]
        errs.append(velocity_errors(frames, pos, rec["radii"][0]))
    assert np.concatenate(errs).mean() < 0.03


def test_bad_inputs_give_one_line_errors(tmp_path: Path, bad_files):
    for path in (bad_files["truncated"], bad_files["text"], bad_files["empty"]):
        res = run_cli("info", str(path))
        assert res.returncode == 2
        lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and str(path.name) in lines[0] and "Traceback" not in res.stderr
    res = run_cli("data", "make", "physics", "--scenario", "orbit", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "allowed: all, uniform, collision, parabola" in res.stderr
    res = run_cli("data", "preview", "physics", "--frames", "0", "--out", str(tmp_path / "a.gif"))
    assert res.returncode == 2 and "num_frames must be" in res.stderr
    assert not (tmp_path / "a.gif").exists()
