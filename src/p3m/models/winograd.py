"""Winograd convolution for the stride-1, 3 x 3 convolutions of the fast path (CPU inference).

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016): an m x m block
of a 3 x 3 convolution's output is A^T [ (G g G^T) * (B^T d B) ] A for the (m + 2) x (m + 2)
input tile d around it, so each output block costs (m + 2)^2 multiplications per input/output
channel pair instead of 9 m^2: 2.25x fewer for F(2x2, 3x3), 4x fewer for F(4x4, 3x3).

Here a convolution C -> K on an N x C x H x W channels-last input becomes three matrix
products (all oneDNN / MKL GEMMs on CPU):

1. input transform: the (m + 2)^2 strided views of the zero-padded NHWC input are gathered
   into D ((m + 2)^2 x tiles * C) and multiplied by kron(B^T, B^T): V = T @ D;
2. the (m + 2)^2 independent products V_k (tiles x C) @ U_k (C x K), one batched GEMM, with
   the bias added to the one component that reaches every output pixel with weight 1;
3. output transform: kron(A^T, A^T) @ M, written into the NHWC output with the residual add
   and the activation in the same pass.

Large inputs are processed in bands of tile rows so the intermediate tensors stay in cache.
The transformed weights U are computed once in float64 at construction.

Accuracy (float32): the relative error per layer is about 1e-6 for F(2x2, 3x3) and 1e-5 for
F(4x4, 3x3) (the larger transform constants lose more bits), against about 1e-7 for the direct
convolution; `benchmarks/bench_winograd.py` prints both, and where Winograd pays on this CPU.
"""

from __future__ import annotations

import math
import os
import threading
import time

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MIN_PIXELS",
    "WINOGRAD_TILES",
    "WinogradConv3x3",
    "cores_oversubscribed",
    "winograd_matrices",
    "winograd_tile",
]

WINOGRAD_TILES = (2, 4)

# Target size, in bytes, of one band's transformed input (V). Bands keep the intermediate
# tensors of large inputs (full-resolution HYBRID passes) in the last-level cache; larger bands
# mean fewer operator calls, which matters when other processes compete for the cores.
_BAND_BYTES = 4 << 20


