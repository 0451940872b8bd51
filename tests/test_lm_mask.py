"""The token-LM mask builder against a per-(i, j) definition, and its NTP special case."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kinema.errors import KinemaError
from kinema.lm import block_causal_mask


def brute_force(prefix_len: int, num_blocks: int, block_len: int, valid=None) -> torch.Tensor:
    """The definition, one (query i, key j) pair at a time."""
    n = prefix_len + num_blocks * block_len
    out = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            if i < prefix_len:
                ok = j < prefix_len  # the prefix sees the prefix only
            elif j < prefix_len:
                ok = True  # every block sees the prefix
            else:  # earlier blocks and its own block
                ok = (j - prefix_len) // block_len <= (i - prefix_len) // block_len
            if valid is not None and j < prefix_len and not valid[j] and i != j:
                ok = False  # padding keys are invisible (a padding slot sees itself)
            out[i, j] = ok
    return out


@settings(max_examples=60, deadline=None)
@given(
    prefix_len=st.integers(0, 6),
    num_blocks=st.integers(0, 5),
    block_len=st.integers(1, 4),
)
def test_mask_matches_definition(prefix_len, num_blocks, block_len):
    mask = block_causal_mask(prefix_len, num_blocks, block_len)
    assert mask.dtype == torch.bool
    assert torch.equal(mask, brute_force(prefix_len, num_blocks, block_len))


@settings(max_examples=40, deadline=None)
@given(
    prefix_len=st.integers(1, 6),
    num_blocks=st.integers(1, 4),
    block_len=st.integers(1, 4),
    data=st.data(),
)
def test_mask_with_prefix_padding_matches_definition(prefix_len, num_blocks, block_len, data):
    rows = data.draw(
        st.lists(
            st.lists(st.booleans(), min_size=prefix_len, max_size=prefix_len),
            min_size=1,
            max_size=3,
        )
    )
    valid = torch.tensor(rows, dtype=torch.bool)
    mask = block_causal_mask(prefix_len, num_blocks, block_len, prefix_valid=valid)
    n = prefix_len + num_blocks * block_len
    assert mask.shape == (len(rows), 1, n, n)
    for b, row in enumerate(rows):
        assert torch.equal(mask[b, 0], brute_force(prefix_len, num_blocks, block_len, row))
    assert mask.any(-1).all()  # no empty row (SDPA would return NaN)


@pytest.mark.parametrize("prefix_len, n", [(0, 7), (3, 5), (5, 1)])
def test_block_len_one_is_prefix_lm_causal(prefix_len, n):
    size = prefix_len + n
    causal = torch.ones(size, size, dtype=torch.bool).tril()
    causal[:prefix_len, :prefix_len] = True  # bidirectional prefix
    assert torch.equal(block_causal_mask(prefix_len, n, 1), causal)


def test_blocks_are_bidirectional_inside():
    mask = block_causal_mask(2, 3, 4)
    assert mask[2:6, 2:6].all() and not mask[2:6, 6:].any() and mask[6:10, 2:10].all()
    assert not mask[:2, 2:].any()  # the prefix never sees the video


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(KinemaError, match="block_len >= 1"):
        block_causal_mask(2, 3, 0)
    with pytest.raises(KinemaError, match=r"prefix_valid must be \(B, 2\)"):
        block_causal_mask(2, 3, 1, prefix_valid=torch.ones(1, 3, dtype=torch.bool))
