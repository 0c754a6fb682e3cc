"""Token/grid helpers and layers shared by the transformer backbones (Swin-T, ViTAE-S).

Token tensors are N x (h*w) x C with tokens in row-major order (index = row*w + col).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from p3m.models.ops import max_pool2x2_with_indices


def tokens_to_grid(tokens: Tensor, height: int, width: int) -> Tensor:
    """N x (h*w) x C row-major tokens -> N x C x h x w map."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


def grid_to_tokens(grid: Tensor) -> Tensor:
    """N x C x h x w map -> N x (h*w) x C row-major tokens."""
    return grid.flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """Linear -> exact (erf) GELU -> Linear."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PoolingMerge(nn.Module):
    """P3M-Net patch merging: LayerNorm -> (skip feature) -> 2x2 index max-pool -> Linear C->2C.

    Replaces the usual 2x2 concatenation so that the decoder can unpool with the indices.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)
        self.linear = nn.Linear(channels, 2 * channels, bias=False)
        # Stateless hook point on the skip feature map (N x C x h x w), e.g. for P3M-CP's FCP.
        self.skip = nn.Identity()

    def forward(self, x: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (merged tokens at half resolution, skip feature map, pool indices)."""
        skip = self.skip(tokens_to_grid(self.norm(x), height, width))
        pooled, indices = max_pool2x2_with_indices(skip)
        return self.linear(grid_to_tokens(pooled)), skip, indices


class ConvStem(nn.Module):
    """P3M-Net stem of the transformer encoders: conv-ReLU-pool, conv-ReLU-pool, conv, tokens, LN.

    Replaces the 4x4 patch embedding (total stride 4) so that the decoder gets the two shallow
    skip features and their pool indices. Swin-T applies a ReLU after the third conv
    (`final_relu=True`), ViTAE-S does not. `act1` / `act2` are hook points (features[0], [1]).
    """

    def __init__(self, channels: int, final_relu: bool) -> None:
        super().__init__()
        self.final_relu = final_relu
        self.proj1 = nn.Conv2d(3, channels // 2, 3, padding=1)
        self.act1 = nn.ReLU()
        self.proj2 = nn.Conv2d(channels // 2, channels, 3, padding=1)
        self.act2 = nn.ReLU()
        self.proj3 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = nn.LayerNorm(channels, eps=1e-5)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int, list[Tensor], list[Tensor]]:
        """N x 3 x H x W -> (LN'd tokens at H/4, H/4, W/4, [F0, F1], [pool indices of F0, F1])."""
        features: list[Tensor] = []
        indices: list[Tensor] = []
        pooled = x
        for proj, act in ((self.proj1, self.act1), (self.proj2, self.act2)):
            feature = act(proj(pooled))
            pooled, index = max_pool2x2_with_indices(feature)
            features.append(feature)
            indices.append(index)
        grid = self.proj3(pooled)
        if self.final_relu:
            grid = F.relu(grid)
        height, width = grid.shape[-2:]
        return self.norm(grid_to_tokens(grid)), height, width, features, indices
