"""Fast inference forms of the P3M-Net backbone blocks (used by `p3m.models.optimize`).

Each class is built from the exact block and computes the same function with fewer passes over
memory (see `p3m.models.optimize` for the whole picture):

* `FastBasicBlock` (ResNet-34): folded BatchNorms; the residual add and ReLU fused into conv2.
* `FastSwinStage` / `FastSwinBlock` (Swin-T): padding, cyclic shift and window partition are one
  precomputed gather of token rows (and the way back one more), instead of pad + two rolls +
  two permuted copies; windows whose shift/padding mask is all zero (the inner ones) attend
  with the relative-position bias alone, the border windows with bias + mask, both through
  fused SDPA; the attention projection and the MLP's second Linear take the residual add.
* `FastGlobalAttention` / `FastNormalCell` (ViTAE-S): fused SDPA at every size; the three
  residual adds of a normal cell become one add and two fused Linear + add.
* `FastMlp`: Linear + GELU fused, second Linear + residual fused.

When traced for ONNX export the blocks fall back to the plain operator sequence of the exact
blocks (pad / roll / partition, explicit attention), so the exported graph takes any size.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m.models.fast_ops import FusedConv2d, FusedLinear

__all__ = [
    "FastBasicBlock",
    "FastGlobalAttention",
    "FastMaxPool3x3",
    "FastMlp",
    "FastNormalCell",
    "FastSwinBlock",
    "FastSwinStage",
    "FastWindowAttention",
    "WindowLayout",
    "onnx_unpool3x3",
    "window_layout",
]


class FastBasicBlock(nn.Module):
    """The ResNet basic block with folded BNs: relu(conv1), then relu(conv2 + shortcut) in one op."""

    def __init__(self, block: nn.Module, channels_last: bool) -> None:
        super().__init__()
        self.conv1 = FusedConv2d(block.conv1, block.bn1, "relu", channels_last)
        self.conv2 = FusedConv2d(block.conv2, block.bn2, None, channels_last)
        self.downsample: nn.Module | None = None
        if block.downsample is not None:
            conv, bn = block.downsample[0], block.downsample[1]
            self.downsample = FusedConv2d(conv, bn, None, channels_last)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.conv2.add_relu(self.conv1(x), shortcut)


class FastMlp(nn.Module):
    """Linear -> GELU -> Linear with the first Linear and the GELU fused."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.fc1 = FusedLinear(mlp.fc1, "gelu")
        self.fc2 = FusedLinear(mlp.fc2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.fc1(x))

    def forward_add(self, x: Tensor, residual: Tensor) -> Tensor:
        """residual + mlp(x), the add fused into the second Linear."""
        return self.fc2.add(self.fc1(x), residual)


# --------------------------------------------------------------------------- 2 x 2 pools


def pool2x2(x: Tensor) -> tuple[Tensor, Tensor]:
    """2 x 2 / stride-2 max-pool and where each maximum sat (first in row-major order on ties).

    Eager: PyTorch's per-plane pool indices. Traced for ONNX: one MaxPool with its Indices
    output (flat over the whole tensor), which `unpool2x2` turns back with one MaxUnpool; the
    windows do not overlap, so no two cells share an index and any runtime gives the same.
    """
    if not torch.jit.is_tracing():
        from p3m.models.ops import max_pool2x2_with_indices

        return max_pool2x2_with_indices(x)
    return _OnnxMaxPool.apply(x, 2, 0)


def unpool2x2(values: Tensor, where: Tensor, output_size: tuple[int, int]) -> Tensor:
    """Max-unpool after `pool2x2` (PyTorch's indices eager, global ONNX indices traced)."""
    if not torch.jit.is_tracing():
        return F.max_unpool2d(values, where, kernel_size=2, stride=2, output_size=output_size)
    return _OnnxMaxUnpool.apply(values, where, 2, 0)


# --------------------------------------------------------------------------- 3 x 3 / stride-2 pools


class _OnnxMaxPool(torch.autograd.Function):
    """Stride-2 max-pool (kernel 3 / pad 1 or kernel 2 / pad 0) with indices flat over the
    whole N x C x H x W tensor, exported as one ONNX MaxPool with its Indices output (the index
    form ONNX defines).

    onnxruntime's kernel keeps the first maximum of the row-major window scan on ties, as
    PyTorch does, so its indices equal PyTorch's plus each plane's offset.
    """

    @staticmethod
    def forward(ctx, x: Tensor, kernel: int, padding: int) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        pooled, indices = F.max_pool2d(x, kernel, stride=2, padding=padding, return_indices=True)
        batch, channels, height, width = x.shape
        planes = torch.arange(batch * channels, dtype=torch.int64).view(batch, channels, 1, 1)
        return pooled, indices + planes * (height * width)

    @staticmethod
    def symbolic(g, x, kernel: int, padding: int):  # type: ignore[no-untyped-def]
        return g.op(
            "MaxPool", x, kernel_shape_i=[kernel, kernel], pads_i=[padding] * 4, strides_i=[2, 2], outputs=2
        )


