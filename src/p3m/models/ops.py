"""Tensor operations of P3M-Net whose exact semantics matter for matching the official model.

* Index max-pools: on ties the first cell of the row-major window scan wins (PyTorch's rule).
* `max_unpool2d_last_wins`: max-unpooling that resolves index collisions deterministically.
  The r34 encoder pools with overlapping 3x3/stride-2 windows, so several pooled cells often
  carry the same index; PyTorch's `max_unpool2d` then lets whichever write lands last win,
  which depends on the thread count (CPU) or on scheduling (CUDA). The official reference was
  produced single-threaded, where the pooled cell that is last in row-major order wins; we
  compute exactly that with a scatter-max of pooled positions followed by a gather.
* `upsample_bilinear`: integer-factor bilinear resize, align_corners=False (half-pixel centres).
* `max_pool2_stride`: the plain kernel-2 max-pool with stride s used by sBFI.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Planes processed per chunk in the unpool so that the int32 winner map stays small
# (about 2**25 elements = 128 MB), even for 1600x1600 inputs with 64 channels.
_UNPOOL_CHUNK_ELEMENTS = 1 << 25


def max_pool3x3s2_with_indices(x: Tensor) -> tuple[Tensor, Tensor]:
    """3x3/stride-2/pad-1 max-pool returning flat per-plane indices (first maximum wins on ties)."""
    return F.max_pool2d(x, kernel_size=3, stride=2, padding=1, return_indices=True)


def max_pool2x2_with_indices(x: Tensor) -> tuple[Tensor, Tensor]:
    """2x2/stride-2 max-pool returning flat per-plane indices (first maximum wins on ties)."""
    return F.max_pool2d(x, kernel_size=2, stride=2, return_indices=True)


def max_pool2_stride(x: Tensor, stride: int) -> Tensor:
    """Kernel-2 max-pool with stride `stride`, no padding (for stride > 2 it skips rows/columns)."""
    return F.max_pool2d(x, kernel_size=2, stride=stride)


def upsample_bilinear(x: Tensor, scale: int) -> Tensor:
    """Bilinear resize by the integer factor `scale`, align_corners=False, no anti-aliasing."""
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def _unpool_forward(values: Tensor, indices: Tensor, plane_size: int) -> Tensor:
    """Last-wins unpool of (planes, h*w) `values` at (planes, h*w) int64 `indices` into (planes, plane_size).

    For every output position, a scatter-max of pooled positions finds the highest pooled cell
    writing there (amax is order-independent, hence deterministic). Only those winners are then
    written; every losing cell is redirected to one scratch slot past the end, which is dropped.
    """
    planes, pooled = values.shape
    dump = planes * plane_size
    out = values.new_zeros(dump + 1)
    # int32 positions halve the memory of the full-resolution winner map.
    positions = torch.arange(pooled, device=values.device, dtype=torch.int32).expand(planes, pooled)
    chunk = max(1, _UNPOOL_CHUNK_ELEMENTS // max(plane_size, 1))
    for start in range(0, planes, chunk):
        stop = min(start + chunk, planes)
        chunk_indices = indices[start:stop]
        chunk_positions = positions[start:stop]
        winners = torch.full(
            (stop - start, plane_size), -1, dtype=torch.int32, device=values.device
        )
        winners.scatter_reduce_(1, chunk_indices, chunk_positions, reduce="amax", include_self=True)
        wins = winners.gather(1, chunk_indices) == chunk_positions
        offsets = torch.arange(
            start * plane_size,
            stop * plane_size,
            plane_size,
            device=values.device,
            dtype=torch.int64,
        ).unsqueeze(1)
        targets = torch.where(wins, chunk_indices + offsets, dump)
        out.scatter_(0, targets.reshape(-1), values[start:stop].reshape(-1))
    return out[:dump].view(planes, plane_size)


def _unpool_traceable(values: Tensor, indices: Tensor, plane_size: Tensor | int) -> Tensor:
    """`_unpool_forward` for tracing (ONNX export): same winners, one pass, traced plane size.

    No Python-int shape arithmetic and no chunk loop, so the traced graph takes any input size;
    a scatter only moves values, so the result is bit-identical to the eager path. Losers are
    written to one scratch column past the end of each plane, which is dropped.
    """
    positions = torch.ones_like(indices[:1], dtype=torch.int32).cumsum(1, dtype=torch.int32) - 1
    positions = positions.expand_as(indices)
    winners = torch.full_like(values[:, :1], -1, dtype=torch.int32).expand(-1, plane_size)
    winners = winners.scatter_reduce(1, indices, positions, reduce="amax", include_self=True)
    wins = winners.gather(1, indices) == positions
    targets = torch.where(wins, indices, plane_size)
    out = torch.zeros_like(values[:, :1]).expand(-1, plane_size + 1)
    return out.scatter(1, targets, values)[:, :plane_size]


class _MaxUnpoolLastWins(torch.autograd.Function):
    """Forward: deterministic last-wins unpool. Backward: PyTorch's max_unpool2d gradient.

    The backward of `max_unpool2d` hands every pooled cell the output gradient at its index,
    including cells that lost a collision; we keep that so training matches the official code.
    """

    @staticmethod
    def forward(ctx, values: Tensor, indices: Tensor, plane_size: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(indices)
        return _unpool_forward(values, indices, plane_size)

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        (indices,) = ctx.saved_tensors
        return grad_output.gather(1, indices), None, None


def max_unpool2d_last_wins(values: Tensor, indices: Tensor, output_size: tuple[int, int]) -> Tensor:
    """Max-unpool N x C x h x w `values` to N x C x H x W (`output_size` = (H, W)), zeros elsewhere.

    `indices` are flat positions row*W + col inside each H x W plane, as returned by the index
    max-pools. When several pooled cells carry the same index, the cell with the highest
    row-major position in the h x w plane wins (PyTorch's single-thread CPU behaviour, the one
    the official reference used), independently of thread count and device.

    Example: ``pooled, idx = max_pool3x3s2_with_indices(x)``;
    ``restored = max_unpool2d_last_wins(pooled, idx, x.shape[-2:])``.
    """
    if torch.jit.is_tracing():
        # Export path: sizes stay symbolic (see `_unpool_traceable`); the autograd Function
        # would become an opaque PythonOp that the ONNX exporter cannot handle.
        n, c = values.shape[:2]
        out_h, out_w = output_size[0], output_size[1]
        out = _unpool_traceable(
            values.reshape(n * c, -1), indices.reshape(n * c, -1).to(torch.int64), out_h * out_w
        )
        return out.reshape(n, c, out_h, out_w)
    if values.shape != indices.shape:
        raise ValueError(
            f"values {tuple(values.shape)} and indices {tuple(indices.shape)} differ in shape"
        )
    if values.dim() != 4:
        raise ValueError(f"expected N x C x h x w values, got shape {tuple(values.shape)}")
    n, c, h, w = values.shape
    out_h, out_w = int(output_size[0]), int(output_size[1])
    flat_values = values.reshape(n * c, h * w)
    flat_indices = indices.reshape(n * c, h * w).to(torch.int64)
    if torch.is_grad_enabled() and values.requires_grad:
        out = _MaxUnpoolLastWins.apply(flat_values, flat_indices, out_h * out_w)
    else:  # plain tensor ops only: cheaper, and traceable for export
        out = _unpool_forward(flat_values, flat_indices, out_h * out_w)
    return out.reshape(n, c, out_h, out_w)


class BilinearUpsample(nn.Module):
    """Module form of `upsample_bilinear` (no state), so it can sit inside nn.Sequential stages."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = int(scale)

    def forward(self, x: Tensor) -> Tensor:
        return upsample_bilinear(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class MaxPool2Stride(nn.Module):
    """Module form of `max_pool2_stride` (no state)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = int(stride)

    def forward(self, x: Tensor) -> Tensor:
        return max_pool2_stride(x, self.stride)

    def extra_repr(self) -> str:
        return f"stride={self.stride}"