def winograd_matrices(m: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B^T, G, A^T) of F(m x m, 3 x 3) in float64: (m+2) x (m+2), (m+2) x 3, m x (m+2).

    Interpolation points 0, +-1 (m = 2) and 0, +-1, +-2 (m = 4), plus the point at infinity
    (Lavin & Gray 2016, section 4).
    """
    if m == 2:
        bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
        g = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
        at = [[1, 1, 1, 0], [0, 1, -1, -1]]
    elif m == 4:
        bt = [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ]
        g = [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ]
        at = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
    else:
        raise ValueError(f"Winograd output tile must be one of {WINOGRAD_TILES}, got {m}")
    dtype = torch.float64
    return torch.tensor(bt, dtype=dtype), torch.tensor(g, dtype=dtype), torch.tensor(at, dtype=dtype)


class WinogradConv3x3:
    """A 3 x 3, stride-1, padding-1, ungrouped convolution computed by Winograd F(m x m, 3 x 3).

    Built from the (already BatchNorm-folded) weight K x C x 3 x 3 and bias (K or None).
    `__call__(x, activation, residual)`: x is N x C x H x W float32 on the CPU (any memory
    format; channels-last avoids a copy), residual (N x K x H x W) or None, activation None or
    'relu'; returns act(conv(x) + bias [+ residual]) as N x K x H x W in channels-last memory.
    Odd sizes are padded up to whole tiles and cropped. Not a module: `FusedConv2d` holds it
    and decides when to use it. Inference only (no autograd).
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, m: int = 4) -> None:
        if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
            raise ValueError(f"Winograd needs a K x C x 3 x 3 weight, got {tuple(weight.shape)}")
        bt, g, at = winograd_matrices(m)
        self.m = m
        self.a = a = m + 2
        out_channels, in_channels = weight.shape[:2]
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        dtype = weight.dtype
        # U[(i, j), c, k] = (G w[k, c] G^T)[i, j]
        u = torch.einsum("ir,kcrs,js->ijck", g, weight.detach().double(), g)
        self.u = u.reshape(a * a, in_channels, out_channels).to(dtype).contiguous()
        self.input_transform = torch.kron(bt, bt).to(dtype)  # (a*a) x (a*a), row i*a+j
        self.output_transform = torch.kron(at, at).to(dtype)  # (m*m) x (a*a)
        # A^T's column 1 is all ones (m = 2, 4), so component (1, 1) reaches every output pixel
        # with weight 1: adding the bias there adds it once to each output.
        if not bool((at[:, 1] == 1).all()):
            raise AssertionError("A^T column 1 must be all ones")
        bias_m = torch.zeros(a * a, 1, out_channels, dtype=dtype)
        if bias is not None:
            bias_m[a + 1, 0] = bias.detach().to(dtype)
        self.bias_m = bias_m

    def weight_bytes(self) -> int:
        """Bytes held for the transformed weights."""
        return self.u.numel() * self.u.element_size()

    def __call__(
        self, x: Tensor, activation: str | None = None, residual: Tensor | None = None
    ) -> Tensor:
        if activation not in (None, "relu"):
            raise ValueError(f"unsupported activation {activation!r}")
        batch, channels, height, width = x.shape
        if channels != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {channels}")
        m, a = self.m, self.a
        tiles_h, tiles_w = -(-height // m), -(-width // m)
        padded = F.pad(
            x.permute(0, 2, 3, 1),  # N x H x W x C (a view when x is channels-last)
            (0, 0, 1, tiles_w * m + 1 - width, 1, tiles_h * m + 1 - height),
        )
        s_n, s_h, s_w, s_c = padded.stride()
        k = self.out_channels
        out = torch.empty(batch, tiles_h, m, tiles_w, m, k, dtype=x.dtype, device=x.device)
        res = None
        if residual is not None:
            res = residual.permute(0, 2, 3, 1)
            if tiles_h * m != height or tiles_w * m != width:
                res = F.pad(res, (0, 0, 0, tiles_w * m - width, 0, tiles_h * m - height))
            res = res.reshape(batch, tiles_h, m, tiles_w, m, k)
        band_bytes = a * a * batch * tiles_w * max(channels, k) * x.element_size()
        band = max(1, min(tiles_h, _BAND_BYTES // max(1, band_bytes)))
        for row0 in range(0, tiles_h, band):
            rows = min(band, tiles_h - row0)
            tiles = batch * rows * tiles_w
            d = padded.as_strided(
                (a, a, batch, rows, tiles_w, channels),
                (s_h, s_w, s_n, m * s_h, m * s_w, s_c),
                padded.storage_offset() + row0 * m * s_h,
            ).reshape(a * a, tiles * channels)
            v = torch.mm(self.input_transform, d).view(a * a, tiles, channels)
            products = torch.baddbmm(self.bias_m, v, self.u)  # (a*a) x tiles x K
            y = torch.mm(self.output_transform, products.view(a * a, tiles * k))
            y = y.view(m, m, batch, rows, tiles_w, k).permute(2, 3, 0, 4, 1, 5)
            target = out[:, row0 : row0 + rows]
            if res is not None:
                torch.add(y, res[:, row0 : row0 + rows], out=target)
                if activation == "relu":
                    target.relu_()
            elif activation == "relu":
                torch.clamp(y, min=0, out=target)
            else:
                target.copy_(y)
        out = out.view(batch, tiles_h * m, tiles_w * m, k)
        if tiles_h * m != height or tiles_w * m != width:
            out = out[:, :height, :width].contiguous()
        return out.permute(0, 3, 1, 2)


# Which layers pay (benchmarks/bench_winograd.py, 2 threads, AVX-512 CPU, 512 x 512 P3M-Net
# ResNet-34 shapes): with fewer than 128 input or output channels the transforms, which only
# move memory, cost more than the multiplications saved (0.7-0.8x at 64 channels); from 128
# channels F(4x4, 3x3) is 1.3-1.45x faster at 32 x 32 to 64 x 64; at 512 channels the layers
# sit at 16 x 16, too few 4 x 4 tiles for an efficient GEMM, and F(2x2, 3x3) is 1.2x faster.
MIN_CHANNELS = 128
F2_CHANNELS = 512
MIN_PIXELS = 16 * 16


def winograd_tile(in_channels: int, out_channels: int) -> int | None:
    """The Winograd output tile (2 or 4) for a C -> K 3 x 3 convolution, None where it does not pay."""
    if min(in_channels, out_channels) < MIN_CHANNELS:
        return None
    return 2 if max(in_channels, out_channels) >= F2_CHANNELS else 4


# How often the load average is read again (seconds).
_LOAD_REFRESH = 1.0
_load_lock = threading.Lock()
_load_state = {"at": -math.inf, "busy": False}


def cores_oversubscribed() -> bool:
    """True when the CPUs this process may run on have more runnable threads than they can hold:
    the 1-minute load average (`os.getloadavg`, read at most once a second) above the number of
    usable CPUs plus one. A process's own threads count too, so p3m alone on the machine reads
    about its thread count.

    Winograd layers run about six operator calls where a direct convolution runs one, and with
    the cores oversubscribed every call's thread barrier waits for a descheduled thread: beside
    a second two-thread PyTorch job on 2 cores the Winograd forward measured 1.6x slower than
    the direct one (`benchmarks/bench_models.py --paths fast,fast-direct` with a competing job),
    while idle it is 1.1x faster. `FusedConv2d` therefore falls back to the direct convolution
    while this is True. Where the load average is not available (Windows) this is False; in a
    container the load average is the host's, so a busy host turns Winograd off (the direct
    path, same results within the tolerances).
    """
    now = time.monotonic()
    with _load_lock:
        if now - _load_state["at"] < _LOAD_REFRESH:
            return bool(_load_state["busy"])
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):
            load = 0.0
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
        _load_state.update(at=now, busy=load > cpus + 1)
        return bool(_load_state["busy"])

