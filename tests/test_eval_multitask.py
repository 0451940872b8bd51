"""Per-task checks of a multitask model (`kinema eval multitask`): the metrics against
direct definitions, and a run over every task of a tiny (barely trained) model."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from kinema.audio import AudioCodec
from kinema.audio import preset as codec_preset
from kinema.cli import app
from kinema.data import PhysicsDataset
from kinema.data.physics import WORLD
from kinema.eval.multitask import (
    ball_stats,
    edge_counts,
    evaluate_multitask,
    f1_of,
    latent_to_pixel_mask,
    psnr_of,
    reconstruct,
    region_mse,
)
from kinema.eval.physics_eval import DT, EVAL_SEED, evaluate_physics_model
from kinema.lm.superres import SuperResTransformer
from kinema.lm.superres_config import preset as sr_preset
from kinema.tokenizer import Tokenizer

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from flow_testing import tiny_tokenizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
TASKS = "t2v:1,i2v:1,continuation:1,inpaint:1,outpaint:1,stylize:edges:1,v2a:1"


def invoke(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


# ---------------------------------------------------------------------- metrics
def test_latent_mask_maps_to_the_pixels_of_a_causal_tokenizer():
    g = torch.Generator().manual_seed(0)
    hidden = torch.rand(2, 3, 4, 5, generator=g) > 0.5  # (B, t, h, w)
    frames, ft, fs = 9, 4, 2
    out = latent_to_pixel_mask(hidden, ft, fs, frames)
    assert out.shape == (2, frames, 8, 10)
    for f in range(frames):
        k = 0 if f == 0 else (f + ft - 1) // ft  # frame 0 alone; then ft frames per latent
        for y in range(8):
            for x in range(10):
                assert torch.equal(out[:, f, y, x], hidden[:, k, y // fs, x // fs])


def test_region_psnr_is_the_psnr_of_the_region_only():
    x = torch.zeros(1, 3, 2, 4, 4)
    y = x.clone()
    region = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    region[:, :, :2] = True
    y[:, :, :, :2] = 0.2  # error 0.2 inside, none outside
    sse, count = region_mse(x, y, region)
    assert count == 3 * 2 * 2 * 4 and sse == pytest.approx(count * 0.04)
    assert psnr_of(sse, count) == pytest.approx(10 * math.log10(4 / 0.04))
    assert psnr_of(*region_mse(x, y, ~region)) == math.inf
    assert math.isnan(psnr_of(0.0, 0))


def test_edge_f1_with_and_without_tolerance():
    ref = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    ref[..., 4] = True  # a vertical line
    shifted = ref.roll(1, dims=-1)
    assert f1_of(edge_counts(ref, ref)) == 1.0
    assert f1_of(edge_counts(shifted, ref, tolerance=1)) == 1.0
    assert f1_of(edge_counts(shifted, ref, tolerance=0)) == 0.0
    half = ref.clone()
    half[..., 4:, 4] = False  # recall 1/2, precision 1: F1 2/3
    assert f1_of(edge_counts(half, ref, tolerance=0)) == pytest.approx(2 / 3)
    assert f1_of(edge_counts(torch.zeros_like(ref), ref)) == 0.0


def test_ball_stats_measure_the_rendered_ball():
    ds = PhysicsDataset("uniform", "id", 2, 64, 9, seed=0)
    frames, traj = ds.frames(0)
    radius, rgb = ball_stats(frames)
    want = traj.radii[0] * 64 / WORLD  # pixels
    assert np.nanmean(radius) == pytest.approx(want, rel=0.15)
    assert np.all(rgb[:, 0] > 150) and np.all(rgb[:, 1:] < 100)  # a red ball
    blank = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    r, c = ball_stats(blank)
    assert np.isnan(r).all() and np.isnan(c).all()


# ---------------------------------------------------------------------- a tiny model
@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Path:
    """5 x 32 x 32 clips -> 2 x 8 x 8 tokens (16 x 16 -> 2 x 4 x 4) of 125 codes."""
    return tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tok", fsq_levels=(5, 5, 5))


@pytest.fixture(scope="module")
def model(tok, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    codec = AudioCodec(codec_preset("tiny")).save_pretrained(
        tmp_path_factory.mktemp("codec") / "codec"
    )
    shards = tmp_path_factory.mktemp("shards") / "shards"
    invoke(
        "tokenizer", "encode", "physics", "--n", 4, "--tokenizer", tok, "--resolution", 32,
        "--frames", 5, "--controls", "edges", "--audio-codec", codec, "--audio-frames", 8,
        "--threads", 1, "--out", shards,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("run") / "run"
    invoke(
        "train", "lm", "--data", shards, "--tokenizer", tok, "--preset", "tiny", "--block",
        "1x2x4", "--tasks", TASKS, "--set", "max_text_len=16", "--steps", 3,
        "--batch-size", 2, "--warmup", 1, "--threads", 1, "--out", out,
    )  # fmt: skip
    return out / "model"


@pytest.fixture(scope="module")
def sr_folder(tok, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    sr = SuperResTransformer(sr_preset("tiny", lr_vocab_size=125, hr_vocab_size=125))
    folder = sr.save_pretrained(tmp_path_factory.mktemp("sr") / "sr")  # (2, 4, 4) -> (2, 8, 8)
    for sub in ("lr_tokenizer", "hr_tokenizer"):
        Tokenizer.from_pretrained(tok).save_pretrained(folder / sub)
    return folder


@pytest.fixture(scope="module")
def results(model, sr_folder):
    return evaluate_multitask(model, n=3, batch=2, sr_model=sr_folder, long_times=2, long_n=2)


def by_task(results) -> dict[str, list]:
    out: dict[str, list] = {}
    for s in results.scores:
        out.setdefault(s.task, []).append(s)
    return out


def test_every_task_is_scored(results):
    tasks = by_task(results)
    assert set(tasks) == {
        "continuation", "t2v", "inpaint", "outpaint", "stylize:edges", "v2a",
        "super-resolution 2x", "long video (13 frames = 2.6x the clip)",
    }  # fmt: skip
    assert len(tasks["continuation"]) == 3  # one velocity error per scenario
    assert len(tasks["v2a"]) == 4 and len(tasks["inpaint"]) == 2
    md = results.markdown()
    assert md.count("\n") == len(results.scores) + 1 and "| stylize:edges | edge F1" in md
    json.dumps(results.to_dict())  # JSON-serialisable


def test_masked_ceiling_is_the_tokenizers_reconstruction(results, tok):
    from kinema.data.physics_audio import PhysicsAudioVisualDataset
    from kinema.lm.tasks import default_mask

    inside, outside = by_task(results)["inpaint"]
    assert "inside" in inside.metric and "outside" in outside.metric
    clips = PhysicsAudioVisualDataset(PhysicsDataset("all", "id", 3, 32, 5, 0.1, 1, 1000))
    video = torch.stack([clips[i]["video"] for i in range(3)])
    rec = reconstruct(Tokenizer.from_pretrained(tok).eval(), video)
    hidden = latent_to_pixel_mask(default_mask("inpaint", (2, 8, 8)), 4, 4, 5).expand(3, 5, 32, 32)
    assert inside.ceiling == pytest.approx(psnr_of(*region_mse(rec, video, hidden)))
    assert outside.ceiling == pytest.approx(psnr_of(*region_mse(rec, video, ~hidden)))


@pytest.mark.parametrize("task", ["inpaint", "outpaint"])
def test_masked_psnr_scores_each_region(task, model, monkeypatch):
    """A stand-in model that returns the clip with the hidden pixels set to 0: perfect
    outside the mask, the clip's own PSNR against zeros inside."""
    from kinema.eval import multitask
    from kinema.lm.tasks import default_mask
    from kinema.sample.extend import ChainResult

    hidden = latent_to_pixel_mask(default_mask(task, (2, 8, 8)), 4, 4, 5)  # (5, 32, 32)
    seen = []

    def fake_chain(self, steps, clips, text):
        seen.append(clips.video)
        out = clips.video.clone()
        out[:, :, hidden] = 0.0
        return ChainResult(video=out)

    monkeypatch.setattr(multitask._Run, "_chain", fake_chain)
    inside, outside = evaluate_multitask(model, tasks=[task], n=3, batch=2).scores
    video = torch.cat(seen)
    region = hidden.expand(3, *hidden.shape)
    assert outside.model == math.inf
    assert inside.model == pytest.approx(
        psnr_of(*region_mse(torch.zeros_like(video), video, region))
    )


