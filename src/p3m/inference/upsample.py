"""Resizing helpers for the pixel budget: shrink a photo, and bring an alpha matte back up.

`upsample_alpha(..., method="guided")` is the fast guided filter (He & Sun, "Fast Guided
Filter", 2015): the linear model alpha ~ a * luma + b is fitted at low resolution, a and b are
upsampled bilinearly, and applied to the full-resolution luma, so matte edges follow the edges
of the full-resolution photo instead of the blur of a bilinear upsampling. Only pixels near
the matte's transition are changed; flat 0 / 1 regions stay exact.

    >>> small, scale = shrink_image(image, max_pixels=2_000_000)
    >>> alpha = upsample_alpha(alpha_small, image, method="guided")
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["budget_scale", "resize_alpha", "shrink_image", "upsample_alpha"]

UpsampleMethod = Literal["guided", "bilinear"]


def budget_scale(height: int, width: int, max_pixels: int | None) -> float:
    """Scale factor (<= 1) that brings height x width within `max_pixels` (1 when it fits)."""
    if max_pixels is None or height * width <= max_pixels:
        return 1.0
    return math.sqrt(max_pixels / (height * width))


def shrink_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Downscale RGB uint8 to (height, width) with an antialiasing Lanczos filter (Pillow)."""
    height, width = size
    shrunk = Image.fromarray(image).resize(
        (width, height), Image.Resampling.LANCZOS, reducing_gap=3.0
    )
    return np.array(shrunk)


def resize_alpha(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (half-pixel centres) resize of a float H x W map to (height, width), float32."""
    height, width = size
    resized = Image.fromarray(np.ascontiguousarray(alpha, dtype=np.float32), mode="F").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.array(resized, dtype=np.float32)


def _luma(image: np.ndarray) -> np.ndarray:
    """float32 luma in [0, 1] of an RGB uint8 image (Pillow's ITU-R 601 "L" conversion)."""
    gray = np.asarray(Image.fromarray(image).convert("L"), dtype=np.float32)
    return gray / 255.0


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
    upsampled[band] = refined[band]
    return upsampled
