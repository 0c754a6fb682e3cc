"""Resizing helpers for the pixel budget: shrink a photo, and bring an alpha matte back up.

`upsample_alpha(..., method="guided")` is the fast guided filter (He & Sun, "Fast Guided
Filter", 2015): the linear model alpha ~ a * luma + b is fitted at low resolution, a and b are
upsampled bilinearly, and applied to the full-resolution luma, so matte edges follow the edges
of the full-resolution photo instead of the blur of a bilinear upsampling. Only pixels near
the matte's transition are changed; flat 0 / 1 regions stay exact.

    >>> small = shrink_image(image, (1080, 1620))
    >>> alpha = upsample_alpha(alpha_small, image, method="guided")
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
import torch
from scipy import ndimage

__all__ = ["budget_scale", "resize_alpha", "shrink_image", "upsample_alpha"]

UpsampleMethod = Literal["guided", "bilinear"]


def budget_scale(height: int, width: int, max_pixels: int | None) -> float:
    """Scale factor (<= 1) that brings height x width within `max_pixels` (1 when it fits)."""
    if max_pixels is None or height * width <= max_pixels:
        return 1.0
    return math.sqrt(max_pixels / (height * width))


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing memory with `array`, read-only arrays included (p3m never writes to it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(array))


def _interpolate(values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, half-pixel centres; antialiased when shrinking (1 x C x H x W)."""
    shrinking = size[0] < values.shape[-2] or size[1] < values.shape[-1]
    return torch.nn.functional.interpolate(
        values, size=size, mode="bilinear", align_corners=False, antialias=shrinking
    )


def shrink_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize RGB uint8 to (height, width): antialiased bilinear when shrinking, bilinear otherwise."""
    pixels = _as_tensor(image).permute(2, 0, 1).unsqueeze(0)
    if size[0] < image.shape[0] or size[1] < image.shape[1]:
        resized = _interpolate(pixels, size)  # uint8 in, uint8 out (rounded)
    else:
        resized = _interpolate(pixels.float(), size).round_().clamp_(0, 255).to(torch.uint8)
    return resized[0].permute(1, 2, 0).contiguous().numpy()


def resize_alpha(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (half-pixel centres, antialiased when shrinking) resize of a float H x W map, float32."""
    values = _as_tensor(np.asarray(alpha, dtype=np.float32))[None, None]
    return _interpolate(values, size)[0, 0].numpy()


def _luma(image: np.ndarray) -> np.ndarray:
    """float32 luma in [0, 1] of an RGB uint8 image (ITU-R 601 weights)."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32) / np.float32(255)
    return np.dot(np.asarray(image).reshape(-1, 3), weights).reshape(image.shape[:2])


def upsample_alpha(
    alpha_small: np.ndarray,
    image: np.ndarray,
    method: UpsampleMethod = "guided",
    radius: int = 2,
    eps: float = 1e-4,
) -> np.ndarray:
    """Upsample a float alpha to the size of the RGB uint8 `image`; float32 in [0, 1].

    `radius` (in low-resolution pixels) and `eps` are the guided filter's window and
    regularisation. "bilinear" is plain interpolation.
    """
    height, width = image.shape[:2]
    alpha_small = np.asarray(alpha_small, dtype=np.float32)
    if alpha_small.shape == (height, width):
        return alpha_small.copy()
    upsampled = resize_alpha(alpha_small, (height, width))
    if method == "bilinear":
        return np.clip(upsampled, 0.0, 1.0)
    if method != "guided":
        raise ValueError(f"unknown upsampling method {method!r}; use 'guided' or 'bilinear'")

    guide_small = _luma(shrink_image(image, alpha_small.shape))
    size = 2 * radius + 1

    def box(values: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(values, size=size, mode="reflect")

    mean_guide = box(guide_small)
    mean_alpha = box(alpha_small)
    covariance = box(guide_small * alpha_small) - mean_guide * mean_alpha
    variance = box(guide_small * guide_small) - mean_guide * mean_guide
    slope = covariance / (variance + eps)
    offset = mean_alpha - slope * mean_guide
    slope = box(slope)
    offset = box(offset)

    # Pixels whose low-resolution neighbourhood is all 0 or all 1 keep the bilinear value.
    fractional = (alpha_small > 1e-3) & (alpha_small < 1 - 1e-3)
    band_small = ndimage.binary_dilation(fractional, iterations=radius + 1)
    band = resize_alpha(band_small.astype(np.float32), (height, width)) > 0
    del band_small

    guide = _luma(image)
    refined = resize_alpha(slope, (height, width))
    refined *= guide
    del guide
    refined += resize_alpha(offset, (height, width))
    np.clip(refined, 0.0, 1.0, out=refined)
    np.clip(upsampled, 0.0, 1.0, out=upsampled)
    np.copyto(upsampled, refined, where=band)
    return upsampled
