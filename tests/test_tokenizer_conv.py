"""CausalConv3d: front replicate padding, causality, streaming == one-shot."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kinema.tokenizer import CausalConv3d, DepthToSpaceUpsample, streaming


def test_front_replicate_padding_matches_explicit_construction():
    conv = CausalConv3d(2, 3, 3)
    x = torch.randn(1, 2, 5, 6, 6)
    padded = torch.cat([x[:, :, :1], x[:, :, :1], x], dim=2)  # kt - 1 = 2 copies of frame 0
    expected = F.conv3d(padded, conv.conv.weight, conv.conv.bias, padding=(0, 1, 1))
    out = conv(x)
    assert out.shape == (1, 3, 5, 6, 6)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_time_stride_two_maps_1_plus_2k_frames_to_1_plus_k():
    conv = CausalConv3d(2, 2, 3, stride=2, time_stride=2)
    for k in range(4):
        assert conv(torch.randn(1, 2, 1 + 2 * k, 8, 8)).shape == (1, 2, 1 + k, 4, 4)


@pytest.mark.parametrize("time_stride", [1, 2])
def test_output_frame_never_sees_future_frames(time_stride):
    conv = CausalConv3d(2, 2, 3, time_stride=time_stride)
    x = torch.randn(1, 2, 9, 4, 4)
    base = conv(x)
    for j in range(9):
        y = x.clone()
        y[:, :, j] += 1.0
        out = conv(y)
        first_affected = (j + time_stride - 1) // time_stride  # outputs i with i*s >= j
        torch.testing.assert_close(out[:, :, :first_affected], base[:, :, :first_affected])
        assert (out[:, :, first_affected] - base[:, :, first_affected]).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("kernel", "time_stride", "chunks"),
    [
        (3, 1, [1, 1, 3, 4]),
        (3, 1, [4, 5]),
        (1, 1, [2, 7]),
        ((5, 3, 3), 1, [1, 2, 6]),
        (3, 2, [3, 2, 4]),  # chunk edges need not align with the stride
        (3, 2, [1, 4, 4]),
    ],
)
def test_streaming_equals_one_shot(kernel, time_stride, chunks):
    conv = CausalConv3d(3, 4, kernel, time_stride=time_stride)
    x = torch.randn(2, 3, sum(chunks), 5, 7)
    full = conv(x)
    with streaming(conv):
        edges = torch.tensor([0, *chunks]).cumsum(0).tolist()
        parts = [conv(x[:, :, a:b]) for a, b in zip(edges, edges[1:], strict=False)]
    torch.testing.assert_close(torch.cat(parts, dim=2), full, rtol=0, atol=1e-5)
    assert conv._cache is None and not conv.streaming  # the context cleans up


def test_depth_to_space_drops_extra_frames_of_first_latent_and_streams():
    up = DepthToSpaceUpsample(4, 2, time_factor=2, space_factor=2)
    z = torch.randn(1, 4, 4, 3, 3)
    full = up(z)
    assert full.shape == (1, 2, 1 + 2 * 3, 6, 6)
    with streaming(up):
        parts = [up(z[:, :, :1]), up(z[:, :, 1:3]), up(z[:, :, 3:])]
    assert [p.shape[2] for p in parts] == [1, 4, 2]
    torch.testing.assert_close(torch.cat(parts, 2), full, rtol=0, atol=1e-5)


def test_depth_to_space_starts_as_nearest_upsampling():
    # ICNR init: every sub-position of a latent cell gets the same value before training
    up = DepthToSpaceUpsample(3, 2, time_factor=2, space_factor=2)
    out = up(torch.randn(1, 3, 2, 2, 2))
    cell = out[0, :, 1:3, 0:2, 0:2]  # frames of latent 1, top-left latent cell
    torch.testing.assert_close(cell, cell[:, :1, :1, :1].expand_as(cell))


@pytest.mark.parametrize("stride,time_stride", [(1, 1), (2, 1), (2, 2)])
def test_single_frame_fast_path_equals_the_3d_conv(stride, time_stride):
    conv = CausalConv3d(4, 6, 3, stride=stride, time_stride=time_stride).double()
    x = torch.randn(2, 4, 1, 9, 9, dtype=torch.double)
    # the 3D definition: kt - 1 replicas of the frame in front of it
    ref = conv.conv(torch.cat([x, x, x], dim=2))
    torch.testing.assert_close(conv(x), ref)
    y = conv(x)
    y.sum().backward()  # gradients flow through the summed kernel
    assert conv.conv.weight.grad is not None and conv.conv.weight.grad.abs().sum() > 0
