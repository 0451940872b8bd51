"""Fréchet distance against closed forms and scipy, feature statistics, the I3D (architecture
size, state-dict / TorchScript loading, never unsafe pickles), FVD end to end with a tiny
randomly initialised I3D, and `kinema eval fvd` with one-line errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import scipy.linalg
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from kinema.cli import app, main
from kinema.data.physics import PhysicsDataset
from kinema.data.toys import ShapesDataset
from kinema.errors import KinemaError
from kinema.eval.fvd import feature_stats, frechet_distance, fvd, preprocess, video_features
from kinema.eval.i3d import I3D, I3DConfig, ScriptedDetector, load_detector
from kinema.io import to_uint8, write_video

runner = CliRunner()
TINY = I3DConfig(width=1 / 16)  # the real layout with 4..24 channels per branch


def random_cov(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    """The textbook formula with scipy's general matrix square root."""
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def test_frechet_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=12), random_cov(rng, 12)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_frechet_of_diagonal_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=7), rng.normal(size=7)
    s1, s2 = rng.uniform(0.1, 3, 7), rng.uniform(0.1, 3, 7)
    want = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(want, rel=1e-10)


def test_frechet_of_full_covariances_matches_scipy_and_is_symmetric():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    s1, s2 = random_cov(rng, 20), 2.0 * random_cov(rng, 20)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(scipy_frechet(mu1, s1, mu2, s2), rel=1e-8)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(got, rel=1e-10)


def test_frechet_with_singular_covariances_stays_finite():
    """Fewer samples than dimensions: rank-deficient covariances, where sqrtm of the product
    is ill-conditioned; the symmetric form still gives a finite, non-negative distance."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 30)), rng.normal(size=(6, 30)) + 0.5
    mu1, s1 = feature_stats(a)
    mu2, s2 = feature_stats(b)
    assert np.linalg.matrix_rank(s1) == 4
    d = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(d) and d > 0
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6)


def test_feature_stats_match_numpy_and_check_shapes():
    x = np.random.default_rng(4).normal(size=(40, 6)).astype(np.float32)
    mu, sigma = feature_stats(x)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12)
    with pytest.raises(ValueError, match=r"N >= 2"):
        feature_stats(x[:1])
    with pytest.raises(ValueError, match="one D"):
        frechet_distance(mu, sigma, mu[:3], sigma)


def test_the_real_i3d_architecture_on_the_meta_device():
    with torch.device("meta"):
        net = I3D()
    assert sum(p.numel() for p in net.parameters()) == 12_697_264
    assert net.feature_dim == 1024 and net.logits.conv3d.weight.shape == (400, 1024, 1, 1, 1)
    keys = set(net.state_dict())
    # the layout of the common PyTorch port of DeepMind's checkpoint
    for k in (
        "Conv3d_1a_7x7.conv3d.weight",
        "Conv3d_1a_7x7.bn.running_var",
        "Mixed_3b.b1b.conv3d.weight",
        "Mixed_5c.b3b.bn.bias",
        "logits.conv3d.bias",
    ):
        assert k in keys
    assert not any(k.startswith("Mixed_4b.b3a") for k in keys)  # the max-pool branch


def test_i3d_shapes_and_frame_minimum(one_thread):
    net = I3D(TINY).eval()
    with torch.inference_mode():
        assert net(torch.zeros(2, 3, 9, 224, 224)).shape == (2, 400)
        assert net.features(torch.zeros(1, 3, 16, 224, 224)).shape == (1, net.feature_dim, 2, 7, 7)
    with pytest.raises(ValueError, match=r"T >= 9"):
        net(torch.zeros(1, 3, 8, 224, 224))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random I3D with non-trivial BatchNorm statistics, saved as safetensors."""
    torch.manual_seed(0)
    net = I3D(TINY).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("i3d") / "i3d.safetensors"
    save_file(net.state_dict(), path)
    return net, path


