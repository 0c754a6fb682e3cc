"""Winograd 3 x 3 convolution (`p3m.models.winograd`) against the direct convolution, and its use
in the fast path's `FusedConv2d`.

The reference is the direct convolution in float64; Winograd in float32 must agree within a
small multiple of float32 rounding relative to the output's range (about 1e-6 for F(2x2, 3x3),
1e-5 for F(4x4, 3x3), see the module docstring).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from p3m.models import winograd
from p3m.models.fast_ops import FusedConv2d
from p3m.models.winograd import MIN_PIXELS, WinogradConv3x3, winograd_matrices, winograd_tile

RELATIVE_TOLERANCE = {2: 2e-6, 4: 5e-5}


@pytest.fixture(autouse=True)
def cores_free(monkeypatch):
    """The tests check the Winograd arithmetic: never fall back for a busy test machine."""
    import p3m.models.fast_ops as fast_ops

    monkeypatch.setattr(fast_ops, "cores_oversubscribed", lambda: False)


def case(batch: int, channels: int, out_channels: int, height: int, width: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, height, width, generator=generator)
    weight = torch.randn(out_channels, channels, 3, 3, generator=generator) / (3 * channels**0.5)
    bias = 0.1 * torch.randn(out_channels, generator=generator)
    residual = torch.randn(batch, out_channels, height, width, generator=generator)
    return x, weight, bias, residual


def reference(x, weight, bias, activation=None, residual=None) -> torch.Tensor:
    y = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(), padding=1)
    if residual is not None:
        y = y + residual.double()
    return F.relu(y) if activation == "relu" else y


def assert_close(result: torch.Tensor, expected: torch.Tensor, m: int) -> None:
    scale = float(expected.abs().max())
    error = float((result.double() - expected).abs().max())
    assert error <= RELATIVE_TOLERANCE[m] * scale, f"F({m}) error {error:.2e} of range {scale:.2e}"


@pytest.mark.parametrize("m", [2, 4])
def test_transform_matrices_reproduce_a_1d_convolution(m: int) -> None:
    bt, g, at = winograd_matrices(m)
    generator = torch.Generator().manual_seed(m)
    d, w = torch.randn(m + 2, generator=generator, dtype=torch.float64), torch.randn(3, generator=generator, dtype=torch.float64)
    direct = torch.stack([(d[i : i + 3] * w).sum() for i in range(m)])
    torch.testing.assert_close(at @ ((g @ w) * (bt @ d)), direct)


# (batch, C, K, H, W): square and not, odd sizes needing padded tiles, wider than the band.
SHAPES = [(1, 8, 16, 16, 16), (2, 16, 8, 13, 10), (1, 5, 7, 9, 31), (1, 4, 4, 3, 3), (1, 16, 24, 70, 66)]


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_winograd_equals_direct_convolution(m: int, shape, monkeypatch) -> None:
    batch, channels, out_channels, height, width = shape
    if height > 32:  # large inputs run in bands of tile rows: make every band one row
        monkeypatch.setattr(winograd, "_BAND_BYTES", 1)
    x, weight, bias, residual = case(batch, channels, out_channels, height, width)
    conv = WinogradConv3x3(weight, bias, m)
    for memory_format in (torch.contiguous_format, torch.channels_last):
        xm = x.contiguous(memory_format=memory_format)
        rm = residual.contiguous(memory_format=memory_format)
        with torch.inference_mode():
            plain = conv(xm)
            relu = conv(xm, "relu")
            added = conv(xm, "relu", rm)
            added_linear = conv(xm, None, rm)
        assert plain.shape == (batch, out_channels, height, width)
        assert plain.is_contiguous(memory_format=torch.channels_last)
        assert_close(plain, reference(x, weight, bias), m)
        assert_close(relu, reference(x, weight, bias, "relu"), m)
        assert_close(added, reference(x, weight, bias, "relu", residual), m)
        assert_close(added_linear, reference(x, weight, bias, None, residual), m)
    no_bias = WinogradConv3x3(weight, None, m)
    with torch.inference_mode():
        assert_close(no_bias(x), reference(x, weight, None), m)


def test_winograd_rejects_what_it_cannot_compute() -> None:
    with pytest.raises(ValueError, match="3 x 3"):
        WinogradConv3x3(torch.zeros(4, 4, 5, 5), None)
    with pytest.raises(ValueError, match="tile"):
        WinogradConv3x3(torch.zeros(4, 4, 3, 3), None, 3)
    conv = WinogradConv3x3(torch.zeros(4, 4, 3, 3), None)
    with pytest.raises(ValueError, match="input channels"):
        conv(torch.zeros(1, 5, 8, 8))
    with pytest.raises(ValueError, match="activation"):
        conv(torch.zeros(1, 4, 8, 8), "sigmoid")


def test_tile_choice_by_channels() -> None:
    assert winograd_tile(64, 64) is None and winograd_tile(64, 256) is None
    assert winograd_tile(128, 128) == 4 and winograd_tile(384, 256) == 4
    assert winograd_tile(512, 512) == 2 and winograd_tile(256, 512) == 2


def fused(conv: torch.nn.Conv2d, activation: str | None) -> FusedConv2d:
    return FusedConv2d(conv, None, activation, channels_last=True)


@pytest.mark.parametrize("m", [2, 4])
def test_fused_conv_uses_winograd_where_enabled(m: int) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(12, 20, 3, padding=1).eval()
    direct, winograd = fused(conv, "relu"), fused(conv, "relu")
    assert winograd.enable_winograd(m) and winograd.winograd.m == m
    assert "winograd=F" in repr(winograd)
    residual_conv_direct, residual_conv = fused(conv, None), fused(conv, None)
    assert residual_conv.enable_winograd(m)
    x, _, _, residual = case(2, 12, 20, 18, 22, seed=3)
    x = x.contiguous(memory_format=torch.channels_last)
    residual = residual.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = direct(x)
        result = winograd(x)
        expected_add = residual_conv_direct.add_relu(x, residual)
        result_add = residual_conv.add_relu(x, residual)
        # Below MIN_PIXELS the direct convolution runs: the same result, bit for bit.
        small = x[..., :4, :4].contiguous(memory_format=torch.channels_last)
        assert small.shape[-1] * small.shape[-2] < MIN_PIXELS
        assert torch.equal(winograd(small), direct(small))
    assert not torch.equal(result, expected)  # it did run the Winograd arithmetic
    assert_close(result, expected.double(), m)
    assert_close(result_add, expected_add.double(), m)
    # Traced (ONNX export), the module records the plain convolution.
    traced = torch.jit.trace(winograd, x[:1])
    assert any(node.kind() == "aten::_convolution" for node in traced.graph.nodes())


def test_winograd_only_for_eligible_convolutions() -> None:
    eligible = fused(torch.nn.Conv2d(128, 128, 3, padding=1).eval(), None)
    assert eligible.enable_winograd()
    for conv, activation in (
        (torch.nn.Conv2d(64, 64, 3, padding=1), None),  # too narrow to pay
        (torch.nn.Conv2d(128, 128, 3, padding=1, stride=2), None),
        (torch.nn.Conv2d(128, 128, 3, padding=2, dilation=2), None),
        (torch.nn.Conv2d(128, 128, 1), None),
        (torch.nn.Conv2d(128, 128, 3, padding=1, groups=2), None),
        (torch.nn.Conv2d(128, 128, 3, padding=1), "sigmoid"),
    ):
        assert not fused(conv.eval(), activation).enable_winograd(), conv


def test_busy_cores_fall_back_to_the_direct_convolution(monkeypatch) -> None:
    import p3m.models.fast_ops as fast_ops

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(12, 20, 3, padding=1).eval()
    direct, fast = fused(conv, "relu"), fused(conv, "relu")
    assert fast.enable_winograd(4)
    x = case(1, 12, 20, 24, 24, seed=5)[0].contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(fast_ops, "cores_oversubscribed", lambda: True)
    with torch.inference_mode():
        assert torch.equal(fast(x), direct(x))
    # The decision itself: load average against the usable CPUs, read at most once a second.
    monkeypatch.undo()
    cpus = len(__import__("os").sched_getaffinity(0))
    for load, busy in ((cpus + 3.0, True), (float(cpus), False)):
        monkeypatch.setattr(winograd.os, "getloadavg", lambda load=load: (load, load, load))
        monkeypatch.setitem(winograd._load_state, "at", float("-inf"))
        assert winograd.cores_oversubscribed() is busy

