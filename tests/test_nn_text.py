import pytest
import torch

from kinema.errors import KinemaError
from kinema.nn import TextSlots

B, TEXT_DIM, DIM, MAX_LEN = 3, 6, 8, 5


@pytest.fixture
def slots() -> TextSlots:
    torch.manual_seed(0)
    return TextSlots(TEXT_DIM, DIM, MAX_LEN, init_std=0.02)


def test_init_is_normal_with_the_given_std_and_zero_bias():
    torch.manual_seed(0)
    m = TextSlots(64, 128, 4, init_std=0.5)
    assert m.proj.weight.std().item() == pytest.approx(0.5, rel=0.05)
    assert torch.all(m.proj.bias == 0)
    assert m.null.shape == (128,)
    assert m.null.std().item() == pytest.approx(0.5, rel=0.25)


def test_null_text_is_the_learned_vector_in_slot_0_only(slots):
    x, valid = slots(B)
    assert x.shape == (B, MAX_LEN, DIM) and valid.shape == (B, MAX_LEN)
    assert torch.equal(x[:, 0], slots.null.expand(B, -1))
    assert torch.all(x[:, 1:] == 0)
    assert valid[:, 0].all() and not valid[:, 1:].any()
    x2, valid2 = slots.unconditional(B)
    assert torch.equal(x, x2) and torch.equal(valid, valid2)


def test_text_is_projected_and_padded_with_invalid_slots(slots):
    text = torch.randn(B, 3, TEXT_DIM)
    mask = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])
    x, valid = slots(B, text, mask)
    assert torch.allclose(x[:, :3], slots.proj(text))
    assert torch.all(x[:, 3:] == 0)
    assert torch.equal(valid[:, :3], mask) and not valid[:, 3:].any()
    _, all_valid = slots(B, text)
    assert all_valid[:, :3].all() and not all_valid[:, 3:].any()


def test_drop_swaps_in_the_null_text_per_row(slots):
    text = torch.randn(B, MAX_LEN, TEXT_DIM)
    drop = torch.tensor([False, True, False])
    x, valid = slots(B, text, drop=drop)
    null_x, null_valid = slots.unconditional(B)
    full_x, full_valid = slots(B, text)
    assert torch.equal(x[1], null_x[1]) and torch.equal(valid[1], null_valid[1])
    assert torch.equal(x[[0, 2]], full_x[[0, 2]]) and valid[[0, 2]].all()


def test_gradients_reach_the_projection_and_the_null(slots):
    x, _ = slots(B, torch.randn(B, 2, TEXT_DIM), drop=torch.tensor([True, False, False]))
    x.sum().backward()
    assert slots.proj.weight.grad.abs().sum() > 0
    assert slots.null.grad.abs().sum() > 0


def test_bf16_weights_take_fp32_text(slots):
    slots = slots.to(torch.bfloat16)
    x, _ = slots(B, torch.randn(B, 2, TEXT_DIM), drop=torch.tensor([True, False, False]))
    assert x.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"text": torch.randn(B, 2, TEXT_DIM + 1)}, r"text must be \(B=3, L, 6\)"),
        ({"text": torch.randn(B + 1, 2, TEXT_DIM)}, r"text must be \(B=3, L, 6\)"),
        ({"text": torch.randn(B, 2)}, r"text must be"),
        ({"text": torch.randn(B, MAX_LEN + 1, TEXT_DIM)}, "6 tokens; max_text_len is 5"),
        (
            {"text": torch.randn(B, 2, TEXT_DIM), "text_mask": torch.ones(B, 3, dtype=torch.bool)},
            r"text_mask must have shape \(3, 2\)",
        ),
        ({"text_mask": torch.ones(B, 2, dtype=torch.bool)}, "text_mask given without text"),
        (
            {"text": torch.randn(B, 2, TEXT_DIM), "drop": torch.zeros(B + 1, dtype=torch.bool)},
            r"drop must have shape \(3,\)",
        ),
    ],
)
def test_bad_inputs_are_one_line_errors(slots, kwargs, match):
    with pytest.raises(KinemaError, match=match):
        slots(B, **kwargs)
