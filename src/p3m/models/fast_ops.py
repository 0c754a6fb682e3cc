"""Inference-only building blocks of the fast P3M-Net path (`p3m.models.optimize_for_inference`).

* `fold_batchnorm`: a convolution followed by an inference-mode BatchNorm becomes one convolution
  (w' = w * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps) + beta, computed in float64).
* `FusedConv2d`: convolution + bias + activation (ReLU, SiLU, sigmoid) in one oneDNN primitive on
  CPU (`torch.ops.mkldnn._convolution_pointwise`, the kernel PyTorch's own compiler emits), with
  an optional fused residual add; plain `F.conv2d` + activation elsewhere (CUDA, tracing for ONNX,
  other dtypes), so the module always computes the same function.
* `FusedLinear`: Linear + exact GELU in one oneDNN primitive (the MLP of the transformer blocks).
* `unpool_settled`: max-unpooling for the ResNet-34 encoder's overlapping 3 x 3 / stride-2 pools
  that gives the reference's "last pooled cell wins" result at any thread count, as fast as
  PyTorch's own `max_unpool2d`: each pooled cell whose index is shared with a later cell (in
  row-major order) first takes that later cell's value, so every write to a contested position
  carries the same value and the write order no longer matters.

Everything here is for inference: no autograd support is intended.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m.models.winograd import MIN_PIXELS, WinogradConv3x3, cores_oversubscribed, winograd_tile

__all__ = [
    "ACTIVATIONS",
    "FusedConv2d",
    "FusedLinear",
    "fold_batchnorm",
    "mkldnn_fusion_available",
    "retain_freed_memory",
    "unpool_nonoverlapping",
    "unpool_settled",
]

logger = logging.getLogger(__name__)

# Activation name -> (oneDNN post-op name, eager function).
ACTIVATIONS = {
    None: ("none", None),
    "relu": ("relu", F.relu),
    "silu": ("swish", F.silu),
    "sigmoid": ("sigmoid", torch.sigmoid),
}

_fusion_state: dict[str, bool] = {}
_fusion_lock = threading.Lock()


def mkldnn_fusion_available() -> bool:
    """True when oneDNN's fused convolution / linear ops exist and agree with the eager ops here.

    Checked once per process on tiny tensors, so a PyTorch build without them (or with a
    behaviour change) silently falls back to the eager ops instead of failing or drifting.
    """
    with _fusion_lock:
        if "ok" not in _fusion_state:
            _fusion_state["ok"] = _check_mkldnn_fusion()
        return _fusion_state["ok"]


def _check_mkldnn_fusion() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        ops = torch.ops.mkldnn
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(1, 8, 6, 5, generator=generator).contiguous(memory_format=torch.channels_last)
        other = torch.randn(1, 8, 6, 5, generator=generator)
        weight = torch.randn(8, 8, 3, 3, generator=generator).contiguous(
            memory_format=torch.channels_last
        )
        bias = torch.randn(8, generator=generator)
        with torch.inference_mode():
            expected = F.conv2d(x, weight, bias, padding=1)
            fused = ops._convolution_pointwise(x, weight, bias, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
            added = ops._convolution_pointwise.binary(
                x, other, weight, bias, [1, 1], [1, 1], [1, 1], 1, "add", None, "relu", [], ""
            )
            tokens = torch.randn(1, 4, 8, generator=generator)
            linear_weight = torch.randn(16, 8, generator=generator)
            linear = ops._linear_pointwise(tokens, linear_weight, None, "gelu", [], "none")
            residual = torch.randn(1, 4, 16, generator=generator)
            linear_add = ops._linear_pointwise.binary(tokens, residual, linear_weight, None, "add")
            ok = (
                torch.allclose(linear_add, F.linear(tokens, linear_weight) + residual, atol=1e-5)
                and torch.allclose(fused, F.relu(expected), atol=1e-5)
                and torch.allclose(added, F.relu(expected + other), atol=1e-5)
                and torch.allclose(linear, F.gelu(F.linear(tokens, linear_weight)), atol=1e-5)
            )
    except Exception as error:  # missing op, unsupported CPU: use the eager ops
        logger.debug("oneDNN fusion unavailable: %s", error)
        return False
    if not ok:
        logger.warning("oneDNN fused ops disagree with the eager ops; using the eager ops")
    return ok


_retained: dict[str, bool] = {}

RETAIN_MEMORY_ENV = "P3M_RETAIN_FREED_MEMORY"


def retain_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    A P3M-Net pass at full resolution allocates gigabytes of activations in blocks above
    glibc's mmap threshold (32 MB at most), so by default every pass maps them afresh and the
    kernel zero-fills them page by page: 15-20 % of a 1056 x 1600 local pass on CPU. With
    mmap disabled for allocations and a 2 GB trim threshold, later passes reuse the memory of
    earlier ones; the process keeps its peak memory instead of returning it between images.
    Process-wide, so applications opt in (`p3m.matte`, `Matter` and the service do when they
    load a P3M-Net by name; `P3M_RETAIN_FREED_MEMORY=0` turns that off). Returns True when
    the setting is in effect (Linux with glibc); elsewhere it does nothing.
    """
    with _fusion_lock:
        if "done" in _retained:
            return _retained["done"]
        _retained["done"] = False
        if os.environ.get(RETAIN_MEMORY_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
            return False
        if not sys.platform.startswith("linux"):
            return False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _ = libc.gnu_get_libc_version  # glibc only (musl has no mallopt semantics like these)
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            return False
        m_trim_threshold, m_mmap_max = -1, -4
        ok = mallopt(m_mmap_max, 0) == 1 and mallopt(m_trim_threshold, 2**31 - 1) == 1
        _retained["done"] = bool(ok)
        logger.debug("glibc malloc keeps freed memory: %s", ok)
        return _retained["done"]


def _fusable(x: Tensor, weight: Tensor) -> bool:
    """Whether a fused oneDNN call may stand in for the plain operator: float32 on the CPU, not
    traced (exports see the plain operators), no autograd, and the fused ops work here."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not torch.jit.is_tracing()
        and not (torch.is_grad_enabled() and x.requires_grad)
        and mkldnn_fusion_available()
    )


def canonical_channels_last(x: Tensor) -> Tensor:
    """`x` itself, or a view of the same memory with a canonical batch stride when `x` is
    channels-last with a batch of 1.

    PyTorch calls a 1 x C x H x W tensor channels-last whatever its batch stride (a size-1
    dimension's stride does not matter), but oneDNN picks its layout from the strides: a token
    grid viewed as a map (`tokens_to_grid`) often has batch stride C, and convolutions then
    write NCHW, so every later concatenation, upsampling and convolution converts layouts.
    """
    if (
        torch.jit.is_tracing()  # exports see no memory layouts
        or x.dim() != 4
        or x.shape[0] != 1
        or not x.is_contiguous(memory_format=torch.channels_last)
    ):
        return x
    _, channels, height, width = x.shape
    strides = (channels * height * width, 1, width * channels, channels)
    if x.stride() == strides:
        return x
    return x.as_strided(x.shape, strides)


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """(weight, bias) of the single convolution equal to `bn(conv(x))` with BN in inference mode."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    weight = conv.weight.detach().double()
    bias = (
        conv.bias.detach().double()
        if conv.bias is not None
        else torch.zeros(weight.shape[0], dtype=torch.float64, device=weight.device)
    )
    scale = torch.rsqrt(bn.running_var.detach().double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -bn.running_mean.detach().double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    dtype = conv.weight.dtype
    folded_weight = weight * scale.view(-1, 1, 1, 1)
    folded_bias = bias * scale + shift
    return folded_weight.to(dtype), folded_bias.to(dtype)


class FusedConv2d(nn.Module):
    """Conv2d (zero padding) + bias + optional activation; see the module docstring.

    Built from an `nn.Conv2d` (optionally with the BatchNorm that follows it folded in).
    `forward(x)` returns act(conv(x)); `add_relu(x, other)` returns relu(conv(x) + other).
    """

    def __init__(
        self,
        conv: nn.Conv2d,
        bn: nn.BatchNorm2d | None = None,
        activation: str | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unsupported activation {activation!r}")
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("only zero-padded convolutions with explicit padding can be fused")
        if bn is not None:
            weight, bias = fold_batchnorm(conv, bn)
        else:
            weight = conv.weight.detach().clone()
            bias = conv.bias.detach().clone() if conv.bias is not None else None
        if channels_last:
            weight = weight.contiguous(memory_format=torch.channels_last)
        self.register_buffer("weight", weight)
        # For 3 x 3 heads to at most 4 channels: 9K x C x 1 x 1 tap weights (see `_head`);
        # output channel (3 * dy + dx) * K + k holds weight[k, :, dy, dx].
        tap_weight = None
        if weight.shape[0] <= 4 and tuple(weight.shape[2:]) == (3, 3):
            tap_weight = weight.permute(2, 3, 0, 1).reshape(-1, weight.shape[1], 1, 1)
            tap_weight = tap_weight.contiguous(memory_format=torch.channels_last)
        self.register_buffer("tap_weight", tap_weight)
        self.register_buffer("bias", bias)
        self.stride = list(conv.stride)
        self.padding = list(conv.padding)
        self.dilation = list(conv.dilation)
        self.groups = int(conv.groups)
        self.activation = activation
        self._post_op, self._act = ACTIVATIONS[activation]
        self.winograd = None

    def enable_winograd(self, tile: int | None = None) -> bool:
        """Compute this convolution by Winograd (`p3m.models.winograd`) on CPU float32 inputs
        of at least `winograd.MIN_PIXELS` pixels, when it is a 3 x 3 / stride 1 / padding 1
        ungrouped convolution with no activation or ReLU. `tile` (2 or 4) forces the algorithm;
        by default `winograd_tile` picks it by channel counts, or leaves layers where it does not
        pay. Returns True when enabled.
        """
        out_channels, in_channels = self.weight.shape[:2]
        if (
            tuple(self.weight.shape[2:]) != (3, 3)
            or self.stride != [1, 1]
            or self.padding != [1, 1]
            or self.dilation != [1, 1]
            or self.groups != 1
            or self.activation not in (None, "relu")
            or self.weight.dtype != torch.float32
        ):
            return False
        tile = tile if tile is not None else winograd_tile(in_channels, out_channels)
        if tile is None:
            return False
        self.winograd = WinogradConv3x3(self.weight, self.bias, tile)
        return True

    def _use_winograd(self, x: Tensor) -> bool:
        return (
            self.winograd is not None
            and self._fusable(x)  # CPU float32, not traced
            and x.shape[-2] * x.shape[-1] >= MIN_PIXELS
            and not cores_oversubscribed()  # then the direct call pays (see its docstring)
        )

    def extra_repr(self) -> str:
        out_channels, in_per_group = self.weight.shape[:2]
        winograd = f", winograd=F({self.winograd.m}x{self.winograd.m},3x3)" if self.winograd else ""
        return (
            f"{in_per_group * self.groups}, {out_channels}, kernel_size={tuple(self.weight.shape[2:])}, "
            f"padding={tuple(self.padding)}, groups={self.groups}, activation={self.activation}{winograd}"
        )

    def _fusable(self, x: Tensor) -> bool:
        return _fusable(x, self.weight)

    def _conv(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def _is_head(self) -> bool:
        """A 3 x 3 / stride 1 / padding 1 convolution to 1-4 channels (the output heads)."""
        return (
            self.tap_weight is not None
            and self.stride == [1, 1]
            and self.padding == [1, 1]
            and self.dilation == [1, 1]
            and self.groups == 1
        )

    def _few_outputs(self, x: Tensor) -> bool:
        """3 x 3 convolutions to 1-4 channels (the heads): a matrix product is much faster."""
        return (
            self._is_head()
            and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.jit.is_tracing()
        )

    def _head_traced(self, x: Tensor) -> Tensor:
        """`_head` in operators an ONNX runtime runs fast: a 1 x 1 convolution to the 9K taps,
        then the sum of nine shifted slices of the zero-padded tap planes.

        onnxruntime computes a 3 x 3 convolution to 1-3 channels padded to a block of 16
        output channels (float) or in a slow generic int8 kernel; the 1 x 1 form does 9x
        less work in its fast kernels. Sizes stay symbolic (any input size).
        """
        k = self.weight.shape[0]
        taps = F.pad(F.conv2d(x, self.tap_weight.to(x.dtype)), (1, 1, 1, 1))
        out = None
        for tap in range(9):
            dy, dx = divmod(tap, 3)
            # rows dy .. dy + H of the H + 2 padded rows: ends counted from the far edge, so
            # the traced slices hold no size
            rows = slice(dy, dy - 2 if dy < 2 else None)
            cols = slice(dx, dx - 2 if dx < 2 else None)
            part = taps[:, tap * k : (tap + 1) * k, rows, cols]
            out = part if out is None else out + part
        if self.bias is not None:
            out = out + self.bias.to(x.dtype).view(1, -1, 1, 1)
        return out if self._act is None else self._act(out)

    def _head(self, x: Tensor) -> Tensor:
        """conv(x) as a 1 x 1 convolution to the 9 taps of every output channel, then a sum of
        the 9 shifted tap planes.

        oneDNN runs a 3 x 3 convolution to one output channel at a few percent of its speed on
        wide layers; the 1 x 1 convolution to 9K channels does the same multiplications at
        several times the speed, and the shifted sum is cheap.
        """
        _, _, height, width = x.shape
        out_channels = self.weight.shape[0]
        tap_weight = self.tap_weight.to(x.dtype)
        if self._fusable(x):
            taps = torch.ops.mkldnn._convolution_pointwise(
                x, tap_weight, None, [0, 0], [1, 1], [1, 1], 1, "none", [], ""
            )
        else:
            taps = F.conv2d(x, tap_weight)
        taps = taps.permute(0, 2, 3, 1)  # N x H x W x 9K, contiguous
        k = out_channels
        out = taps[..., 4 * k : 5 * k].clone()  # the centre tap covers every pixel
        for tap in (0, 1, 2, 3, 5, 6, 7, 8):
            dy, dx = tap // 3 - 1, tap % 3 - 1
            rows_out = slice(max(0, -dy), height - max(0, dy))
            cols_out = slice(max(0, -dx), width - max(0, dx))
            rows_in = slice(max(0, dy), height - max(0, -dy))
            cols_in = slice(max(0, dx), width - max(0, -dx))
            out[:, rows_out, cols_out] += taps[:, rows_in, cols_in, tap * k : (tap + 1) * k]
        if self.bias is not None:
            out += self.bias.to(x.dtype)
        out = out.permute(0, 3, 1, 2)  # N x K x H x W, channels-last memory
        return out if self._act is None else self._act(out)

    def forward(self, x: Tensor) -> Tensor:
        x = canonical_channels_last(x)
        if self._few_outputs(x):
            return self._head(x)
        if torch.jit.is_tracing() and self._is_head():
            return self._head_traced(x)
        if self._use_winograd(x):
            return self.winograd(x, self.activation)
        if self._fusable(x):
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
                self._post_op, [], "",
            )
        y = self._conv(x)
        return y if self._act is None else self._act(y)

    def add_relu(self, x: Tensor, other: Tensor) -> Tensor:
        """relu(conv(x) + other): the end of a ResNet basic block, in one primitive on CPU."""
        if self.activation is not None:
            raise ValueError("add_relu needs a convolution without its own activation")
        if self._use_winograd(x) and other.shape == (x.shape[0], self.weight.shape[0], *x.shape[2:]):
            return self.winograd(x, "relu", other)
        if self._fusable(x) and other.dtype == x.dtype and other.shape[1] == self.weight.shape[0]:
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, other, self.weight, self.bias, self.padding, self.stride, self.dilation,
                self.groups, "add", None, "relu", [], "",
            )
        return F.relu(self._conv(x) + other)


class FusedLinear(nn.Module):
    """Linear + optional exact (erf) GELU, one oneDNN primitive on CPU float32."""

    def __init__(self, linear: nn.Linear, activation: str | None = None) -> None:
        super().__init__()
        if activation not in (None, "gelu"):
            raise ValueError(f"unsupported activation {activation!r}")
        self.register_buffer("weight", linear.weight.detach().clone())
        self.register_buffer(
            "bias", linear.bias.detach().clone() if linear.bias is not None else None
        )
        self.activation = activation

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, activation={self.activation}"

    def _fusable(self, x: Tensor) -> bool:
        return _fusable(x, self.weight)

    def forward(self, x: Tensor) -> Tensor:
        if self._fusable(x):
            return torch.ops.mkldnn._linear_pointwise(
                x, self.weight, self.bias, "gelu" if self.activation else "none", [], "none"
            )
        y = F.linear(x, self.weight, self.bias)
        return F.gelu(y) if self.activation else y

    def add(self, x: Tensor, other: Tensor) -> Tensor:
        """linear(x) + other (a residual connection) in one primitive on CPU."""
        if self.activation is not None:
            raise ValueError("add needs a linear layer without its own activation")
        if self._fusable(x) and other.dtype == x.dtype and other.is_contiguous():
            return torch.ops.mkldnn._linear_pointwise.binary(x, other, self.weight, self.bias, "add")
        return F.linear(x, self.weight, self.bias) + other


def unpool_nonoverlapping(values: Tensor, indices: Tensor, output_size: tuple[int, int]) -> Tensor:
    """Max-unpool after 2 x 2 / stride-2 pools: windows never overlap, so indices never collide
    and PyTorch's kernel is deterministic (Swin-T / ViTAE-S encoders)."""
    return F.max_unpool2d(values, indices, kernel_size=2, stride=2, output_size=output_size)


# Neighbours (row, column offset in the pooled grid) that come later in row-major order and
# whose 3 x 3 / stride-2 window overlaps the cell's own, in increasing row-major order.
_LATER_NEIGHBOURS = ((0, 1), (1, -1), (1, 0), (1, 1))


def settle_collisions(values: Tensor, indices: Tensor) -> Tensor:
    """Values after 3 x 3 / stride-2 / pad-1 pools where each cell that shares its index with a
    later neighbour holds that neighbour's value (the last one, in row-major order).

    Two cells can only share an index if their windows overlap, i.e. if they are neighbours in
    the pooled grid; of the (at most 4) cells that claim one position the last one wins, so
    overwriting in increasing order of the neighbour's position leaves the winner's value.
    """
    settled = values.clone()
    height, width = values.shape[-2:]
    for drow, dcol in _LATER_NEIGHBOURS:
        if drow >= height or abs(dcol) >= width:
            continue
        rows_src, rows_dst = slice(drow, None), slice(0, height - drow)
        if dcol >= 0:
            cols_src, cols_dst = slice(dcol, None), slice(0, width - dcol)
        else:
            cols_src, cols_dst = slice(0, width + dcol), slice(-dcol, None)
        same = indices[..., rows_src, cols_src] == indices[..., rows_dst, cols_dst]
        target = settled[..., rows_dst, cols_dst]
        torch.where(same, values[..., rows_src, cols_src], target, out=target)
    return settled


def unpool_settled(values: Tensor, indices: Tensor, output_size: tuple[int, int]) -> Tensor:
    """Last-wins max-unpool after 3 x 3 / stride-2 / pad-1 pools, independent of the thread count.

    Equal, bit for bit, to `p3m.models.ops.max_unpool2d_last_wins` (the reference rule).
    """
    if torch.jit.is_tracing():
        from p3m.models.ops import max_unpool2d_last_wins

        return max_unpool2d_last_wins(values, indices, output_size)
    return F.max_unpool2d(
        settle_collisions(values, indices), indices, kernel_size=2, stride=2, output_size=output_size
    )
