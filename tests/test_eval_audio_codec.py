"""`kinema eval audio-codec`: the SNR and click scores of a codec's reconstruction."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from kinema.audio import AudioCodec
from kinema.audio import preset as codec_preset
from kinema.cli import app
from kinema.data.physics_audio import PhysicsAudioVisualDataset
from kinema.eval.audio_codec import evaluate_audio_codec

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


class StubCodec(torch.nn.Module):
    """``encode`` keeps the waveform itself; ``decode`` returns it times ``gain``."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = gain
        self.config = SimpleNamespace(sample_rate=16_000)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def encode(self, wave):
        return wave

    def decode(self, codes, length=None):
        return codes[..., :length] * self.gain


def rows(results) -> dict[str, tuple]:
    return {s.metric: (s.model, s.ceiling) for s in results.scores}


def true_clicks(n: int) -> int:
    data = PhysicsAudioVisualDataset(
        scenario="collision", split="id", length=n, num_frames=17, cond_frames=1, seed=1000,
        video=False,
    )  # fmt: skip
    return sum(data[i]["num_events"] for i in range(n))


def test_a_perfect_codec_scores_the_truth_and_a_silent_one_nothing():
    n = 6
    clicks = true_clicks(n)
    assert clicks >= n  # every collision clip clicks
    perfect = rows(evaluate_audio_codec(StubCodec(1.0), n=n, batch=4))
    assert perfect["reconstruction SNR (dB)"][0] > 100
    for what in ("matched", "missed", "extra"):
        model, ceiling = perfect[f"clicks {what} (count)"]
        assert model == ceiling
    assert perfect["clicks matched (count)"] == (clicks, clicks)
    silent = rows(evaluate_audio_codec(StubCodec(0.0), n=n, batch=4))
    assert silent["reconstruction SNR (dB)"][0] == pytest.approx(0.0, abs=1e-6)
    assert silent["clicks matched (count)"][0] == 0
    assert silent["clicks missed (count)"][0] == clicks
    assert math.isnan(silent["click-timing error of matched clicks (ms)"][0])
    # half the amplitude: error = signal / 4, so 10 log10(4) dB; the clicks all survive
    half = rows(evaluate_audio_codec(StubCodec(0.5), n=n, batch=4))
    assert half["reconstruction SNR (dB)"][0] == pytest.approx(10 * math.log10(4), abs=1e-3)
    assert half["clicks matched (count)"][0] == clicks


def test_cli_scores_a_saved_codec_and_refuses_bad_input(tmp_path):
    torch.manual_seed(0)
    folder = AudioCodec(codec_preset("tiny")).save_pretrained(tmp_path / "codec")
    out = tmp_path / "eval.json"
    res = runner.invoke(
        app,
        ["eval", "audio-codec", "--model", str(folder), "--n", "3", "--threads", "1",
         "--json", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "reconstruction SNR" in res.output
    saved = json.loads(out.read_text())
    assert saved["metric"] == "audio-codec" and len(saved["scores"]) == 5
    matched = {s["metric"]: s for s in saved["scores"]}["clicks matched (count)"]
    assert matched["ceiling"] == true_clicks(3)
    res = runner.invoke(app, ["eval", "audio-codec", "--model", str(tmp_path / "none")])
    assert res.exit_code != 0
    assert "neither a folder nor a shipped model" in str(res.exception or res.output)
