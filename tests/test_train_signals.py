"""SIGTERM / SIGINT stop a run cleanly with a checkpoint; kill -9 loses at most save_every steps.

Each test trains ``tests/scripts/train_tiny.py`` in a subprocess (slowed by a per-item
delay so there is time to signal it), then resumes in-process and checks the whole loss
curve against an uninterrupted in-process run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kinema.train import Trainer, latest_checkpoint, read_metrics

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import train_tiny  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).parent / "scripts" / "train_tiny.py"
STEPS = 40


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocess runs on one thread too: same float results
    yield
    torch.set_num_threads(threads)


def launch(out: Path, save_every: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--result", str(out / "result.json")]
    cmd += ["--steps", str(STEPS), "--save-every", str(save_every), "--delay", "0.01"]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def logged_steps(out: Path) -> list[int]:
    return [int(r["step"]) for r in read_metrics(out / "metrics.csv")]


def wait_for_step(proc: subprocess.Popen, out: Path, step: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"training exited early (rc {proc.returncode}):\n{err[-2000:]}")
        steps = logged_steps(out) if (out / "metrics.csv").is_file() else []
        if steps and steps[-1] >= step:
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"training did not reach step {step} in {timeout}s")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[float]:
    """Losses of the same run, uninterrupted, in this process."""
    out = tmp_path_factory.mktemp("ref")
    cfg = train_tiny.make_config(out, steps=STEPS, progress=False)
    result = Trainer(train_tiny.build(0), train_tiny.ToySequences(64), cfg).fit()
    return [r["loss"] for r in result.history]


def resume_to_end(out: Path, save_every: int) -> Trainer:
    cfg = train_tiny.make_config(
        out, steps=STEPS, save_every=save_every, resume=True, progress=False
    )
    trainer = Trainer(train_tiny.build(42), train_tiny.ToySequences(64), cfg)
    return trainer


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_and_exits_cleanly_then_resumes(sig, tmp_path, reference):
    proc = launch(tmp_path, save_every=100)  # no periodic checkpoint before the signal
    wait_for_step(proc, tmp_path, 3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert f"stopped by {sig.name}" in err

    result = json.loads((tmp_path / "result.json").read_text())
    reached = result["step"]
    assert result["interrupted"] and 3 <= reached < STEPS
    assert logged_steps(tmp_path) == list(range(1, reached + 1))
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / f"step_{reached:06d}"

    trainer = resume_to_end(tmp_path, save_every=100)
    assert trainer.step == reached
    rest = trainer.fit()
    assert rest.step == STEPS and not rest.interrupted
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.csv")]
    assert logged_steps(tmp_path) == list(range(1, STEPS + 1))
    assert losses == pytest.approx(reference, rel=0, abs=1e-7)


def test_kill_9_then_resume_loses_at_most_save_every_steps(tmp_path, reference):
    save_every = 4
    proc = launch(tmp_path, save_every=save_every)
    wait_for_step(proc, tmp_path, 10)
    proc.kill()  # SIGKILL: no handler, no last checkpoint
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    last_logged = logged_steps(tmp_path)[-1]
    trainer = resume_to_end(tmp_path, save_every=save_every)
    kept = trainer.step
    assert kept % save_every == 0 and 0 <= last_logged - kept <= save_every
    assert kept >= 8
    trainer.fit()
    # rows logged after the checkpoint were dropped and redone: each step once, same curve
    assert logged_steps(tmp_path) == list(range(1, STEPS + 1))
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.csv")]
    assert losses == pytest.approx(reference, rel=0, abs=1e-7)
