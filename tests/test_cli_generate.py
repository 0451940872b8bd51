"""`kinema generate` with a positional prompt, --format, --grid, --image and the method
check; `kinema models list`; one-line errors for bad options and for no shipped model."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kinema import cli, hub
from kinema.cli import app, main
from kinema.flow import PyramidDiT
from kinema.io import probe, read_video

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from model_folders import flow_folder, lm_folder  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "flow": flow_folder(root / "flow", text=True),
        "nbp": lm_folder(root / "nbp"),
        "ntp": lm_folder(root / "ntp", block=(1, 1, 1)),
    }


def one_line_error(monkeypatch, capsys, *args: str) -> str:
    """Run `kinema ARGS` through main(): exit code 2 and a one-line message."""
    monkeypatch.setattr(sys, "argv", ["kinema", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    return err


def test_positional_prompt_gif_grid(folders, tmp_path):
    out = tmp_path / "clip.mp4"
    res = runner.invoke(
        app,
        ["generate", "a red ball moves to the left", "--model", str(folders["flow"])]
        + ["--format", "gif", "--grid", "2", "--steps", "1", "--video-steps", "1"]
        + ["--out", str(out), "--seed", "4"],
    )
    assert res.exit_code == 0, res.output
    gif = tmp_path / "clip.gif"  # --format replaces the suffix
    assert f"wrote {gif}" in " ".join(res.output.split()) and not out.exists()
    info = probe(gif, count=True)
    # two 32 x 32 videos side by side with 2-pixel padding
    assert (info.frames, info.width, info.height) == (5, 70, 36)
    frames = read_video(gif)
    left, right = frames[:, 2:34, 2:34], frames[:, 2:34, 36:68]
    assert (left != right).any()  # two samples, not one twice


def test_image_to_video_default_out(folders, tmp_path, monkeypatch):
    from PIL import Image

    Image.new("RGB", (48, 40), (200, 30, 30)).save(tmp_path / "first.png")
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(
        app, ["generate", "--model", str(folders["nbp"]), "--method", "nbp", "--image", "first.png"]
    )
    assert res.exit_code == 0, res.output
    assert probe(tmp_path / "kinema_out.mp4", count=True).frames == 5


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        (
            "ntp",
            ["--method", "nbp"],
            "holds a next-token (ntp, 1x1x1 block) token-LM model, not nbp",
        ),
        ("nbp", ["--method", "ntp"], "not ntp; use --method nbp or auto"),
        ("flow", ["--grid", "17"], "n must be in [1, 16], got 17"),
        ("flow", ["--frames", "400"], "frames must be in [1, 257], got 400"),
        ("flow", ["--guidance", "50"], "guidance must be in [0.0, 20.0], got 50.0"),
        ("flow", ["--steps", "0"], "steps must be integers in [1, 200] (per stage), got 0"),
        ("flow", ["--fps", "0"], "--fps must be in [1, 120], got 0.0"),
        ("flow", ["--format", "avi"], "--format must be one of mp4, webm, gif, got 'avi'"),
        ("flow", ["--out", "x.avi"], "--out must end in .mp4, .webm, .gif"),
        ("flow", ["--top-k", "3"], "--top-k: not an option of pyramid-flow models"),
        ("nbp", ["--steps", "3"], "--steps: not an option of token-lm models"),
        ("nbp", ["a prompt", "--prompt", "another"], "give the prompt once"),
    ],
)
def test_bad_options_exit_2_with_one_line(folders, monkeypatch, capsys, model, extra, message):
    err = one_line_error(monkeypatch, capsys, "generate", "--model", str(folders[model]), *extra)
    assert message in err


def test_no_shipped_model_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hub, "SHIPPED", tmp_path / "none")
    err = one_line_error(monkeypatch, capsys, "generate", "a red ball moves to the left")
    assert "kinema ships none of flow-small, lm-physics-nbp, lm-physics-ntp yet" in err
    assert "recipes/" in err


def test_models_list(folders, tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "SHIPPED", tmp_path)
    monkeypatch.setattr(cli.console, "width", 250)  # keep each row on one line
    res = runner.invoke(app, ["models", "list"])
    assert res.exit_code == 0 and "no models shipped yet" in res.output, res.output
    flow = shutil.copytree(folders["flow"], tmp_path / "flow-small")
    (tmp_path / "lm-physics-ntp").symlink_to(folders["ntp"])
    (tmp_path / "tokenizer-tiny").symlink_to(folders["ntp"] / "tokenizer")
    card = {"data": "physics 6 clips", "quality": "random weights", "recipe": "none"}
    (flow / "card.json").write_text(json.dumps(card))
    res = runner.invoke(app, ["models", "list"])
    assert res.exit_code == 0, res.output
    rows = {line.split()[1]: line for line in res.output.splitlines() if line.startswith("│")}
    assert set(rows) == {"flow-small", "lm-physics-ntp", "tokenizer-tiny"}
    assert "pyramid-flow" in rows["flow-small"] and "physics 6 clips" in rows["flow-small"]
    assert "random weights" in rows["flow-small"] and "token-LM ntp" in rows["lm-physics-ntp"]
    assert "tokenizer" in rows["tokenizer-tiny"]
    summary = hub.summarize_model("flow-small")
    params = sum(p.numel() for p in PyramidDiT.from_pretrained(flow).parameters())
    assert summary.parameters == params and summary.card.recipe == "none"
    assert f"{params / 1e3:.1f}K" in rows["flow-small"]
    (flow / "card.json").write_text(json.dumps({"quality": 3}))
    res = runner.invoke(app, ["models", "list"])
    assert res.exit_code != 0 and "bad field(s) quality" in str(res.exception)
