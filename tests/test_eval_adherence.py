"""Text adherence: prompt parsing, colour unmixing, initial-motion estimation, rendered
shapes / physics clips scored against their own captions (high) and swapped ones (low),
and `kinema eval adherence` on a folder `kinema data make` writes."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from kinema.cli import app, main
from kinema.data.physics import PhysicsDataset, caption
from kinema.data.toys import ShapesDataset
from kinema.errors import KinemaError
from kinema.eval.adherence import (
    PromptSpec,
    color_weights,
    detect,
    evaluate_adherence,
    initial_velocity,
    parse_prompt,
)
from kinema.io import to_uint8

runner = CliRunner()


@pytest.mark.parametrize(
    ("prompt", "spec"),
    [
        ("a red square moves up-left", (("red",), "up-left")),
        ("a cyan digit 3 moves down", (("cyan",), "down")),
        (
            "a large red ball moving right hits a small blue ball moving left",
            (("red", "blue"), "right"),
        ),
        ("a tiny red ball is thrown to the left and falls", (("red",), "left")),
        ("A Magenta Triangle moves Down-Right!", (("magenta",), "down-right")),
        ("a cat", ((), None)),
    ],
)
def test_parse_prompt(prompt, spec):
    assert parse_prompt(prompt) == PromptSpec(*spec)


def test_colour_unmixing_keeps_edges_and_two_objects_apart():
    """Pink (red half-blended into white) is red, not magenta; a red and a blue blob on white
    are two objects, not one purple one; a grey pixel is no palette colour."""
    frame = np.full((1, 8, 8, 3), 255, np.uint8)
    frame[0, 1, 1] = (255, 120, 120)  # anti-aliased red edge on white
    frame[0, 2:4, 2:4] = (255, 0, 0)
    frame[0, 5:7, 5:7] = (0, 0, 255)
    frame[0, 0, 7] = (128, 128, 128)
    w = color_weights(frame)  # (1, 8, 8, 6): red, green, blue, yellow, cyan, magenta
    assert w.shape == (1, 8, 8, 6) and ((w > 0).sum(-1) <= 1).all()
    assert w[0, 1, 1, 0] > 0.5 and w[0, 1, 1, 5] == 0
    assert w[0, 2:4, 2:4, 0].min() == 1 and w[0, 5:7, 5:7, 2].min() == 1
    assert w[0, 0, 7].sum() == 0 and w[..., [1, 3, 4]].sum() == 0


def test_initial_velocity_cuts_at_the_bounce_and_fits_the_parabola():
    t = np.arange(12, dtype=np.float64)
    bounce = np.stack([np.minimum(t, 6 - (t - 6)) * 2.0, np.full_like(t, 5.0)], -1)
    np.testing.assert_allclose(initial_velocity(bounce, window=12), [2.0, 0.0], atol=1e-9)
    fall = np.stack([3.0 * t, 0.4 * t**2], -1)  # starts horizontally, accelerates down
    np.testing.assert_allclose(initial_velocity(fall), [3.0, 0.0], atol=1e-9)
    late = np.vstack([np.full((3, 2), np.nan), fall[:5]])  # enters the view at frame 3
    np.testing.assert_allclose(initial_velocity(late), [3.0, 0.0], atol=1e-9)
    assert initial_velocity(np.full((5, 2), np.nan)) is None


def test_detect_on_an_empty_video():
    found = detect(np.zeros((5, 16, 16, 3), np.uint8))
    assert found.colors == {} and found.dominant is None and found.direction is None


def shapes_clips(n: int, seed: int = 3) -> tuple[list[str], list[np.ndarray]]:
    ds = ShapesDataset(n, 32, 17, seed=seed)
    items = [ds[i] for i in range(n)]
    return [it["caption"] for it in items], [to_uint8(it["video"]) for it in items]


def test_shapes_with_their_own_captions_adhere_and_swapped_ones_do_not():
    prompts, videos = shapes_clips(24)
    own = evaluate_adherence(prompts, videos)
    assert own.clips == own.color_clips == own.direction_clips == own.both_clips == 24
    assert own.color == 1.0
    # ~5% of the toys bounce within their first frame interval and move against their
    # caption from the start: the ground-truth ceiling is about 95%
    assert own.direction >= 0.85 and own.both == own.direction
    swapped = evaluate_adherence(prompts[1:] + prompts[:1], videos)
    assert swapped.color <= 0.35 and swapped.direction <= 0.35 and swapped.both <= 0.15
    item = own.items[0]
    assert item.colors == [item.detected_colors[0]] and item.color_match
    assert item.prompt == prompts[0] and item.file == "video 0"


def test_physics_ground_truth_adheres_including_two_ball_collisions():
    ds = PhysicsDataset("all", "id", 12, 64, 17)
    clips = [ds.frames(i) for i in range(12)]
    res = evaluate_adherence([caption(t) for _, t in clips], [v for v, _ in clips])
    assert res.color == 1.0 and res.direction >= 11 / 12
    collisions = [it for it in res.items if len(it.colors) == 2]
    assert collisions and all(set(it.detected_colors) == {"red", "blue"} for it in collisions)


def test_mismatched_counts_are_refused():
    prompts, videos = shapes_clips(2)
    with pytest.raises(KinemaError, match="3 prompts but a different number of videos"):
        evaluate_adherence([*prompts, "x"], videos)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Eight shapes clips + meta.jsonl written by `kinema data make`."""
    out = tmp_path_factory.mktemp("adh") / "shapes"
    args = ["data", "make", "shapes", "--n", "8", "--resolution", "32", "--out", str(out)]
    res = runner.invoke(app, [*args, "--seed", "4"])
    assert res.exit_code == 0, res.output
    return out