def test_superres_is_compared_with_bicubic(results, tok):
    sr, sr_tok = by_task(results)["super-resolution 2x"]
    # an untrained SR model is far below bicubic; bicubic below the tokenizer's ceiling? no:
    # the tiny untrained tokenizer is worse than bicubic, so only the model's rank is asserted
    assert sr.model < sr.chance and sr.n == 3
    assert 10 < sr.chance < 60
    # the second baseline: bicubic of the low-res clips' tokenizer reconstruction (the SR's
    # input), brute force per frame on the same held-out clips
    assert (sr_tok.model, sr_tok.ceiling) == (sr.model, sr.ceiling)
    low = PhysicsDataset("all", "id", 3, 16, 5, DT, 1, EVAL_SEED)
    high = PhysicsDataset("all", "id", 3, 32, 5, DT, 1, EVAL_SEED)
    tokenizer = Tokenizer.from_pretrained(tok).eval()
    sse = count = 0.0
    for i in range(3):
        with torch.no_grad():
            rec = tokenizer.reconstruct(low[i]["video"][None]).float()[0]  # (3, 5, 16, 16)
        frames = F.interpolate(rec.transpose(0, 1), scale_factor=2, mode="bicubic")
        err = frames.clamp(-1, 1).transpose(0, 1) - high[i]["video"]
        sse, count = sse + float((err.double() ** 2).sum()), count + err.numel()
    assert sr_tok.chance == pytest.approx(10 * math.log10(4 / (sse / count)), abs=1e-3)
    assert sr_tok.chance != pytest.approx(sr.chance, abs=0.1)