class _OnnxMaxUnpool(torch.autograd.Function):
    """Max-unpool of `_OnnxMaxPool` to twice the pooled size, exported as ONNX MaxUnpool.

    ONNX leaves the order of colliding writes (overlapping 3 x 3 windows) open; onnxruntime's
    CPU kernel writes the pooled cells sequentially, so the last one in row-major order wins:
    the reference rule. 2 x 2 windows never collide.
    """

    @staticmethod
    def forward(ctx, values: Tensor, indices: Tensor, kernel: int, padding: int) -> Tensor:  # type: ignore[override]
        from p3m.models.ops import max_unpool2d_last_wins

        batch, channels, height, width = values.shape
        planes = torch.arange(batch * channels, dtype=torch.int64).view(batch, channels, 1, 1)
        plane_indices = indices - planes * (4 * height * width)
        return max_unpool2d_last_wins(values, plane_indices, (2 * height, 2 * width))

    @staticmethod
    def symbolic(g, values, indices, kernel: int, padding: int):  # type: ignore[no-untyped-def]
        scale = g.op("Constant", value_t=torch.tensor([1, 1, 2, 2], dtype=torch.int64))
        shape = g.op("Mul", g.op("Shape", values), scale)
        return g.op(
            "MaxUnpool",
            values,
            indices,
            shape,
            kernel_shape_i=[kernel, kernel],
            pads_i=[padding] * 4,
            strides_i=[2, 2],
        )


def onnx_unpool3x3(values: Tensor, indices: Tensor, output_size: tuple[int, int]) -> Tensor:
    """Traced unpool after `FastMaxPool3x3` with onnxruntime operators. The unpooled size is
    twice the pooled one: P3M-Net's inputs are multiples of 32, so every pooled level is even."""
    if tuple(int(v) for v in output_size) != (2 * int(values.shape[-2]), 2 * int(values.shape[-1])):
        raise ValueError(f"the MaxUnpool export needs even sizes, got {tuple(output_size)}")
    return _OnnxMaxUnpool.apply(values, indices, 3, 1)


class FastMaxPool3x3(nn.Module):
    """The ResNet-34 encoder's 3 x 3 / stride-2 / pad-1 index max-pool.

    Eager: PyTorch's per-plane indices. Traced for ONNX with `onnxruntime_ops` (set by
    `export_onnx` unless a portable graph is asked for): one MaxPool with global indices,
    which `onnx_unpool3x3` turns back with one MaxUnpool; otherwise the plain index pool,
    which the portable scatter-max unpool (`max_unpool2d_last_wins`) reads.
    """

    def __init__(self, blocked_values: bool = False) -> None:
        super().__init__()
        self.onnxruntime_ops = False
        self.blocked_values = blocked_values

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if torch.jit.is_tracing() and self.onnxruntime_ops:
            pooled, indices = _OnnxMaxPool.apply(x, 3, 1)
            if self.blocked_values:
                # The same values from a second, value-only MaxPool: onnxruntime runs that one
                # in its blocked NCHWc layout, so the convolutions reading the pooled feature
                # take it as it is (the index MaxPool's output is plain NCHW).
                pooled = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
            return pooled, indices
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1, return_indices=True)


class FastConvStem(nn.Module):
    """The transformer encoders' convolutional stem with fused convolutions and `pool2x2`."""

    def __init__(self, stem: nn.Module, channels_last: bool) -> None:
        super().__init__()
        self.proj1 = FusedConv2d(stem.proj1, None, "relu", channels_last)
        self.proj2 = FusedConv2d(stem.proj2, None, "relu", channels_last)
        self.proj3 = FusedConv2d(stem.proj3, None, "relu" if stem.final_relu else None, channels_last)
        self.norm = stem.norm

    def forward(self, x: Tensor) -> tuple[Tensor, int, int, list[Tensor], list[Tensor]]:
        from p3m.models.backbones.tokens import grid_to_tokens

        features: list[Tensor] = []
        indices: list[Tensor] = []
        pooled = x
        for proj in (self.proj1, self.proj2):
            feature = proj(pooled)
            pooled, index = pool2x2(feature)
            features.append(feature)
            indices.append(index)
        grid = self.proj3(pooled)
        height, width = grid.shape[-2:]
        return self.norm(grid_to_tokens(grid)), height, width, features, indices


