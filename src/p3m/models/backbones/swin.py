"""Swin-T encoder of P3M-Net ("Rethinking Portrait Matting with Privacy Preserving", Ma, Li et al.).

A Swin Transformer Tiny (Liu et al., ICCV 2021) in the form the P3M-Net authors use for
matting: a convolutional stem with two index-returning max-pools replaces the 4x4 patch
embedding, and every patch merging is "LayerNorm -> 2x2 index max-pool -> Linear C->2C"
instead of the 2x2 concatenation. The five pool inputs are the skip features of the decoder.
Specification: SPEC-swin.md of the reference data (sections 3-5).

Unlike the official code, the shifted-window attention masks are built at run time for the
actual token grid, so every H and W that is a multiple of 32 (minimum 32) works; the official
model raises for e.g. 224x224 and 448x448 (unshifted blocks on grids that need no padding)
and for grids smaller than the window. Each stage pads its grid to multiples of 7 and the mask
keeps content and padding apart and, in shifted blocks, the two sides of the cyclic wrap;
blocks with neither shift nor padding attend unmasked. Where the official model runs, this
gives its masks exactly. The masks stored for img_size 512 are kept as persistent buffers
only so that official checkpoints load with strict key checking.

Example::

    encoder = SwinTEncoder()
    features = encoder(torch.randn(1, 3, 512, 512))   # EncoderOutput(top, features, indices)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p3m.models.backbones.tokens import ConvStem, Mlp, PoolingMerge, tokens_to_grid
from p3m.models.p3mnet import FULL_INTEGRATION, EncoderOutput, Integration, P3MDecoder, P3MNet

WINDOW_SIZE = 7
# The official attention masks use this finite value rather than -inf.
MASK_VALUE = -100.0


def relative_position_index(window_size: int = WINDOW_SIZE) -> Tensor:
    """(w*w) x (w*w) int64 index into the relative-position bias table, row = query token."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    ).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return relative[..., 0] * (2 * window_size - 1) + relative[..., 1]


def window_padding(length: int, window_size: int = WINDOW_SIZE) -> int:
    """Rows (or columns) appended so that the grid side becomes a multiple of the window."""
    return (-length) % window_size


def _axis_region_labels(
    length: int, shift: int, window_size: int, device: torch.device | None
) -> Tensor:
    """Region label of every position of one padded, rolled grid axis (SPEC-swin 5.4).

    Two tokens may attend to each other only if they are both content or both padding, and
    both lie on the same side of the cyclic wrap of the roll. Label = is_padding + 2*wrapped.
    """
    padded = length + window_padding(length, window_size)
    position = torch.arange(padded, device=device)
    source = (position + shift) % padded  # where the rolled position came from
    is_padding = source >= length
    wrapped = position >= padded - shift if shift > 0 else torch.zeros_like(is_padding)
    return is_padding.long() + 2 * wrapped.long()


def window_attention_mask(
    height: int,
    width: int,
    shift: int,
    window_size: int = WINDOW_SIZE,
    device: torch.device | None = None,
) -> Tensor | None:
    """Additive mask (windows x w^2 x w^2, 0 or -100) for a height x width token grid, or None.

    The grid is padded at the bottom/right to multiples of the window and rolled by -shift;
    None means every window attends without restriction (no shift and no padding).
    """
    pad_h, pad_w = window_padding(height, window_size), window_padding(width, window_size)
    # When tracing (ONNX export) the sizes are symbolic: always build the mask (all zeros when
    # nothing is masked), so the graph is valid for every size, not just the traced one.
    if not torch.jit.is_tracing() and shift == 0 and pad_h == 0 and pad_w == 0:
        return None
    rows = _axis_region_labels(height, shift, window_size, device)
    cols = _axis_region_labels(width, shift, window_size, device)
    labels = rows[:, None] * 4 + cols[None, :]
    windows = _partition_windows(labels[None, :, :, None], window_size).squeeze(-1)
    different = windows[:, :, None] != windows[:, None, :]
    return torch.zeros(different.shape, device=device).masked_fill_(different, MASK_VALUE)