def test_cli_adherence_on_a_data_make_folder(folder, tmp_path):
    out = tmp_path / "adh.json"
    res = runner.invoke(app, ["eval", "adherence", "--videos", str(folder), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "| colour | direction | both | clips |" in res.output
    r = json.loads(out.read_text())
    assert r["metric"] == "adherence" and r["clips"] == 8 and r["color"] == 1.0
    assert r["direction"] >= 0.75 and r["source"]["videos"] == str(folder)
    assert [it["file"] for it in r["items"]] == [f"clip_{i:06d}.mp4" for i in range(8)]
    # a captions file with the prompts rotated by one: the folder no longer adheres
    meta = [json.loads(x) for x in (folder / "meta.jsonl").read_text().splitlines()]
    lines = [
        json.dumps({"file": str((folder / m["file"]).resolve()), "caption": p["caption"]})
        for m, p in zip(meta, meta[1:] + meta[:1], strict=True)
    ]
    (tmp_path / "swapped.jsonl").write_text("\n".join(lines))
    args = [
        "eval",
        "adherence",
        "--videos",
        str(folder),
        "--captions",
        str(tmp_path / "swapped.jsonl"),
    ]
    res = runner.invoke(app, [*args, "--n", "6", "--json", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["clips"] == 6 and r["both"] <= 0.34


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--videos", "{tmp}/nope"], "'{tmp}/nope' is not a folder"),
        (["--videos", "{tmp}/bare"], "no video in '{tmp}/bare' has a caption"),
        (["--videos", "{tmp}/empty"], "'{tmp}/empty' has no video files"),
        (["--videos", "{folder}", "--n", "0"], "--n must be at least 1, got 0"),
        (["--videos", "{folder}", "--captions", "{tmp}/none.jsonl"], "captions file '{tmp}/none"),
    ],
)
def test_cli_adherence_bad_input_exits_2_with_one_line(
    folder, tmp_path, monkeypatch, capsys, args, message
):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "clip.mp4").write_bytes((folder / "clip_000000.mp4").read_bytes())
    names = {"tmp": tmp_path, "folder": folder}
    monkeypatch.setattr(
        sys, "argv", ["kinema", "eval", "adherence", *[a.format(**names) for a in args]]
    )
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message.format(**names) in err and len(err.splitlines()) == 1, err