class FastPoolingMerge(nn.Module):
    """LayerNorm -> skip feature -> `pool2x2` -> Linear C -> 2C (the transformer merges)."""

    def __init__(self, merge: nn.Module) -> None:
        super().__init__()
        self.norm = merge.norm
        self.linear = FusedLinear(merge.linear)

    def forward(self, x: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
        from p3m.models.backbones.tokens import grid_to_tokens, tokens_to_grid

        skip = tokens_to_grid(self.norm(x), height, width)
        pooled, index = pool2x2(skip)
        return self.linear(grid_to_tokens(pooled)), skip, index


# --------------------------------------------------------------------------- Swin-T


class WindowLayout(NamedTuple):
    """Where every token of an h x w grid goes in the padded, shifted, window-partitioned layout.

    Slots are windows x tokens-per-window, windows reordered so that the `inner` windows (no
    mask needed) come first. `gather[slot]` is the token feeding a slot (padding slots: 0, then
    zeroed via `padding`); `scatter[token]` is the slot holding a token's result; `mask` is the
    additive mask of the border windows (border x N x N), None when every window is inner.
    """

    gather: Tensor
    scatter: Tensor
    padding: Tensor | None
    windows: int
    inner: int
    mask: Tensor | None


def window_layout(
    height: int, width: int, shift: int, window_size: int, device: torch.device | None = None
) -> WindowLayout:
    """The `WindowLayout` of the exact Swin block: pad bottom/right, roll by -shift, partition."""
    from p3m.models.backbones.swin import window_attention_mask, window_padding

    padded_h = height + window_padding(height, window_size)
    padded_w = width + window_padding(width, window_size)
    rows = (torch.arange(padded_h) + shift) % padded_h  # rolled position -> padded source row
    cols = (torch.arange(padded_w) + shift) % padded_w
    valid = (rows[:, None] < height) & (cols[None, :] < width)
    source = rows[:, None] * width + cols[None, :]

    def partition(grid: Tensor) -> Tensor:
        grid = grid.view(padded_h // window_size, window_size, padded_w // window_size, window_size)
        return grid.permute(0, 2, 1, 3).reshape(-1, window_size * window_size)

    source_w, valid_w = partition(source), partition(valid)
    windows = source_w.shape[0]
    mask = window_attention_mask(height, width, shift, window_size)
    if mask is None:
        border = torch.zeros(windows, dtype=torch.bool)
    else:
        border = (mask != 0).flatten(1).any(dim=1)
    order = torch.cat([torch.nonzero(~border).flatten(), torch.nonzero(border).flatten()])
    source_w, valid_w = source_w[order].flatten(), valid_w[order].flatten()
    gather = torch.where(valid_w, source_w, 0)
    slots = torch.arange(gather.numel())
    scatter = torch.empty(height * width, dtype=torch.int64)
    scatter[source_w[valid_w]] = slots[valid_w]
    padding = slots[~valid_w]
    inner = int((~border).sum())
    border_mask = None if mask is None or inner == windows else mask[order[inner:]].contiguous()
    return WindowLayout(
        gather.to(device),
        scatter.to(device),
        padding.to(device) if padding.numel() else None,
        windows,
        inner,
        None if border_mask is None else border_mask.to(device),
    )


class FastWindowAttention(nn.Module):
    """Swin window attention: fused SDPA with the relative-position bias as a float mask."""

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.num_heads = attention.num_heads
        self.window_size = attention.window_size
        self.scale = float(attention.scale)
        tokens = self.window_size**2
        table = attention.relative_position_bias_table.detach()
        index = attention.relative_position_index.view(-1)
        bias = table[index].view(tokens, tokens, -1).permute(2, 0, 1).contiguous()
        self.register_buffer("bias", bias.unsqueeze(0))  # 1 x heads x N x N
        self.qkv = FusedLinear(attention.qkv)
        self.proj = FusedLinear(attention.proj)

    def forward(self, windows: Tensor, mask: Tensor | None) -> Tensor:
        """The exact block's interface: (B*nW) x N x C windows, mask nW x N x N or None."""
        batch_windows, tokens, channels = windows.shape
        qkv = self.qkv(windows).reshape(batch_windows, tokens, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if torch.jit.is_tracing():
            # ONNX export: the batch is symbolic, so the mask broadcasts over a windows axis
            # instead of being repeated for the traced batch size.
            attn = (q * self.scale) @ k.transpose(-2, -1) + self.bias
            if mask is not None:
                num_windows = mask.shape[0]
                attn = attn.view(-1, num_windows, self.num_heads, tokens, tokens) + mask[None, :, None]
                attn = attn.view(-1, self.num_heads, tokens, tokens)
            out = attn.softmax(dim=-1) @ v
            return self.proj(out.transpose(1, 2).reshape(batch_windows, tokens, channels))
        attn_mask = self.bias.to(q.dtype)
        if mask is not None:
            num_windows = mask.shape[0]
            attn_mask = attn_mask + mask.to(q.dtype)[:, None]
            if batch_windows != num_windows:
                attn_mask = attn_mask.repeat(batch_windows // num_windows, 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(batch_windows, tokens, channels))

    def attend_slots(self, slots: Tensor, layout: WindowLayout) -> Tensor:
        """Attention (before the output projection) of B x (nW*N) x C window slots."""
        batch, _, channels = slots.shape
        heads, tokens = self.num_heads, self.window_size**2
        windows, inner = layout.windows, layout.inner
        qkv = self.qkv(slots).view(batch, windows, tokens, 3, heads, channels // heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # B x nW x heads x N x d each
        out = slots.new_empty(batch, windows, tokens, heads, channels // heads)
        bias = self.bias.to(q.dtype)
        for start, stop, mask in ((0, inner, None), (inner, windows, layout.mask)):
            if start == stop:
                continue
            count = stop - start
            attn_mask = bias if mask is None else bias + mask.to(q.dtype)[:, None]
            if mask is not None and batch > 1:
                attn_mask = attn_mask.repeat(batch, 1, 1, 1)
            part = F.scaled_dot_product_attention(
                q[:, start:stop].reshape(batch * count, heads, tokens, -1),
                k[:, start:stop].reshape(batch * count, heads, tokens, -1),
                v[:, start:stop].reshape(batch * count, heads, tokens, -1),
                attn_mask=attn_mask,
                scale=self.scale,
            )
            out[:, start:stop] = part.view(batch, count, heads, tokens, -1).transpose(2, 3)
        return out.view(batch, windows * tokens, channels)


class FastSwinBlock(nn.Module):
    """A Swin block on N x (h*w) x C tokens, through a precomputed `WindowLayout`."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.shift = int(block.shift)
        self.norm1 = block.norm1
        self.attn = FastWindowAttention(block.attn)
        self.norm2 = block.norm2
        self.mlp = FastMlp(block.mlp)

    def forward(self, x: Tensor, height: int, width: int, layout: WindowLayout | None, mask: Tensor | None) -> Tensor:
        if layout is None:  # tracing: the exact block's operator sequence
            return self._forward_traceable(x, height, width, mask)
        normed = self.norm1(x)
        slots = normed.index_select(1, layout.gather)
        if layout.padding is not None:
            slots.index_fill_(1, layout.padding, 0.0)
        attended = self.attn.attend_slots(slots, layout).index_select(1, layout.scatter)
        x = self.attn.proj.add(attended, x)
        return self.mlp.forward_add(self.norm2(x), x)

    def _forward_traceable(self, x: Tensor, height: int, width: int, mask: Tensor | None) -> Tensor:
        from p3m.models.backbones.swin import _merge_windows, _partition_windows, window_padding

        batch, _, channels = x.shape
        window = self.attn.window_size
        grid = self.norm1(x).view(batch, height, width, channels)
        pad_h, pad_w = window_padding(height, window), window_padding(width, window)
        grid = F.pad(grid, (0, 0, 0, pad_w, 0, pad_h))
        if self.shift:
            grid = torch.roll(grid, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = self.attn(_partition_windows(grid, window), mask)
        grid = _merge_windows(windows, window, height + pad_h, width + pad_w)
        if self.shift:
            grid = torch.roll(grid, shifts=(self.shift, self.shift), dims=(1, 2))
        grid = grid[:, :height, :width, :]
        x = x + grid.reshape(batch, height * width, channels)
        return x + self.mlp(self.norm2(x))


class FastSwinStage(nn.Module):
    """Swin blocks sharing one `WindowLayout` per shift and grid size (cached, a few MB at most)."""

    _CACHE_SIZE = 4  # grid sizes kept per stage (HYBRID alternates two)

    def __init__(self, stage: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(FastSwinBlock(block) for block in stage.blocks)
        self.downsample = stage.downsample
        self._layouts: dict[tuple[int, int, int, str], WindowLayout] = {}
        self._lock = threading.Lock()

    def _layout(self, height: int, width: int, shift: int, device: torch.device) -> WindowLayout:
        key = (height, width, shift, str(device))
        with self._lock:
            layout = self._layouts.get(key)
            if layout is None:
                window = self.blocks[0].attn.window_size
                layout = window_layout(height, width, shift, window, device)
                if len(self._layouts) >= self._CACHE_SIZE * 2:
                    self._layouts.pop(next(iter(self._layouts)))
                self._layouts[key] = layout
            return layout

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        if torch.jit.is_tracing():
            from p3m.models.backbones.swin import window_attention_mask

            masks: dict[int, Tensor | None] = {}
            for block in self.blocks:
                if block.shift not in masks:
                    masks[block.shift] = window_attention_mask(height, width, block.shift, device=x.device)
                x = block(x, height, width, None, masks[block.shift])
            return x
        for block in self.blocks:
            x = block(x, height, width, self._layout(height, width, block.shift, x.device), None)
        return x


# --------------------------------------------------------------------------- ViTAE-S


class _OnnxRuntimeAttention(torch.autograd.Function):
    """Multi-head attention on B x S x C queries / keys / values that exports as onnxruntime's
    `com.microsoft.MultiHeadAttention` (its CPU kernel never holds the S x S matrix: memory
    linear in S, and 1.5-3x faster than MatMul / Softmax / MatMul at ViTAE-S sizes)."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, num_heads: int, scale: float) -> Tensor:  # type: ignore[override]
        batch, tokens, channels = q.shape

        def heads(t: Tensor) -> Tensor:
            return t.reshape(batch, -1, num_heads, channels // num_heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), scale=scale)
        return out.transpose(1, 2).reshape(batch, tokens, channels)

    @staticmethod
    def symbolic(g, q, k, v, num_heads: int, scale: float):  # type: ignore[no-untyped-def]
        out = g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=num_heads, scale_f=scale)
        out.setType(q.type())
        return out


class FastGlobalAttention(nn.Module):
    """ViTAE-S multi-head global attention, always through fused SDPA (linear memory in tokens).

    `onnxruntime_ops` (set by `export_onnx` unless a portable graph is asked for): traced as
    onnxruntime's fused attention operator instead of standard ONNX operators.
    """

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.num_heads = attention.num_heads
        self.scale = float(attention.scale)
        self.qkv = FusedLinear(attention.qkv)
        self.proj = FusedLinear(attention.proj)
        self.onnxruntime_ops = False

    def _attend(self, x: Tensor) -> Tensor:
        batch, tokens, channels = x.shape
        if torch.jit.is_tracing() and self.onnxruntime_ops:
            q, k, v = self.qkv(x).split(channels, dim=-1)
            return _OnnxRuntimeAttention.apply(q, k, v, self.num_heads, self.scale)
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if torch.jit.is_tracing():
            # ONNX export: attend block of queries by block of queries, as the exact model's
            # export does, so that one graph serves every size within bounded memory.
            from p3m.models.backbones.vitae import attend_in_query_blocks

            out = attend_in_query_blocks(q, k, v, self.scale)
        else:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return out.transpose(1, 2).reshape(batch, tokens, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self._attend(x))

    def forward_add(self, x: Tensor, residual: Tensor) -> Tensor:
        """residual + attention(x), the add fused into the output projection."""
        return self.proj.add(self._attend(x), residual)


class FastNormalCell(nn.Module):
    """ViTAE normal cell: x + Attn(LN1 x) + PCM(x), then + MLP(LN2 .), with fused adds."""

    def __init__(self, cell: nn.Module, attention: nn.Module, pcm: nn.Module) -> None:
        super().__init__()
        self.norm1 = cell.norm1
        self.attn = attention
        self.norm2 = cell.norm2
        self.mlp = FastMlp(cell.mlp)
        self.PCM = pcm

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        from p3m.models.backbones.tokens import grid_to_tokens, tokens_to_grid

        convolved = grid_to_tokens(self.PCM(tokens_to_grid(x, height, width)))
        residual = x + convolved
        if hasattr(self.attn, "forward_add"):
            x = self.attn.forward_add(self.norm1(x), residual)
        else:  # the stage-1 Performer
            x = residual + self.attn(self.norm1(x))
        return self.mlp.forward_add(self.norm2(x), x)