def test_state_dict_round_trips_load_strictly(tiny, tmp_path, one_thread):
    net, path = tiny
    x = torch.rand(1, 3, 9, 224, 224) * 2 - 1
    with torch.inference_mode():
        want = net(x)
        pt = tmp_path / "i3d.pt"
        torch.save(net.state_dict(), pt)
        for file in (path, pt):
            loaded = load_detector(file)
            assert isinstance(loaded, I3D) and loaded.config == net.config
            torch.testing.assert_close(loaded(x), want)


@pytest.mark.filterwarnings("ignore")  # tracing warns about shape-dependent Python
def test_torchscript_detectors_get_kinema_inputs(tiny, tmp_path, one_thread):
    net, _ = tiny
    x = torch.rand(1, 3, 9, 224, 224) * 2 - 1
    traced = tmp_path / "i3d_traced.pt"
    torch.jit.trace(net, x, check_trace=False).save(str(traced))
    loaded = load_detector(traced)
    assert isinstance(loaded, ScriptedDetector)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), net(x))


def test_detector_files_that_are_refused(tmp_path):
    def refused(path, message):
        with pytest.raises(KinemaError, match=message):
            load_detector(path)

    refused(tmp_path / "none.safetensors", "detector file '.*none.safetensors' does not exist")
    (tmp_path / "i3d.onnx").write_bytes(b"onnx")
    refused(tmp_path / "i3d.onnx", r"unsupported detector file type '\.onnx'")
    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    refused(tmp_path / "other.safetensors", "not an I3D state dict")
    state = I3D(TINY).state_dict()
    state.pop("Mixed_4c.b0.conv3d.weight")
    save_file(state, tmp_path / "partial.safetensors")
    refused(tmp_path / "partial.safetensors", r"1 missing keys \(e.g. Mixed_4c.b0.conv3d")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    refused(tmp_path / "list.pt", "holds a list, not a state dict")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    refused(tmp_path / "junk.safetensors", "not a readable safetensors file")


class Evil:
    def __reduce__(self):
        return (print, ("unpickled",))


def test_pickles_of_python_objects_are_never_unpickled(tmp_path, capsys):
    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(KinemaError, match="weights_only=True"):
        load_detector(tmp_path / "evil.pt")
    assert "unpickled" not in capsys.readouterr().out


def shapes(n: int, seed: int, frames: int = 17) -> list[np.ndarray]:
    ds = ShapesDataset(n, 32, frames, seed=seed)
    return [to_uint8(ds[i]["video"]) for i in range(n)]


def physics(n: int, frames: int = 17) -> list[np.ndarray]:
    ds = PhysicsDataset("uniform", "id", n, 32, frames)
    return [ds.frames(i)[0] for i in range(n)]


def test_preprocess_follows_the_protocol():
    clip = preprocess(shapes(1, 0)[0])
    assert clip.shape == (3, 16, 224, 224) and clip.dtype == torch.float32
    assert -1.0 <= clip.min() and clip.max() <= 1.0
    wide = np.zeros((16, 40, 80, 3), np.uint8)
    wide[:, :, 38:42] = 255  # a centred white column survives the centre crop
    x = preprocess(wide)
    assert x.shape == (3, 16, 224, 224) and x[:, :, :, 112].min() > 0.9 and x[0, 0, 0, 0] == -1
    with pytest.raises(ValueError, match="a 9-frame clip; FVD takes its first 16"):
        preprocess(wide[:9])


