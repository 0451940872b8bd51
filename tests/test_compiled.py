"""InferenceCompiled: torch.compile with Inductor freezing gives the eager module's outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from kinema.nn.compiled import InferenceCompiled

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from flow_testing import randomized  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_compiled_dit_matches_eager_at_two_stages():
    model = randomized(text_dim=0)
    compiled = InferenceCompiled(model)
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([700.0, 250.0])
    with torch.inference_mode():
        for side in (8, 16):  # two stage shapes: two graphs
            x = torch.randn(2, 4, side, side, generator=g)
            eager = model(x, t)
            assert eager.abs().mean() > 1e-3
            torch.testing.assert_close(compiled(x, t), eager, rtol=1e-4, atol=1e-5)
    # frozen weights are baked in: the module itself is not modified
    assert all(p.dtype == torch.float32 for p in model.parameters())
