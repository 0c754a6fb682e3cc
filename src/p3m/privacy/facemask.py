"""The face mask of P3M-10k (paper Fig. 3): landmark polygons minus the matte's transition area.

Hair strands over a face, and every other semi-transparent pixel, must stay untouched so that the
anonymised data stays useful for matting. The transition area is the set of pixels with
0 < alpha < 1, dilated by `TRANSITION_MARGIN` pixels (a disc of that radius) so that the
colours right next to the semi-transparent band, which matting methods sample as local foreground
and background, are not obfuscated either.

That rule assumes an exact matte (P3M-10k's are hand-made). A matte p3m estimated itself has a
soft band that spills over the cheeks next to the hair, so with `alpha_estimated=True` the
transition area is only spared outside the inner face: the hull of the eye, nose and mouth
landmarks together with the jaw-and-brow outline pulled in by `INNER_FACE_INSET` x the face
width. Hair outside that keeps its pixels; facial skin never does.

Each face's private area (`face_areas`) is checked to contain every inner-face landmark and
detector keypoint before the transition area is taken out (`coverage_gaps`).

    >>> facemask = face_mask(image.shape[:2], faces, alpha)      # bool H x W, True = obfuscate
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from p3m.detection.faces import Face
from p3m.errors import ShapeMismatchError
from p3m.privacy.landmarks import (
    COVERAGE_MARGIN,
    core_points,
    face_width,
    feature_points,
    outline_polygon,
    private_polygons,
)

__all__ = [
    "INNER_FACE_INSET",
    "TRANSITION_MARGIN",
    "FaceArea",
    "coverage_gaps",
    "face_areas",
    "face_mask",
    "inner_face_mask",
    "polygon_mask",
    "transition_area",
]

TRANSITION_MARGIN = 3  # pixels
INNER_FACE_INSET = 0.10  # x face width: how far the outline is pulled in for the inner face


@dataclass(frozen=True)
class FaceArea:
    """One face's private area: `mask` (bool) covers `window` (x0, y0, x1, y1) of the image."""

    window: tuple[int, int, int, int]
    mask: np.ndarray

    @property
    def pixels(self) -> int:
        return int(self.mask.sum())

    def paste(self, canvas: np.ndarray, value: bool = True) -> None:
        """Set `canvas` (bool H x W) to `value` where this area is."""
        x0, y0, x1, y1 = self.window
        canvas[y0:y1, x0:x1][self.mask] = value

    def full(self, shape: tuple[int, ...]) -> np.ndarray:
        canvas = np.zeros(shape[:2], bool)
        self.paste(canvas)
        return canvas


def _window(
    polygons: Sequence[np.ndarray], shape: tuple[int, ...], pad: int = 2
) -> tuple[int, int, int, int]:
    points = np.concatenate([np.asarray(p, np.float32).reshape(-1, 2) for p in polygons])
    height, width = shape[:2]
    x0 = int(np.clip(math.floor(points[:, 0].min()) - pad, 0, width))
    y0 = int(np.clip(math.floor(points[:, 1].min()) - pad, 0, height))
    x1 = int(np.clip(math.ceil(points[:, 0].max()) + pad + 1, 0, width))
    y1 = int(np.clip(math.ceil(points[:, 1].max()) + pad + 1, 0, height))
    return x0, y0, max(x0, x1), max(y0, y1)


def _fill(
    polygons: Sequence[np.ndarray], window: tuple[int, int, int, int]
) -> np.ndarray:
    """The filled union of `polygons` (image coordinates) on the window's canvas, bool."""
    x0, y0, x1, y1 = window
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    origin = np.float32([x0, y0])
    for polygon in polygons:
        # Fixed point with 4 fractional bits keeps sub-pixel landmark positions.
        points = np.round((np.asarray(polygon, np.float32) - origin) * 16).astype(np.int32)
        cv2.fillPoly(canvas, [points.reshape(-1, 1, 2)], 255, lineType=cv2.LINE_8, shift=4)
    return canvas > 0


def _disc(radius: float) -> np.ndarray:
    side = 2 * max(1, int(math.ceil(radius))) + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))


def coverage_gaps(area: FaceArea, face: Face, shape: tuple[int, ...]) -> np.ndarray:
    """The face's inner-face landmarks and keypoints (inside the image) not covered by `area`."""
    points = feature_points(face)
    height, width = shape[:2]
    inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
    points = points[inside]
    if not len(points):
        return points
    x0, y0, x1, y1 = area.window
    xs = np.floor(points[:, 0]).astype(int) - x0
    ys = np.floor(points[:, 1]).astype(int) - y0
    within = (xs >= 0) & (xs < x1 - x0) & (ys >= 0) & (ys < y1 - y0)
    covered = np.zeros(len(points), bool)
    covered[within] = area.mask[ys[within], xs[within]]
    return points[~covered]


