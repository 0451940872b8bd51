"""`kinema bench`: every benchmark is reachable from the CLI and parses its own options."""

import importlib
import inspect
import subprocess
import sys

import pytest

from kinema.bench import BENCHMARKS, describe, run_benchmark
from kinema.errors import KinemaError


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_benchmark_has_main_and_docstring(name):
    module = importlib.import_module(BENCHMARKS[name])
    assert module.__doc__ and module.__doc__.strip()
    assert list(inspect.signature(module.main).parameters) == ["argv"]
    assert name in describe()


def test_unknown_benchmark_is_a_one_line_error():
    with pytest.raises(KinemaError, match="unknown benchmark 'nope'; valid: decode"):
        run_benchmark("nope", [])


def test_cli_forwards_options_to_the_benchmark():
    out = subprocess.run(
        [sys.executable, "-m", "kinema.cli", "bench", "decode", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "--sizes" in out.stdout and "--repeats" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "kinema.cli", "bench", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "unknown benchmark" in bad.stderr
