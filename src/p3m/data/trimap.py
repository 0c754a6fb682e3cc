"""Trimap generation for training: the official dilate/erode rule with OpenCV ellipse kernels.

    >>> trimap = trimap_from_alpha(alpha_u8, kernel_size=20)   # uint8 {0, 128, 255}
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["ellipse_kernel", "trimap_from_alpha"]


def ellipse_kernel(kernel_size: int) -> np.ndarray:
    """OpenCV's MORPH_ELLIPSE structuring element (k x k, uint8); not a true disc, asymmetric for even k."""
    if kernel_size < 1:
        raise ValueError(f"kernel size must be >= 1, got {kernel_size}")
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))


def trimap_from_alpha(alpha: np.ndarray, kernel_size: int) -> np.ndarray:
    """Official `gen_trimap_with_dilate`: unknown = dilate(alpha != 0) minus erode(alpha == 255).

    `alpha` is on the 0..255 scale (uint8, or floats holding 0..255: a [0, 1] float matte has no
    foreground at all, as officially). OpenCV default borders: erosion does not eat into
    foreground touching the image border. Returns uint8 {0, 128, 255}.
    """
    alpha = np.asarray(alpha)
    if alpha.ndim != 2:
        raise ValueError(f"alpha must be H x W, got shape {alpha.shape}")
    kernel = ellipse_kernel(kernel_size)
    foreground_or_unknown = np.not_equal(alpha, 0).astype(np.uint8)
    foreground = np.equal(alpha, 255).astype(np.uint8)
    dilated = cv2.dilate(foreground_or_unknown, kernel, iterations=1)
    eroded = cv2.erode(foreground, kernel, iterations=1)
    trimap = np.zeros(alpha.shape, np.uint8)
    trimap[dilated > 0] = 128
    trimap[eroded > 0] = 255
    return trimap
