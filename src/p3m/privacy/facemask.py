"""The face mask of P3M-10k (paper Fig. 3): landmark polygons minus the matte's transition area.

Hair strands over a face, and every other semi-transparent pixel, must stay untouched so that the
anonymised data stays useful for matting. The transition area is the set of pixels with
0 < alpha < 1, dilated by `TRANSITION_MARGIN` pixels (a disc of that radius) so that the
colours right next to the semi-transparent band, which matting methods sample as local foreground
and background, are not obfuscated either.

    >>> facemask = face_mask(image.shape[:2], faces, alpha)      # bool H x W, True = obfuscate
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from p3m.detection.faces import Face
from p3m.errors import ShapeMismatchError
from p3m.privacy.landmarks import private_polygons

__all__ = ["TRANSITION_MARGIN", "face_mask", "polygon_mask", "transition_area"]

TRANSITION_MARGIN = 3  # pixels


def polygon_mask(shape: tuple[int, int], faces: Sequence[Face]) -> np.ndarray:
    """Union of the faces' private polygons, filled (bool H x W)."""
    canvas = np.zeros(shape[:2], np.uint8)
    for face in faces:
        for polygon in private_polygons(face):
            # Fixed point with 4 fractional bits keeps sub-pixel landmark positions.
            points = np.round(polygon * 16).astype(np.int32).reshape(-1, 1, 2)
            cv2.fillPoly(canvas, [points], 255, lineType=cv2.LINE_8, shift=4)
    return canvas > 0


def transition_area(alpha: np.ndarray, margin: int = TRANSITION_MARGIN) -> np.ndarray:
    """Pixels with 0 < alpha < 1, dilated by a disc of radius `margin` px (bool H x W)."""
    alpha = np.asarray(alpha)
    if np.issubdtype(alpha.dtype, np.integer):
        transition = (alpha > 0) & (alpha < 255)  # 8-bit matte as read from disk
    else:
        transition = (alpha > 0) & (alpha < 1)
    if margin > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        transition = cv2.dilate(transition.astype(np.uint8), kernel) > 0
    return transition


def face_mask(
    shape: tuple[int, ...],
    faces: Sequence[Face],
    alpha: np.ndarray | None = None,
    transition_margin: int = TRANSITION_MARGIN,
) -> np.ndarray:
    """The private area to obfuscate: face polygons minus the (dilated) transition area.

    `shape` is the image shape (H, W[, 3]); `alpha` float32 in [0, 1] (or uint8 0..255) of the
    same size, or None to skip the exclusion. Returns bool H x W, True where to obfuscate.
    """
    height, width = shape[:2]
    facemask = polygon_mask((height, width), faces)
    if alpha is not None:
        if alpha.shape[:2] != (height, width):
            raise ShapeMismatchError(
                f"alpha matte is {alpha.shape[1]}x{alpha.shape[0]}, image is {width}x{height}"
            )
        facemask &= ~transition_area(alpha, transition_margin)
    return facemask
