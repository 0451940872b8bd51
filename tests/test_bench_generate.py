"""`kinema bench generate` on tiny random model folders: a row per given method with its
timings and adherence, "not shipped" rows for the others, one-line errors for bad options."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kinema import hub
from kinema.bench import run_benchmark
from kinema.cli import main
from kinema.errors import KinemaError

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from model_folders import flow_folder, lm_folder  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _nothing_shipped(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "SHIPPED", tmp_path / "shipped")


def test_table_has_a_row_per_method(tmp_path, capsys):
    flow = flow_folder(tmp_path / "flow", text=True)
    nbp = lm_folder(tmp_path / "nbp")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# physics\na red ball moves left\n\n")
    argv = ["--model", f"pyramid-flow={flow}", "--model", f"nbp={nbp}", "--seeds", "0,1"]
    run_benchmark("generate", [*argv, "--prompts-file", str(prompts), "--threads", "1"])
    out = capsys.readouterr().out
    assert out.startswith("# ") and "1 prompts" in out.splitlines()[0]
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in out.splitlines()[4:]}
    assert list(rows) == ["pyramid-flow", "nbp", "ntp"]
    flow_row, nbp_row = rows["pyramid-flow"], rows["nbp"]
    assert flow_row[1:3] == ["flow", "1 x 2 seeds"] and flow_row[5] == "5 (32x32)"
    assert float(flow_row[3]) > 0 and float(flow_row[4]) > 0
    # a random text model: the detector ran (a count), whatever it found
    assert flow_row[6].endswith("/2") and flow_row[7].rstrip(" |").endswith("/2")
    # "a red ball moves left" is no physics caption: the LM samples unconditionally
    assert nbp_row[5] == "1 (32x32)" and nbp_row[6] == "- (unconditional)"
    assert rows["ntp"][1] == "lm-physics-ntp: not shipped"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "nbp"], "--model must be METHOD=PATH with METHOD one of pyramid-flow"),
        (["--model", "video=x"], "got 'video=x'"),
        (["--model", "ntp=/no/such/folder"], "neither a folder nor a shipped model"),
        (["--seeds", "a,1"], "--seeds must be integers >= 0"),
        (["--prompts-file", "/no/such.txt"], "--prompts-file '/no/such.txt': cannot read it"),
    ],
)
def test_bad_options_are_one_line_errors(argv, message, monkeypatch, capsys):
    with pytest.raises(KinemaError) as e:
        run_benchmark("generate", argv)
    assert message in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setattr(sys, "argv", ["kinema", "bench", "generate", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and message in err


def test_a_frame_continuing_lm_is_scored_on_its_generated_frames(tmp_path, capsys):
    """A physics caption gives the LM a held-out clip to continue; the detector then scores
    the LM's own frames (a count out of the calls), not the given ones."""
    nbp = lm_folder(tmp_path / "nbp")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a large red ball moves right steadily\n")
    run_benchmark("generate", ["--model", f"nbp={nbp}", "--prompts-file", str(prompts),
                               "--seeds", "0", "--threads", "1"])  # fmt: skip
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| nbp"))
    cells = row.split(" | ")
    assert cells[5] == "5 (32x32)"  # 1 given + 4 generated frames
    assert cells[6].endswith("/1") and cells[7].rstrip(" |").endswith("/1")