def test_fvd_end_to_end_with_a_tiny_i3d(tiny, one_thread, caplog):
    net, _ = tiny
    real = shapes(4, 0)
    same = fvd(real, real, net, batch_size=3)
    assert same.fvd == pytest.approx(0.0, abs=1e-6) and (same.real, same.fake) == (4, 4)
    assert same.frames == 16 and same.features == 400 and same.size == 224
    assert "singular" in caplog.text  # 4 clips, 400 features
    kw = dict(frames=9, batch_size=3)
    feats = [video_features(iter(v), net, **kw) for v in (real, shapes(4, 1), physics(4))]
    assert all(f.shape == (4, 400) and f.dtype == np.float64 for f in feats)
    near, far = (frechet_distance(*feature_stats(feats[0]), *feature_stats(f)) for f in feats[1:])
    assert 0 < near < far  # other shapes are closer than balls on white
    with pytest.raises(KinemaError, match=r"frames must be in \[9, 1024\]"):
        fvd(real, real, net, frames=8)
    with pytest.raises(KinemaError, match="generated clip 0: a 8-frame clip"):
        fvd(real[:2], [real[0][:8]], net, **kw)
    with pytest.raises(KinemaError, match="at least 2 real clips, got 1"):
        fvd(real[:1], real[:2], net, **kw)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Three shapes clips (mp4, gif, webm) and three physics clips (mp4), 17 x 32 x 32."""
    root = tmp_path_factory.mktemp("fvd")
    real, fake = root / "real", root / "fake"
    for i, (clip, ext) in enumerate(zip(shapes(3, 5), ("mp4", "gif", "webm"), strict=True)):
        write_video(real / f"clip_{i}.{ext}", clip, fps=10)
    for i, clip in enumerate(physics(3)):
        write_video(fake / f"clip_{i}.mp4", clip, fps=10)
    (fake / "notes.txt").write_text("not a video")
    return real, fake


def test_cli_fvd_on_two_folders(tiny, folders, tmp_path, one_thread):
    real, fake = folders
    out = tmp_path / "fvd.json"
    args = ["eval", "fvd", "--real", str(real), "--fake", str(fake), "--detector", str(tiny[1])]
    res = runner.invoke(app, [*args, "--device", "cpu", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "| FVD | real clips | generated clips | frames | features |" in res.output
    r = json.loads(out.read_text())
    assert r["metric"] == "fvd" and r["fvd"] > 0
    assert (r["real"], r["fake"], r["frames"], r["features"]) == (3, 3, 16, 400)
    assert r["source"] == {"real": str(real), "fake": str(fake), "detector": str(tiny[1])}
    res = runner.invoke(app, [*args, "--fake", str(real), "--n", "2", "--frames", "9"])
    assert res.exit_code == 0, res.output
    assert "| 0.00 | 2 | 2 | 9 | 400 |" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--detector", "{tmp}/none.safetensors"], "detector file '{tmp}/none.safetensors' does"),
        (["--detector", "{tmp}/i3d.onnx"], "unsupported detector file type '.onnx'"),
        (["--real", "{tmp}/empty"], "'{tmp}/empty' has no video files"),
        (["--real", "{tmp}/nope"], "'{tmp}/nope' is not a folder"),
        (["--real", "{tmp}/one"], "FVD needs at least 2 real clips, '{tmp}/one' has 1"),
        (["--n", "1"], "n must be at least 2 clips per set, got 1"),
        (["--frames", "4"], r"frames must be in [9, 1024] for the I3D, got 4"),
        (["--frames", "20"], "has 17 frames; FVD takes 20 per clip"),
        (["--device", "tpu9"], "unknown device 'tpu9'"),
    ],
)
def test_cli_fvd_bad_input_exits_2_with_one_line(
    tiny, folders, tmp_path, monkeypatch, capsys, args, message
):
    (tmp_path / "empty").mkdir()
    (tmp_path / "i3d.onnx").write_bytes(b"x")
    write_video(tmp_path / "one" / "a.mp4", shapes(1, 0)[0], fps=10)
    base = {"--real": str(folders[0]), "--fake": str(folders[1]), "--detector": str(tiny[1])}
    given = dict(zip(args[::2], [a.format(tmp=tmp_path) for a in args[1::2]], strict=True))
    argv = ["kinema", "eval", "fvd", *[x for kv in {**base, **given}.items() for x in kv]]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message.format(tmp=tmp_path) in err and len(err.splitlines()) == 1, err