def test_v2a_rows_count_the_clicks(results):
    rows = {s.metric: s for s in by_task(results)["v2a"]}
    matched = rows["clicks matched (count)"]
    missed = rows["clicks missed (count)"]
    # the true clicks of a clip are matched or missed: the same total for every source
    assert matched.model + missed.model == matched.chance + missed.chance
    assert matched.ceiling + missed.ceiling == matched.model + missed.model


def test_physics_eval_runs_the_continuation_task(model):
    res = evaluate_physics_model(model, scenario="uniform", split="id", n=2, batch=2)
    assert res.cond_frames == 1  # default_given of a 2-latent-frame clip: 1 frame given
    assert {r.detector for r in res.rows} == {"alpha", "threshold"}


def test_cli_writes_json(model, tmp_path):
    out = tmp_path / "mt.json"
    invoke("eval", "multitask", "--model", model, "--tasks", "inpaint", "--n", 2, "--json", out)
    data = json.loads(out.read_text())
    assert data["metric"] == "multitask" and [s["task"] for s in data["scores"]] == ["inpaint"] * 2


def test_refuses_tasks_it_cannot_score(model, tok):
    from kinema.errors import KinemaError

    with pytest.raises(KinemaError, match="cannot be scored"):
        evaluate_multitask(model, tasks=["a2v"], n=1)
    with pytest.raises(KinemaError, match="holds a tokenizer"):
        evaluate_multitask(tok, n=1)
