"""The web demo without a browser: `Demo.run` (the Generate handler) checks every input and
answers bad ones with a `gradio.Error` message; `build_app` builds a queued page."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from kinema import hub
from kinema.app import AppConfig, Demo, build_app
from kinema.errors import KinemaError
from kinema.io import probe, read_video

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from model_folders import flow_folder, lm_folder  # noqa: E402

gr = pytest.importorskip("gradio")  # the `app` extra
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    root = tmp_path_factory.mktemp("app")
    return Demo([flow_folder(root / "flow", text=True), lm_folder(root / "nbp")])


def test_run_writes_a_playable_video_and_reports_the_wall_time(demo):
    assert demo.methods == ["auto", "pyramid-flow", "nbp"]
    reports = []
    path, status = demo.run(
        "a red ball", "auto", 3, 0, 2.0, 1, progress=lambda *r: reports.append(r)
    )
    info = probe(path, count=True)
    assert path.endswith(".webm") and (info.frames, info.width, info.height) == (5, 32, 32)
    assert status.startswith("5 frames of 32x32 in ") and "pyramid-flow: flow, seed 3" in status
    assert reports[-1] == (6, 6)  # 1 step per stage for both latent frames
    again, _ = demo.run("a red ball", "pyramid-flow", 3.0, 0, 2.0, 1)
    assert np.array_equal(read_video(again), read_video(path))  # same seed, same video


def test_uploads_condition_the_video(demo, tmp_path, real_videos):
    from PIL import Image

    firsts = []
    for color in ("red", "blue"):
        Image.new("RGB", (40, 30), color).save(tmp_path / f"{color}.png")
        path, _ = demo.run("", "nbp", 0, 0, 0, 0, image=str(tmp_path / f"{color}.png"))
        firsts.append(read_video(path)[0])
    assert not np.array_equal(*firsts)  # the uploaded first frame is given to the model
    path, _ = demo.run(None, "nbp", 0, 0, 0, 0, video=str(real_videos[2]))
    assert probe(path, count=True).frames == 5


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"frames": 999}, "frames must be in [1, 257], got 999"),
        ({"frames": 9}, "--frames must be 1 + 4k and at most 5"),
        ({"frames": 2.5}, "frames must be a whole number, got 2.5"),
        ({"steps": 51}, "steps must be integers in [1, 50] (per stage), got 51"),
        ({"seed": float("nan")}, "seed must be a whole number, got nan"),
        ({"seed": -3}, "seed must be in"),
        ({"guidance": 21}, "guidance must be in [0.0, 20.0], got 21.0"),
        ({"method": "ntp"}, "method must be one of auto, pyramid-flow, nbp, got 'ntp'"),
        ({"prompt": "x" * 1001}, "prompt has 1001 characters; at most 1000"),
        ({"method": "nbp", "steps": 4}, "token-LM models decode one block per step"),
    ],
)
def test_out_of_range_inputs_are_user_errors(demo, kw, message):
    form = dict(prompt="a ball", method="auto", seed=0, frames=0, guidance=0, steps=1)
    with pytest.raises(gr.Error) as err:
        demo.run(**(form | kw))
    assert message in err.value.message and "\n" not in err.value.message


def test_uploads_are_checked(demo, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 2_100_000)
    from PIL import Image

    wide = tmp_path / "wide.png"
    Image.new("RGB", (3000, 2000)).save(wide)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0" * 1000)
    small = Demo(list(demo.models.values()), AppConfig(max_upload_mb=2.0))
    cases = [
        (dict(image=str(text)), "the image must be a .png, .jpg, .jpeg, .bmp, .webp file"),
        (dict(image=str(big)), "the image is 2.1 MB; at most 2 MB"),
        (dict(image=str(wide)), "the image is 3000x2000; at most 4,194,304 pixels"),
        (dict(video=str(broken)), "cannot decode video"),
    ]
    for upload, message in cases:
        with pytest.raises(gr.Error) as err:
            small.run("a ball", "nbp", **upload)
        assert message in err.value.message, err.value.message


def test_build_app_is_queued_one_job_at_a_time(demo):
    blocks = build_app(list(demo.models.values()), AppConfig(max_queue=3))
    assert isinstance(blocks, gr.Blocks)
    assert blocks._queue.max_size == 3 and blocks._queue.default_concurrency_limit == 1


def test_no_models_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "SHIPPED", tmp_path)
    with pytest.raises(KinemaError, match="kinema ships none of flow-small"):
        Demo()
