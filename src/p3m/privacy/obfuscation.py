"""Face obfuscation inside a mask (paper Table 8): Gaussian blur, mosaic, or zero masking.

Strength scales with the size of each masked region (a connected part of the mask, after
grouping parts closer than a few pixels), or of the face it belongs to when the face boxes are
given (a face split by a hair strand keeps the whole face's scale): the blur sigma is
`BLUR_SIGMA_FRACTION` x the size (geometric mean of the bounding-box sides), the kernel
spans +-3 sigma; mosaic blocks are region size / `MOSAIC_BLOCKS` pixels. The defaults were chosen
so that neither MediaPipe detector nor dlib finds a blurred face again (see tests). Every pixel
outside the mask is returned bit-identical.

    >>> anonymised = obfuscate(image, facemask, method="blur")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from p3m.errors import ConfigError, ShapeMismatchError
from p3m.vocabulary import ObfuscationMethod, values

__all__ = [
    "BLUR_SIGMA_FRACTION",
    "METHODS",
    "MOSAIC_BLOCKS",
    "ObfuscationRegion",
    "mask_regions",
    "obfuscate",
    "obfuscate_area",
    "strengthening_ladder",
]

METHODS: tuple[str, ...] = values(ObfuscationMethod)
BLUR_SIGMA_FRACTION = 0.12
MOSAIC_BLOCKS = 7
_GROUPING_RADIUS = 4  # px: mask parts closer than this count as one region
_DIRECT_SIGMA = 8.0  # px: larger blurs are computed at reduced resolution (`_wide_blur`)


@dataclass(frozen=True)
class ObfuscationRegion:
    """One masked region: bounding box (x0, y0, x1, y1, exclusive ends), size and the parameter used."""

    box: tuple[int, int, int, int]
    size: float
    parameter: float  # blur sigma or mosaic block size in pixels (0 for "mask")


def mask_regions(facemask: np.ndarray) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """Connected regions of the mask (parts closer than a few pixels grouped): box and bool crop mask."""
    kernel = cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * _GROUPING_RADIUS + 1, 2 * _GROUPING_RADIUS + 1)
    )
    grouped = cv2.dilate(facemask.astype(np.uint8), kernel)
    count, labels = cv2.connectedComponents(grouped, connectivity=8)
    regions = []
    for label in range(1, count):
        member = (labels == label) & facemask
        ys, xs = np.nonzero(member)
        if len(xs) == 0:
            continue
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        regions.append((box, member[box[1] : box[3], box[0] : box[2]]))
    return regions


def _blurred_crop(image: np.ndarray, box: tuple[int, int, int, int], sigma: float) -> np.ndarray:
    radius = int(math.ceil(3 * sigma))
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box
    px0, py0 = max(0, x0 - radius), max(0, y0 - radius)
    px1, py1 = min(width, x1 + radius), min(height, y1 + radius)
    padded = image[py0:py1, px0:px1]
    if sigma > _DIRECT_SIGMA:
        blurred = _wide_blur(padded, sigma)
    else:
        blurred = cv2.GaussianBlur(
            padded, (2 * radius + 1, 2 * radius + 1), sigma, borderType=cv2.BORDER_REFLECT
        )
    return blurred[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]


def _wide_blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of large `sigma` computed at reduced resolution.

    Shrunk by `sigma / _DIRECT_SIGMA` (area averaging), blurred with the equivalent sigma and
    enlarged again (bilinear): what is left of the face is the same low-pass image, at a cost
    that no longer grows with sigma squared (a 600-px face at 4x strength: seconds -> ms).
    """
    factor = sigma / _DIRECT_SIGMA
    height, width = pixels.shape[:2]
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    small = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    small_sigma = math.sqrt(max(_DIRECT_SIGMA**2 - 0.25, 0.25))  # area averaging blurred a little
    radius = int(math.ceil(3 * small_sigma))
    small = cv2.GaussianBlur(
        small, (2 * radius + 1, 2 * radius + 1), small_sigma, borderType=cv2.BORDER_REFLECT
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _mosaic_crop(image: np.ndarray, box: tuple[int, int, int, int], block: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    crop = image[y0:y1, x0:x1]
    height, width = crop.shape[:2]
    small = cv2.resize(
        crop,
        (max(1, math.ceil(width / block)), max(1, math.ceil(height / block))),
        interpolation=cv2.INTER_AREA,
    )
    return np.repeat(np.repeat(small, block, axis=0), block, axis=1)[:height, :width]


def _region_size(box: tuple[int, int, int, int], face_boxes: Sequence[Sequence[float]]) -> float:
    x0, y0, x1, y1 = box
    size = math.sqrt((x1 - x0) * (y1 - y0))
    # A face cut in pieces by a semi-transparent strand is obfuscated at the whole face's scale.
    for fx0, fy0, fx1, fy1 in face_boxes:
        if fx0 < x1 and x0 < fx1 and fy0 < y1 and y0 < fy1:
            size = max(size, math.sqrt((fx1 - fx0) * (fy1 - fy0)))
    return size


def _replacement(
    image: np.ndarray, box: tuple[int, int, int, int], size: float, method: str, strength: float
) -> tuple[np.ndarray, float]:
    x0, y0, x1, y1 = box
    if method == "blur":
        parameter = max(1.0, BLUR_SIGMA_FRACTION * size * strength)
        return _blurred_crop(image, box, parameter), parameter
    if method == "mosaic":
        parameter = float(max(2, round(size / MOSAIC_BLOCKS * strength)))
        return _mosaic_crop(image, box, int(parameter)), parameter
    return np.zeros((y1 - y0, x1 - x0, 3), np.uint8), 0.0


def strengthening_ladder(method: str, strength: float = 1.0) -> list[tuple[str, float]]:
    """The (method, strength) steps tried in turn until a face is no longer recognised.

    Blur at `strength`, its sigma doubled while it stays within 4x the default (or 4x the
    requested strength), then mosaic (1x, 2x the block), then a solid fill ("mask"); a mosaic
    starts at its own rung; "mask" is already the last.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown obfuscation method {method!r}; choose from {', '.join(METHODS)}")
    steps: list[tuple[str, float]] = []
    if method == "blur":
        value, ceiling = strength, 4.0 * max(strength, 1.0)
        while value <= ceiling * (1 + 1e-9):
            steps.append(("blur", round(value, 4)))
            value *= 2
    if method in ("blur", "mosaic"):
        first = strength if method == "mosaic" else 1.0
        steps += [("mosaic", first), ("mosaic", 2.0 * first)]
    steps.append(("mask", 1.0))
    return steps


def obfuscate_area(
    image: np.ndarray,
    out: np.ndarray,
    window: tuple[int, int, int, int],
    mask: np.ndarray,
    size: float,
    method: str,
    strength: float = 1.0,
) -> float:
    """Obfuscate one face: write into `out` (H x W x 3, in place) where `mask` (bool, the size
    of `window` = x0, y0, x1, y1) is True, from the pixels of `image`. The blur sigma / mosaic
    block follow the face's `size` (px). Returns that parameter (0 for "mask")."""
    if method not in METHODS:
        raise ConfigError(f"unknown obfuscation method {method!r}; choose from {', '.join(METHODS)}")
    if strength <= 0:
        raise ConfigError(f"obfuscation strength must be > 0, got {strength}")
    x0, y0, x1, y1 = window
    if x1 <= x0 or y1 <= y0 or not mask.any():
        return 0.0
    replacement, parameter = _replacement(image, window, size, method, strength)
    target = out[y0:y1, x0:x1]
    target[mask] = replacement[mask]
    return round(parameter, 2)


def obfuscate(
    image: np.ndarray,
    facemask: np.ndarray,
    method: str = "blur",
    strength: float = 1.0,
    face_boxes: Sequence[Sequence[float]] = (),
) -> tuple[np.ndarray, list[ObfuscationRegion]]:
    """Obfuscate `image` (RGB uint8) where `facemask` (bool H x W) is True; elsewhere bit-identical.

    `strength` multiplies the blur sigma and the mosaic block size. A region overlapping one of
    `face_boxes` (x0, y0, x1, y1) is scaled to the largest such face. Returns the new image and
    the regions with the parameter each got (for the manifest).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown obfuscation method {method!r}; choose from {', '.join(METHODS)}")
    if strength <= 0:
        raise ConfigError(f"obfuscation strength must be > 0, got {strength}")
    if facemask.shape != image.shape[:2]:
        raise ShapeMismatchError(
            f"face mask is {facemask.shape[1]}x{facemask.shape[0]}, image is {image.shape[1]}x{image.shape[0]}"
        )
    facemask = facemask.astype(bool)
    out = image.copy()
    regions: list[ObfuscationRegion] = []
    for box, member in mask_regions(facemask):
        x0, y0, x1, y1 = box
        size = _region_size(box, face_boxes)
        replacement, parameter = _replacement(image, box, size, method, strength)
        target = out[y0:y1, x0:x1]
        target[member] = replacement[member]
        regions.append(
            ObfuscationRegion(box=box, size=round(size, 1), parameter=round(parameter, 2))
        )
    return out, regions
