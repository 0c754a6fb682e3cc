"""Test-time fusion helpers of the official P3M-Net procedure (numpy, 0..255 trimap scale).

    >>> trimap = trimap_from_global_logits(global_logits)          # uint8 {0, 128, 255}
    >>> alpha = fuse_trimap_and_local(trimap.astype(float), local)  # known -> 0/1, else local
"""

from __future__ import annotations

import numpy as np

__all__ = ["TRIMAP_VALUES", "fuse_trimap_and_local", "trimap_from_global_logits"]

TRIMAP_VALUES = np.array([0, 128, 255], dtype=np.uint8)


def trimap_from_global_logits(global_logits: np.ndarray) -> np.ndarray:
    """Official `gen_trimap_from_segmap_e2e`: argmax over classes of batch element 0 -> {0,128,255}.

    `global_logits` is N x 3 x H x W (only element 0 is used); ties go to the lowest class.
    """
    global_logits = np.asarray(global_logits)
    if global_logits.ndim != 4 or global_logits.shape[1] != 3:
        raise ValueError(f"global logits must be N x 3 x H x W, got shape {global_logits.shape}")
    return TRIMAP_VALUES[np.argmax(global_logits[0], axis=0)]


def fuse_trimap_and_local(global_trimap: np.ndarray, local_alpha: np.ndarray) -> np.ndarray:
    """Official `get_masked_local_from_global_test`: exact 0/255 trimap pixels win, all others local.

    `global_trimap` is on the 0..255 float scale (usually a resized trimap, so only values that are
    exactly 0 or 255 count as known); `local_alpha` is in [0, 1]. Returns float64 in [0, 1].
    """
    global_trimap = np.asarray(global_trimap, dtype=np.float64)
    local_alpha = np.asarray(local_alpha, dtype=np.float64)
    if global_trimap.shape != local_alpha.shape:
        raise ValueError(
            f"trimap shape {global_trimap.shape} differs from local alpha shape {local_alpha.shape}"
        )
    weight = np.ones_like(global_trimap)
    weight[global_trimap == 255] = 0.0
    weight[global_trimap == 0] = 0.0
    return global_trimap * (1.0 - weight) / 255.0 + local_alpha * weight