def _partition_windows(grid: Tensor, window_size: int) -> Tensor:
    """B x H x W x C grid -> (B*windows) x (w*w) x C, windows row-major, tokens row-major."""
    batch, height, width, channels = grid.shape
    grid = grid.view(
        batch, height // window_size, window_size, width // window_size, window_size, channels
    )
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, channels)


def _merge_windows(windows: Tensor, window_size: int, height: int, width: int) -> Tensor:
    """Inverse of `_partition_windows`."""
    channels = windows.shape[-1]
    grid = windows.view(
        -1, height // window_size, width // window_size, window_size, window_size, channels
    )
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside 7x7 windows with a learned relative-position bias."""

    def __init__(self, channels: int, num_heads: int, window_size: int = WINDOW_SIZE) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.scale = (channels // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, windows: Tensor, mask: Tensor | None) -> Tensor:
        """(B*nW) x N x C windows; mask nW x N x N (additive) or None."""
        batch_windows, tokens, channels = windows.shape
        qkv = self.qkv(windows).reshape(batch_windows, tokens, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(tokens, tokens, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            num_windows = mask.shape[0]
            attn = attn.view(-1, num_windows, self.num_heads, tokens, tokens)
            attn = attn + mask.to(attn.dtype)[None, :, None]
            attn = attn.view(-1, self.num_heads, tokens, tokens)
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(batch_windows, tokens, channels))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention block with MLP, on N x (h*w) x C tokens."""

    def __init__(
        self, channels: int, num_heads: int, shift: int, mask_grid: tuple[int, int]
    ) -> None:
        super().__init__()
        self.shift = shift
        # Official checkpoints carry the mask for the construction grid (img_size 512); it is
        # kept for strict loading, while forward() always uses the mask of the actual grid.
        self.register_buffer("attn_mask", window_attention_mask(*mask_grid, shift))
        self.norm1 = nn.LayerNorm(channels, eps=1e-5)
        self.attn = WindowAttention(channels, num_heads)
        self.norm2 = nn.LayerNorm(channels, eps=1e-5)
        self.mlp = Mlp(channels, 4 * channels)

    def forward(self, x: Tensor, height: int, width: int, mask: Tensor | None) -> Tensor:
        batch, _, channels = x.shape
        window = self.attn.window_size
        grid = self.norm1(x).view(batch, height, width, channels)
        pad_h, pad_w = window_padding(height, window), window_padding(width, window)
        # Tracing takes the padded path whatever the traced size (padding by 0 is a no-op).
        padded = torch.jit.is_tracing() or bool(pad_h or pad_w)
        if padded:
            grid = F.pad(grid, (0, 0, 0, pad_w, 0, pad_h))
        padded_h, padded_w = height + pad_h, width + pad_w
        if self.shift:
            grid = torch.roll(grid, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = self.attn(_partition_windows(grid, window), mask)
        grid = _merge_windows(windows, window, padded_h, padded_w)
        if self.shift:
            grid = torch.roll(grid, shifts=(self.shift, self.shift), dims=(1, 2))
        if padded:
            grid = grid[:, :height, :width, :]
        x = x + grid.reshape(batch, height * width, channels)
        return x + self.mlp(self.norm2(x))


class SwinStage(nn.Module):
    """`depth` Swin blocks alternating shift 0 / 3, optionally followed by a pooling merge."""

    def __init__(
        self, channels: int, depth: int, num_heads: int, downsample: bool, mask_grid: int
    ) -> None:
        super().__init__()
        shift = WINDOW_SIZE // 2
        self.blocks = nn.ModuleList(
            SwinBlock(channels, num_heads, 0 if b % 2 == 0 else shift, (mask_grid, mask_grid))
            for b in range(depth)
        )
        self.downsample = PoolingMerge(channels) if downsample else None

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        """Runs the blocks on N x (h*w) x C tokens (the merge is called separately)."""
        masks: dict[int, Tensor | None] = {}
        for block in self.blocks:
            if block.shift not in masks:
                masks[block.shift] = window_attention_mask(
                    height, width, block.shift, device=x.device
                )
            x = block(x, height, width, masks[block.shift])
        return x


class SwinTEncoder(nn.Module):
    """Swin-T encoder of P3M-Net: returns `EncoderOutput(top, features, indices)`.

    top: 768 x H/32 x W/32 (after the final LayerNorm); features: the stem conv outputs
    (48 x H, 96 x H/2) and the LayerNorm'd outputs of stages 1-3 (96 x H/4, 192 x H/8,
    384 x H/16); indices: the 2x2 max-pool indices of each feature.
    `img_size` only shapes the stored `attn_mask` buffers (512 for official checkpoints).
    """

    embed_dim = 96
    depths = (2, 2, 6, 2)
    num_heads = (3, 6, 12, 24)

    def __init__(self, img_size: int = 512) -> None:
        super().__init__()
        self.patch_embed = ConvStem(self.embed_dim, final_relu=True)
        self.layers = nn.ModuleList(
            SwinStage(
                self.embed_dim * 2**stage,
                depth,
                heads,
                downsample=stage < len(self.depths) - 1,
                mask_grid=img_size // 2 ** (stage + 2),
            )
            for stage, (depth, heads) in enumerate(zip(self.depths, self.num_heads, strict=True))
        )
        self.num_features = self.embed_dim * 2 ** (len(self.depths) - 1)
        self.norm = nn.LayerNorm(self.num_features, eps=1e-5)

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of features[0..4] and of top."""
        return (48, 96, 96, 192, 384, 768)

    def forward(self, x: Tensor) -> EncoderOutput:
        tokens, height, width, features, indices = self.patch_embed(x)
        for stage in self.layers:
            tokens = stage(tokens, height, width)
            if stage.downsample is None:
                break
            tokens, feature, index = stage.downsample(tokens, height, width)
            features.append(feature)
            indices.append(index)
            height, width = height // 2, width // 2
        top = tokens_to_grid(self.norm(tokens), height, width)
        return EncoderOutput(top, tuple(features), tuple(indices))


class P3MNetSwinT(P3MNet):
    """P3M-Net with the Swin-T encoder (45,128,206 parameters; SPEC-swin.md).

    Takes every H and W that are multiples of 32 (minimum 32): attention masks are built for
    the actual grid at run time, so sizes where the official model crashes (e.g. 224x224,
    448x448) run too, and outputs at the sizes it accepts are unchanged. `img_size` only
    shapes the persistent `attn_mask` buffers; keep 512 to load official checkpoints.
    `integration` leaves out integration modules for the Table 7 ablations (`basic-swin-t`,
    `p3mnet-swin-t-tfi`, ...; see `Integration`).

    Example: ``out = P3MNetSwinT().eval()(x)``, x: N x 3 x H x W ImageNet-normalised.
    """

    def __init__(self, img_size: int = 512, integration: Integration = FULL_INTEGRATION) -> None:
        super().__init__(
            SwinTEncoder(img_size),
            P3MDecoder(768, (384, 192, 96, 96), 48, 48, integration=integration),
            variant=integration.variant_name("swin-t"),
            min_size=32,
            fcp_layers=(
                "encoder.patch_embed.act1",
                "encoder.patch_embed.act2",
                "encoder.layers.0.downsample.skip",
                "encoder.layers.1.downsample.skip",
                "encoder.layers.2.downsample.skip",
            ),
        )


def _register() -> None:
    from p3m.models.registry import P3M_NET_SOURCE_PAGE, ModelSpec, register_model

    register_model(
        ModelSpec(
            name="p3mnet-swin-t",
            constructor=P3MNetSwinT,
            description=(
                "P3M-Net with the Swin-T encoder (IJCV 2023), 45.13M parameters. No P3M-10k checkpoint "
                "of this variant was published (the authors released only P3M-Net(ViTAE-S) and the "
                f"ImageNet Swin-T/ViTAE-S backbones, see {P3M_NET_SOURCE_PAGE}); train it with p3m."
            ),
            min_size=32,
            size_multiple=32,
            checkpoints=(),
            num_parameters=45_128_206,
        )
    )


_register()
