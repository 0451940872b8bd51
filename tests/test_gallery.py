"""`kinema gallery` on tiny random model folders: valid GIFs per method and prompt, a
gallery.md linking them, a line for each method without a model, one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kinema import hub
from kinema.cli import app, main
from kinema.gallery import GALLERY_PROMPTS, make_gallery
from kinema.io import probe

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from model_folders import flow_folder, lm_folder  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _nothing_shipped(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "SHIPPED", tmp_path / "shipped")


def test_gallery_writes_gifs_and_markdown(tmp_path, caplog):
    ntp = lm_folder(tmp_path / "ntp", block=(1, 1, 1))
    out = tmp_path / "docs" / "gallery"
    page, items = make_gallery(out, [f"ntp={ntp}"], link_prefix="docs/gallery")
    assert [it.file for it in items] == ["ntp-0.gif", "ntp-1.gif"]
    # the LM reads no text but continues frames: the physics prompt becomes a held-out clip
    # with that caption (1 given frame + 4 generated); the shapes prompt has no such clip
    assert [(it.frames, it.given) for it in items] == [(5, 1), (1, None)]
    for it in items:
        info = probe(out / it.file, count=True)
        assert (info.width, info.height, info.frames) == (32, 32, it.frames)
    md = page.read_text()
    assert page == out / "gallery.md"
    for prompt in GALLERY_PROMPTS:
        assert f'"{prompt}"' in md
    assert "![ntp: " in md and "(docs/gallery/ntp-0.gif)" in md and "(docs/gallery/ntp-1.gif)" in md
    assert "| ntp (`ntp`) |" in md and "the first 1 of a physics clip so captioned" in md
    assert "1 frames, unconditional (reads no text)" in md
    assert "- pyramid-flow: no model shipped yet" in md and "- nbp: no model shipped yet" in md
    assert "no nbp model" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == ["gallery.md", "ntp-0.gif", "ntp-1.gif"]


def test_gallery_cli_with_a_text_model(tmp_path, monkeypatch):
    flow = flow_folder(tmp_path / "flow", text=True)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["gallery", "--out", "g", "--model", f"pyramid-flow={flow}"])
    assert res.exit_code == 0, res.output
    assert "wrote 2 GIFs and g/gallery.md" in res.output
    md = (tmp_path / "g" / "gallery.md").read_text()
    assert "(g/pyramid-flow-0.gif)<br>5 frames, " in md and "reads no text" not in md
    assert probe(tmp_path / "g" / "pyramid-flow-1.gif").width == 32


def test_bad_model_spec_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["kinema", "gallery", "--out", str(tmp_path), "--model", "x"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert "--model must be METHOD=PATH" in err and "got 'x'" in err
    assert not (tmp_path / "gallery.md").exists()


def test_prompt_clip_has_the_prompt_as_caption(tmp_path):
    from kinema.data.physics import PhysicsDataset, caption
    from kinema.gallery import CLIP_SEARCH, CLIP_SEED, prompt_clip
    from kinema.sample.video import load_model

    lm = load_model(lm_folder(tmp_path / "nbp"))
    clip = prompt_clip(lm, "a large red ball moves right steadily")
    ds = PhysicsDataset("uniform", "id", CLIP_SEARCH, 32, 5, cond_frames=1, seed=CLIP_SEED)
    match = [
        i
        for i in range(CLIP_SEARCH)
        if caption(ds.trajectory(i)) == "a large red ball moves right steadily"
    ]
    assert clip.shape == (1, 32, 32, 3) and (clip == ds.frames(match[0])[0][:1]).all()
    assert prompt_clip(lm, "a blue square moves up") is None
    assert prompt_clip(load_model(flow_folder(tmp_path / "flow", text=True)), "x") is None
