"""A real ``torchrun --nproc_per_node=2`` FSDP2 run on CPU (gloo) against a 1-process run.

Both see the same global batch of 8 per step (1 process: 4 x 2 accum; 2 processes:
2 x 2 accum each), so their losses agree up to float summation order. The 2-process run
is split at step 7 and resumed from its checkpoint by a new trainer (distributed resume),
then its final checkpoint is loaded in this single process with ``from_pretrained``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from kinema.train import Trainer

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import train_tiny  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).parent / "scripts" / "train_tiny.py"
RUN = dict(steps=12, batch_size=8, grad_accum=2, ema_decay=0.9, save_every=5)
LOSS_TOL = 1e-5  # measured ~3e-7: same math, different reduction order


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_fsdp2_two_processes_match_one_process(tmp_path):
    out2 = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes=1", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        str(SCRIPT), "--out", str(out2), "--result", str(out2 / "result.json"),
        "--steps", str(RUN["steps"]), "--batch-size", str(RUN["batch_size"]),
        "--grad-accum", str(RUN["grad_accum"]), "--ema", str(RUN["ema_decay"]),
        "--save-every", str(RUN["save_every"]), "--resume-after", "7", "--bf16-check",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    two = json.loads((out2 / "result.json").read_text())
    assert two["world_size"] == 2 and two["steps"] == list(range(1, 13))
    assert "resumed from" in proc.stderr and "at step 7" in proc.stderr

    # the same run in this one process
    out1 = tmp_path / "one"
    model = train_tiny.build(0)
    one = Trainer(
        model, train_tiny.ToySequences(64), train_tiny.make_config(out1, progress=False, **RUN)
    ).fit()
    ref = [r["loss"] for r in one.history]
    diff = max(abs(a - b) for a, b in zip(ref, two["losses"], strict=True))
    print(f"max |loss(1 proc) - loss(2 procs)| over 12 steps = {diff:.3g}")
    assert diff < LOSS_TOL, (ref, two["losses"])
    assert ref[-1] < ref[0] - 0.3  # it did learn

    # the 2-process checkpoint is an ordinary ModelMixin folder
    folder = out2 / "checkpoints" / "step_000012"
    loaded = train_tiny.TinyLM.from_pretrained(folder)
    weight_diff = max(
        (loaded.state_dict()[k] - v).abs().max().item() for k, v in model.state_dict().items()
    )
    assert weight_diff < 1e-5
    state = json.loads((folder / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert (out2 / "checkpoints" / "step_000007").is_dir()  # where the run was split
    for name in ("ema.safetensors", "optimizer.safetensors"):
        a, b = load_file(folder / name), load_file(out1 / "checkpoints" / "step_000012" / name)
        assert a.keys() == b.keys()
        assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5, name

    # bf16 autocast under FSDP2 on CPU runs and stays close to fp32
    bf16 = two["bf16_losses"]
    assert len(bf16) == 2 and abs(bf16[0] - ref[0]) < 0.05
