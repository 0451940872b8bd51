"""`kinema eval physics`: a folder of videos + meta.jsonl (ground truth scores its floor, a
slowed copy does not), a tiny untrained token LM / flow model end to end, one-clip-per-sample
conditioning in generate_video, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kinema.cli import app, main
from kinema.errors import KinemaError
from kinema.eval.physics_eval import EVAL_SEED, evaluate_physics_model
from kinema.io import read_video, write_video
from kinema.sample.video import generate_video, load_model

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from flow_testing import randomized, tiny_tokenizer  # noqa: E402
from lm_testing import build  # noqa: E402

runner = CliRunner()
ROW_KEYS = {
    "scenario",
    "split",
    "detector",
    "error",
    "floor",
    "clips",
    "clips_scored",
    "intervals",
    "dropped",
    "missed",
    "floor_intervals",
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """6 ground-truth clips (2 per scenario) of 17 x 64 x 64 written by `kinema data make`."""
    out = tmp_path_factory.mktemp("phys") / "gt"
    args = ["data", "make", "physics", "--n", "6", "--out", str(out), "--seed", "3"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory) -> Path:
    """An untrained tiny token LM (1 given + 1 generated latent frame of 8 x 8) with its
    tiny FSQ tokenizer: 5 x 32 x 32 videos, the first frame given."""
    model = tmp_path_factory.mktemp("lm") / "model"
    lm = build(latent_shape=(1, 8, 8), vocab_size=125, block_shape=(1, 2, 8), cond_frames=1)
    lm.save_pretrained(model)
    tiny_tokenizer(model / "tokenizer", fsq_levels=(5, 5, 5))
    return model


def test_folder_of_ground_truth_scores_the_floor(clips, tmp_path):
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["eval", "physics", "--videos", str(clips), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "| scenario | split | detector | error | ground-truth floor |" in res.output
    r = json.loads(out.read_text())
    assert r["cond_frames"] == 5 and r["dt"] == pytest.approx(0.1)  # from meta.jsonl
    assert r["source"]["videos"] == str(clips)
    rows = {(x["scenario"], x["detector"]): x for x in r["rows"]}
    assert len(rows) == 6 and all(set(x) == ROW_KEYS for x in r["rows"])
    for (_, det), x in rows.items():
        assert x["split"] == "id" and x["clips"] == 2 and x["missed"] == 0 and x["intervals"] > 0
        # lossless mp4 decodes to the render: the error is the floor (DATA.md: ~0.02 at 64)
        assert x["error"] == pytest.approx(x["floor"], abs=1e-3)
        assert x["error"] < (0.04 if det == "alpha" else 0.3)


def test_folder_of_slowed_videos_scores_its_error(clips, tmp_path):
    """Each frame k shifted k pixels right: 1 pixel (10/64 units) per 0.1 s = 1.5625 units/s
    faster than the truth wherever the ball stays in view."""
    slow = tmp_path / "shifted"
    slow.mkdir()
    shutil.copy(clips / "meta.jsonl", slow / "meta.jsonl")
    for f in clips.glob("*.mp4"):
        v = read_video(f)
        shifted = np.full_like(v, 255)
        for k in range(len(v)):
            shifted[k, :, k:] = v[k, :, : v.shape[2] - k]
        write_video(slow / f.name, shifted, fps=10, lossless=True)
    out = tmp_path / "r.json"
    args = ["eval", "physics", "--videos", str(slow), "--detector", "alpha", "--json", str(out)]
    res = runner.invoke(app, [*args, "--scenario", "uniform"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(out.read_text())["rows"]
    assert row["scenario"] == "uniform" and row["floor"] < 0.04
    assert row["error"] > 1.0 and row["error"] > 20 * row["floor"]


def test_model_mode_end_to_end_with_a_token_lm(lm_folder, tmp_path):
    out = tmp_path / "lm.json"
    args = ["eval", "physics", "--model", str(lm_folder), "--scenario", "uniform", "--n", "3"]
    res = runner.invoke(app, [*args, "--batch", "2", "--threads", "1", "--json", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["cond_frames"] == 1  # the LM's one given latent frame = 1 video frame
    assert r["source"]["seed"] == EVAL_SEED and r["source"]["n"] == 3
    assert r["source"]["frames"] == 5 and r["source"]["resolution"] == [32, 32]
    keys = [(x["split"], x["detector"]) for x in r["rows"]]
    assert keys == [("id", "alpha"), ("id", "threshold"), ("ood", "alpha"), ("ood", "threshold")]
    for x in r["rows"]:
        assert set(x) == ROW_KEYS and x["clips"] == 3 and x["scenario"] == "uniform"
        # intervals 1..3 of every clip: scored, lost by the untrained model, or dropped
        assert x["intervals"] + x["missed"] + x["dropped"] == 3 * 3
        assert x["floor"] is not None and x["floor_intervals"] > 0


def test_saved_continuations_rescore_to_the_same_figures_and_show_in_the_report(
    lm_folder, tmp_path
):
    saved, out = tmp_path / "generated", tmp_path / "lm.json"
    args = ["eval", "physics", "--model", str(lm_folder), "--scenario", "collision", "--n", "2"]
    res = runner.invoke(app, [*args, "--save-videos", str(saved), "--json", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["source"]["videos"] == str(saved)
    files = sorted(p.name for p in saved.glob("*.mp4"))
    assert files == [f"collision_{s}_{i:05d}.mp4" for s in ("id", "ood") for i in range(2)]
    metas = [json.loads(line) for line in (saved / "meta.jsonl").read_text().splitlines()]
    assert [m["file"] for m in metas] == files and all(m["cond_frames"] == 1 for m in metas)
    assert read_video(saved / files[0]).shape == (5, 32, 32, 3)  # given frame + generated
    again = tmp_path / "again.json"
    res = runner.invoke(app, ["eval", "physics", "--videos", str(saved), "--json", str(again)])
    assert res.exit_code == 0, res.output
    rows = json.loads(again.read_text())["rows"]
    assert len(rows) == len(r["rows"]) == 4
    for a, b in zip(r["rows"], rows, strict=True):  # lossless files: the same frames
        assert {k: a[k] for k in ROW_KEYS - {"error", "floor"}} == {
            k: b[k] for k in ROW_KEYS - {"error", "floor"}
        }
        for k in ("error", "floor"):
            assert (a[k] is None and b[k] is None) or a[k] == pytest.approx(b[k], abs=1e-9)
    page = tmp_path / "report.html"
    res = runner.invoke(app, ["eval", "report", str(out), "--out", str(page)])
    assert res.exit_code == 0, res.output
    html = page.read_text()
    assert html.count("data:image/png") >= 4 and files[0] in html  # sample frames shown
    res = runner.invoke(app, ["eval", "physics", "--videos", str(saved), "--save-videos", "x"])
    assert "--save-videos: options of --model" in str(res.exception)


def test_model_mode_with_a_flow_model(tmp_path):
    folder = tmp_path / "flow"
    randomized(latent_channels=4, frames=2, resolution=8, text_dim=0).save_pretrained(folder)
    tiny_tokenizer(folder / "tokenizer", quantizer="kl", kl_channels=4)
    fast = dict(steps=[1, 1, 1], video_steps=[1, 1, 1])
    seen = []
    r = evaluate_physics_model(
        folder, scenario="parabola", split="id", n=2, cond_frames=1, on_batch=seen.append, **fast
    )
    assert seen == [2] and r.cond_frames == 1 and len(r.rows) == 2
    assert all(x.clips == 2 and x.intervals + x.missed + x.dropped == 2 * 3 for x in r.rows)
    with pytest.raises(KinemaError, match=r"cond_frames must be 1 \+ 4k"):
        evaluate_physics_model(folder, n=1, cond_frames=2, **fast)
    with pytest.raises(KinemaError, match=r"cond_frames must be in \[1, 3\]"):
        evaluate_physics_model(folder, n=1, **fast)  # the default 5 needs longer clips


def test_generate_video_takes_one_conditioning_clip_per_sample(lm_folder):
    net, tok = load_model(lm_folder)
    rng = np.random.default_rng(0)
    given = rng.integers(0, 256, (2, 1, 32, 32, 3), dtype=np.uint8)
    both = generate_video((net, tok), 2, video=given, seed=1, temperature=0)
    for i in range(2):
        one = generate_video((net, tok), 1, video=given[i], seed=1, temperature=0)
        # row i was conditioned on clip i: the same video up to the uint8 rounding of a
        # decoder whose fp32 convolutions round a little differently at batch 2 and 1
        diff = np.abs(both[i].astype(int) - one[0].astype(int))
        assert diff.max() <= 1 and diff.mean() < 1e-3
    assert np.abs(both[0].astype(int) - both[1].astype(int)).mean() > 10
    with pytest.raises(KinemaError, match=r"video must be uint8 \(T, H, W, 3\) or \(2, T"):
        generate_video((net, tok), 2, video=np.concatenate([given, given[:1]]))


def test_lm_with_other_cond_frames_is_refused(lm_folder):
    with pytest.raises(KinemaError, match="conditioned on 1 frames .1 latent frames., got cond"):
        evaluate_physics_model(lm_folder, n=1, cond_frames=5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--videos", "{tmp}"], "has no meta.jsonl"),
        (["--videos", "{tmp}/nope"], "is not a folder"),
        (["--model", "{tmp}/nope"], "is neither a folder nor a shipped model"),
        (["--model", "m", "--videos", "{tmp}"], "give either --model PATH or --videos DIR"),
        ([], "give either --model PATH or --videos DIR"),
        (["--videos", "{clips}", "--batch", "4"], "--batch: options of --model, not --videos"),
        (["--videos", "{clips}", "--split", "test"], "unknown split 'test'; allowed: all, id"),
        (["--videos", "{clips}", "--cond-frames", "16"], r"cond_frames must be in [1, 15]"),
        (["--videos", "{clips}", "--detector", "x"], "unknown detector 'x'"),
        (["--videos", "{broken}"], "lists 1 missing videos, e.g. 'clip_000000.mp4'"),
        (["--videos", "{clips}", "--split", "ood"], "lists no clips of scenario all and split ood"),
        (["--model", "{lm}", "--n", "1", "--cond-frames", "5"], "conditioned on 1 frames"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    clips, lm_folder, tmp_path, monkeypatch, capsys, args, message
):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in clips.iterdir():  # all but the first clip
        if f.name != "clip_000000.mp4":
            shutil.copy(f, broken / f.name)
    names = {"tmp": tmp_path, "clips": clips, "broken": broken, "lm": lm_folder}
    argv = ["kinema", "eval", "physics", *[a.format(**names) for a in args]]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
