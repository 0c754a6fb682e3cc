"""Token/grid helpers and layers shared by the transformer backbones (Swin-T, ViTAE-S).

Token tensors are N x (h*w) x C with tokens in row-major order (index = row*w + col).
"""

from __future__ import annotations

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
