"""Pre-processing of the official P3M-Net inference: working sizes, resizing and normalisation.

The official code resizes with scikit-image's `resize` defaults (bilinear, reflect boundary,
Gaussian anti-aliasing when shrinking, uint8 input rescaled to [0, 1]); `resize_like_official`
calls exactly that, so results match bit for bit.

    >>> working_size(1080, 1620, ratio=0.5)
    (512, 800)
"""

from __future__ import annotations

import numpy as np
import torch

from p3m.models.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_SIDE",
    "SIZE_MULTIPLE",
    "image_to_tensor",
    "resize_like_official",
    "working_size",
]

MAX_SIDE = 1600
"""Official MAX_SIZE_H = MAX_SIZE_W: no side of a model input is longer."""
SIZE_MULTIPLE = 32


def working_size(
    height: int,
    width: int,
    ratio: float,
    multiple: int = SIZE_MULTIPLE,
    max_side: int = MAX_SIDE,
    min_side: int = SIZE_MULTIPLE,
) -> tuple[int, int]:
    """Model input size for a target ratio, per axis: min(max_side, t - t % multiple), t = int(n * ratio).

    Axes are treated independently like the official code (the aspect ratio is not kept exactly).
    `min_side` (rounded up to `multiple`) only applies where the official rule would give a size
    the model cannot take (tiny images, where the official code fails).
    """
    floor = -(-max(min_side, multiple) // multiple) * multiple

    def one_axis(n: int) -> int:
        target = int(n * ratio)
        return max(floor, min(max_side, target - target % multiple))

    return one_axis(height), one_axis(width)


def resize_like_official(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`skimage.transform.resize(array, size)` with its defaults, as the official inference calls it.

    uint8 input comes back as floats in [0, 1] (float64); float32 input stays float32.
    """
    from skimage.transform import resize

    output_shape = tuple(size) + tuple(array.shape[2:])
    return resize(array, output_shape)


def image_to_tensor(image_0_255: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """H x W x 3 float image on the 0..255 scale -> normalised 1 x 3 x H x W float32 tensor.

    Same operations and order as the official `inference_once`: float32, / 255, ImageNet mean/std.
    """
    x = torch.from_numpy(np.ascontiguousarray(image_0_255, dtype=np.float32))
    x = x.permute(2, 0, 1).unsqueeze(0) / 255.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - mean) / std).to(device)