def face_areas(shape: tuple[int, ...], faces: Sequence[Face]) -> list[FaceArea]:
    """Each face's private area (see `p3m.privacy.landmarks.private_polygons`), checked.

    Any inner-face landmark or keypoint the polygons leave out (none by construction: this is a
    guard against degenerate landmarks) gets a disc of `COVERAGE_MARGIN` x the face width.
    """
    areas = []
    for face in faces:
        polygons = private_polygons(face)
        radius = COVERAGE_MARGIN * face_width(face)
        features = feature_points(face)
        pad = int(math.ceil(radius)) + 2
        window = _window(polygons + ([features] if len(features) else []), shape, pad)
        area = FaceArea(window, _fill(polygons, window))
        gaps = coverage_gaps(area, face, shape)
        if len(gaps):
            patch = np.zeros(area.mask.shape, np.uint8)
            for x, y in gaps - np.float32(window[:2]):
                cv2.circle(patch, (int(x), int(y)), max(1, int(radius)), 1, -1)
            area = FaceArea(window, area.mask | (patch > 0))
        areas.append(area)
    return areas


def polygon_mask(shape: tuple[int, int], faces: Sequence[Face]) -> np.ndarray:
    """Union of the faces' private areas, filled (bool H x W)."""
    canvas = np.zeros(shape[:2], bool)
    for area in face_areas(shape, faces):
        area.paste(canvas)
    return canvas


def inner_face_mask(shape: tuple[int, ...], faces: Sequence[Face]) -> np.ndarray:
    """The inner face of every face (bool H x W): never spared with an estimated matte.

    Per face: the hull of its eye, nose and mouth landmarks (or detector keypoints), united
    with its jaw-and-brow outline (or fallback ellipse) eroded by `INNER_FACE_INSET` x the face
    width.
    """
    canvas = np.zeros(shape[:2], bool)
    for face in faces:
        outline = outline_polygon(face)
        core = core_points(face)
        polygons = [outline] + ([cv2.convexHull(core).reshape(-1, 2)] if len(core) >= 3 else [])
        window = _window(polygons, shape, pad=2)
        x0, y0, x1, y1 = window
        if x1 <= x0 or y1 <= y0:
            continue
        inset = INNER_FACE_INSET * face_width(face)
        # Erode on a canvas that reaches past the image, so the border does not erode the face.
        pad = int(math.ceil(inset)) + 2
        wide = (x0 - pad, y0 - pad, x1 + pad, y1 + pad)
        eroded = cv2.erode(_fill([outline], wide).astype(np.uint8), _disc(inset)) > 0
        inner = eroded[pad:-pad, pad:-pad]
        if len(polygons) > 1:
            inner = inner | _fill(polygons[1:], window)
        canvas[y0:y1, x0:x1] |= inner
    return canvas


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


def spared_area(
    shape: tuple[int, ...],
    faces: Sequence[Face],
    alpha: np.ndarray,
    transition_margin: int = TRANSITION_MARGIN,
    alpha_estimated: bool = False,
) -> np.ndarray:
    """The pixels a face mask leaves untouched for the matte's sake (bool H x W).

    Exact matte: the dilated transition area. Estimated matte: the same minus every face's
    inner face (`inner_face_mask`).
    """
    height, width = shape[:2]
    if alpha.shape[:2] != (height, width):
        raise ShapeMismatchError(
            f"alpha matte is {alpha.shape[1]}x{alpha.shape[0]}, image is {width}x{height}"
        )
    spared = transition_area(alpha, transition_margin)
    if alpha_estimated and faces:
        spared &= ~inner_face_mask(shape, faces)
    return spared


def face_mask(
    shape: tuple[int, ...],
    faces: Sequence[Face],
    alpha: np.ndarray | None = None,
    transition_margin: int = TRANSITION_MARGIN,
    alpha_estimated: bool = False,
) -> np.ndarray:
    """The private area to obfuscate: face areas minus the (dilated) transition area.

    `shape` is the image shape (H, W[, 3]); `alpha` float32 in [0, 1] (or uint8 0..255) of the
    same size, or None to skip the exclusion; `alpha_estimated`: the matte is an estimate, so
    the inner face is never spared. Returns bool H x W, True where to obfuscate.
    """
    facemask = polygon_mask(shape[:2], faces)
    if alpha is not None:
        facemask &= ~spared_area(shape, faces, alpha, transition_margin, alpha_estimated)
    return facemask
