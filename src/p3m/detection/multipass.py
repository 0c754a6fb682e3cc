"""The multi-pass face search: every detector, every scale where faces can be, four orientations.

One pass of one detector misses faces: CenterFace at native scale finds few faces under 24 px,
MediaPipe sees the whole image at 128 or 192 px, no detector finds a head turned upside down.
`detect` runs, for an RGB image:

1. CenterFace on the whole image at native scale, for each orientation in `rotations` (the
   image turned by 90, 180, 270 degrees: heads lying down or upside down; rotated passes see the
   image at most `rotated_max_side` px long), plus a coarse pass at `coarse_side` px on large
   images (faces larger than CenterFace's native range);
2. the upscaled pass (`upscale`, default 2x: faces down to about 10 px) only where small faces
   can be. How that is decided: the native pass's heatmap is the network's own evidence of a face
   centre. A face too small to be detected at native scale still raises it a little (measured on
   the synthetic group photos of `p3m.privacy.testdata`: at >= 0.02 for 97 % of faces of 24-48 px
   and most of 16-24 px), while plain walls, sky or skin without eyes and mouth leave it near
   zero. The image is cut into `gate_cell` px cells; cells holding a local heatmap maximum of at
   least `gate_threshold`, outside the faces found confidently at native scale, are grouped into
   rectangles (8-connected cells), widened by a margin, and only those are upscaled; when they
   cover most of the image the whole image is upscaled in one pass. The upright view goes
   first: the small faces it finds explain their peaks in the turned views too;
3. both MediaPipe models on the upright image (the full-range one also on 640-px tiles of large
   images), and dlib's HOG detector where it is in the union (in a second thread, beside the
   CenterFace passes: dlib releases the GIL and uses one core);
4. weak CenterFace detections (score < 0.25) confirmed by a closer look, the face enlarged to
   96 px (`confirm_weak`): a low threshold finds cut, rolled and small faces, this check takes
   out most of the textures it also lets in. A weak detection that `merge_faces` would fold into
   a confident one (most of them: the same face seen by another pass) is dropped unchecked, as
   it would add nothing (about 13 closer looks per 640 x 480 group photo become 4);
5. all detections merged (`merge_faces`): a face found by any pass of any detector counts.

Each pass is timed (`FaceDetections.passes`), so the cost of recall is visible per megapixel.
Nearly all of the time is CenterFace's, in proportion to the pixels it is given (about 9x the
image's over the passes of a 640 x 480 photo; ~0.2 CPU s per megapixel here): the preset
"standard" (`DetectionConfig.preset`) gives it a third less.

    >>> found = detect(image)                                 # FaceDetections
    >>> found.faces, found.seconds_per_megapixel, found.by_detector()
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from p3m.detection.faces import (
    CONTAINMENT_THRESHOLD,
    DEFAULT_DETECTORS,
    TILE_TRIGGER,
    Face,
    _check_image,
    box_containment,
    box_iou,
    expand_detector_names,
    eye_line_roll,
    merge_faces,
    run_detector,
    run_tiled,
)
from p3m.errors import ConfigError

__all__ = [
    "DETECTION_PRESETS",
    "DetectionConfig",
    "FaceDetections",
    "PassRecord",
    "check_rotations",
    "detect",
    "detect_faces",
]

logger = logging.getLogger(__name__)

_CONFIDENT = 0.5  # a native-scale CenterFace face at least this sure needs no upscaled look
_GATE_MARGIN = 24  # px (in the pass's pixels) around gated cells: a 48-px face centred in one fits
_WHOLE_IMAGE_FRACTION = 0.6  # gated windows covering more than this: upscale the whole image
_LARGE_FACE = 40  # px: a face found at least this wide at native scale needs no upscaled look
# A CenterFace detection scoring below `_WEAK` is kept only if a closer look (the face
# enlarged to `_FOCUS_SIDE` px) scores at least `_CONFIRMED` at its place. Measured on the
# synthetic group photos (2 x ~300 faces): threshold 0.1 with this check keeps 97.6-98.0 % of
# faces >= 24 px with ~1 false detection per 640 x 480 photo; threshold 0.15 without it,
# 96.8-98.4 % with ~1.2; threshold 0.1 without it, 98.0-98.8 % with ~3.7.
_WEAK = 0.25
_CONFIRMED = 0.15
_FOCUS_SIDE = 96


@dataclass(frozen=True)
class DetectionConfig:
    """How hard to look for faces (defaults: recall first).

    `detectors`: names or aliases (see `p3m.detection.faces.DETECTOR_NAMES`; "default" =
    CenterFace + both MediaPipe models + dlib HOG where dlib is installed).
    `min_confidence`: MediaPipe threshold; `centerface_confidence`: CenterFace threshold (its
    scores run lower than MediaPipe's: 0.1 keeps cut, rolled and small faces); `confirm_weak`:
    detections scoring below 0.25 must hold up in a closer look (`_confirm`; removes most
    false detections that a low threshold lets in); `dlib_confidence`: dlib's scores after the logistic (0.6 = HOG margin 0.4: at 0 the
    HOG detector fires on the astronaut's glove, real faces score above 1).
    `rotations`: orientations searched by CenterFace, degrees counter-clockwise (upright is
    always searched, first: see `check_rotations`).
    `upscale`: factor of the gated upscaled pass (1 disables it); `upscaled_rotations`: the
    orientations that get it (None: every one searched); `gate_threshold`, `gate_cell`: the
    gate. `tiled`: MediaPipe full-range tiles (None: when the long side exceeds 1024 px).

    Presets (`DetectionConfig.preset`, `DETECTION_PRESETS`): "thorough" is the default above;
    "standard" leaves out the upscaled windows of the turned views (90, 180, 270 degrees), which
    only serve turned faces too small for the turned view's native pass (under ~24 px; under
    ~47 px in a 4000-px photo, whose turned views are searched at 2048 px).
    """

    detectors: tuple[str, ...] = DEFAULT_DETECTORS
    min_confidence: float = 0.5
    centerface_confidence: float = 0.1
    dlib_confidence: float = 0.6
    dlib_max_side: int = 1600
    iou_threshold: float = 0.3
    rotations: tuple[int, ...] = (0, 90, 180, 270)
    rotated_max_side: int = 2048
    coarse_side: int = 1024
    upscale: float = 2.0
    gate_threshold: float = 0.02
    gate_cell: int = 64
    confirm_weak: bool = True
    tiled: bool | None = None
    upscaled_rotations: tuple[int, ...] | None = None

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DetectionConfig:
        """The named preset ("thorough", "standard"; see the class doc), fields overridden."""
        if name not in DETECTION_PRESETS:
            raise ConfigError(
                f"unknown detection preset {name!r}; choose from {', '.join(DETECTION_PRESETS)}"
            )
        return replace(cls(**DETECTION_PRESETS[name]), **overrides)

    def upscales(self, rotation: int) -> bool:
        """Whether the orientation `rotation` gets the gated upscaled pass."""
        if self.upscale <= 1:
            return False
        return self.upscaled_rotations is None or rotation in self.upscaled_rotations

    def __post_init__(self) -> None:
        if isinstance(self.detectors, str):
            object.__setattr__(self, "detectors", (self.detectors,))
        object.__setattr__(self, "rotations", check_rotations(tuple(self.rotations)))
        check_rotations(self.upscaled_rotations or (0,), "upscaled_rotations")
        if self.upscale < 1:
            raise ConfigError(f"upscale must be >= 1 (1 = no upscaled pass), got {self.upscale}")
        if not 0 < self.centerface_confidence < 1 or not 0 < self.min_confidence < 1:
            raise ConfigError("detection thresholds must be in (0, 1)")


def check_rotations(rotations: tuple[int, ...], name: str = "rotations") -> tuple[int, ...]:
    """The orientations to search (degrees counter-clockwise, each 0, 90, 180 or 270) for
    `rotations`: upright (0) first and always, then the others in the order given, without
    repeats; -90 and 360 are taken as 270 and 0. `ConfigError` naming them as `name` (the
    command line passes "--rotations") for any other angle or an empty list.

    Upright is never left out: `--rotations 90` reads as "also 90", and leaving out 0 found
    fewer than half the faces of a group photo.
    """
    bad = [rotation for rotation in rotations if rotation % 360 not in (0, 90, 180, 270)]
    if bad:
        raise ConfigError(f"{name} must be among 0, 90, 180, 270 degrees, got {', '.join(map(str, bad))}")
    if not rotations:
        raise ConfigError(f"{name} needs at least one orientation (0: upright only)")
    return tuple(dict.fromkeys((0, *(rotation % 360 for rotation in rotations))))


# Fields of each preset (the rest: `DetectionConfig`'s defaults). "standard", measured on the
# synthetic group photos of p3m.privacy.testdata (640 x 480, seeds 5, 7 and 11, ~200 faces
# each): the same faces >= 24 px found as "thorough", 1-2 fewer of 16-24 px per seed (turned
# ones), a third fewer CenterFace pixels (1.9 instead of 2.9 MP per photo).
DETECTION_PRESETS: dict[str, dict[str, Any]] = {
    "thorough": {},
    "standard": {"upscaled_rotations": (0,)},
}


@dataclass(frozen=True)
class PassRecord:
    """One pass: which detector, orientation and scale, how many input pixels, time, faces."""

    detector: str
    rotation: int
    scale: float
    region: str  # "whole", "coarse", "gated", "tiles"
    pixels: int
    seconds: float
    faces: int

    def to_dict(self) -> dict:
        return {
            "detector": self.detector,
            "rotation": self.rotation,
            "scale": round(self.scale, 4),
            "region": self.region,
            "megapixels": round(self.pixels / 1e6, 4),
            "seconds": round(self.seconds, 4),
            "faces": self.faces,
        }


@dataclass
class FaceDetections:
    """The merged faces of one image (by decreasing score) and the passes that found them."""

    faces: list[Face]
    shape: tuple[int, int]
    passes: list[PassRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def megapixels(self) -> float:
        return self.shape[0] * self.shape[1] / 1e6

    @property
    def seconds_per_megapixel(self) -> float:
        return self.seconds / max(self.megapixels, 1e-9)

    @property
    def upscaled_fraction(self) -> float:
        """Share of the (upright) image the gated upscaled CenterFace pass looked at."""
        area = sum(
            p.pixels / (p.scale * p.scale)
            for p in self.passes
            if p.region in ("gated", "upscaled") and p.rotation == 0
        )
        return min(1.0, area / max(self.shape[0] * self.shape[1], 1))

    def by_detector(self) -> dict[str, int]:
        """Merged faces each detector contributed to (a face found by two counts for both)."""
        counts: dict[str, int] = {}
        for face in self.faces:
            for name in face.detectors:
                counts[name] = counts.get(name, 0) + 1
        return counts

    def summary(self) -> dict:
        return {
            "faces": len(self.faces),
            "by_detector": self.by_detector(),
            "seconds": round(self.seconds, 3),
            "megapixels": round(self.megapixels, 3),
            "seconds_per_megapixel": round(self.seconds_per_megapixel, 3),
            "upscaled_fraction": round(self.upscaled_fraction, 3),
        }


# ----------------------------------------------------------------------------- orientation


def _unrotate(points: np.ndarray, quarter_turns: int, shape: tuple[int, int]) -> np.ndarray:
    """Points (..., 2) found in `np.rot90(image, quarter_turns)` back in `image` coordinates.

    One counter-clockwise turn of an H x W image takes (x, y) to (y, W - x) in continuous
    pixel coordinates; this applies the inverse `quarter_turns` times.
    """
    height, width = shape
    x, y = points[..., 0], points[..., 1]
    turns = quarter_turns % 4
    if turns == 1:
        x, y = width - y, x
    elif turns == 2:
        x, y = width - x, height - y
    elif turns == 3:
        x, y = y, height - x
    return np.stack([x, y], axis=-1).astype(np.float32)


def _to_image(face: Face, rotation: int, shape: tuple[int, int]) -> Face:
    """A face found in the rotated view, in image coordinates (box: the turned box's bounds)."""
    x0, y0, x1, y1 = face.box
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)
    corners = _unrotate(corners, rotation // 90, shape)
    keypoints5 = None
    if face.keypoints5 is not None:
        keypoints5 = _unrotate(face.keypoints5, rotation // 90, shape)
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return replace(
        face,
        box=(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])),
        keypoints5=keypoints5,
        rotation=rotation,
        roll=eye_line_roll(keypoints5) if keypoints5 is not None else float(rotation),
    )


# ----------------------------------------------------------------------------- CenterFace passes


def _gated_windows(
    heatmap: np.ndarray,
    shape: tuple[int, int],
    confident: Sequence[Sequence[float]],
    threshold: float,
    cell: int,
) -> list[tuple[int, int, int, int]]:
    """Windows (x0, y0, x1, y1, in the pass's pixels) around cells where small faces can be."""
    from p3m.detection.centerface import CENTERFACE_STRIDE, _local_peaks

    rows, cols = _local_peaks(heatmap, threshold)
    xs = (cols + 0.5) * CENTERFACE_STRIDE
    ys = (rows + 0.5) * CENTERFACE_STRIDE
    height, width = shape
    keep = (xs < width) & (ys < height)
    for x0, y0, x1, y1 in confident:  # their own centres: already found
        keep &= ~((xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1))
    grid = np.zeros((math.ceil(height / cell), math.ceil(width / cell)), np.uint8)
    grid[(ys[keep] // cell).astype(int), (xs[keep] // cell).astype(int)] = 1
    count, _, stats, _ = cv2.connectedComponentsWithStats(grid, connectivity=8)
    windows = []
    for label in range(1, count):
        gx, gy, gw, gh = stats[label, :4]
        windows.append((
            max(0, gx * cell - _GATE_MARGIN), max(0, gy * cell - _GATE_MARGIN),
            min(width, (gx + gw) * cell + _GATE_MARGIN), min(height, (gy + gh) * cell + _GATE_MARGIN),
        ))  # fmt: skip
    return windows


def _rotate(points: np.ndarray, quarter_turns: int, shape: tuple[int, int]) -> np.ndarray:
    """Image points (..., 2) in `np.rot90(image, quarter_turns)` (inverse of `_unrotate`)."""
    height, width = shape
    x, y = points[..., 0], points[..., 1]
    turns = quarter_turns % 4
    if turns == 1:
        x, y = y, width - x
    elif turns == 2:
        x, y = width - x, height - y
    elif turns == 3:
        x, y = height - y, x
    return np.stack([x, y], axis=-1).astype(np.float32)


class _CenterFaceView:
    """CenterFace passes over the image turned by `rotation`, seen at scale `base`."""

    def __init__(
        self, image: np.ndarray, rotation: int, config: DetectionConfig, records: list[PassRecord]
    ) -> None:
        self.view = np.ascontiguousarray(np.rot90(image, rotation // 90)) if rotation else image
        self.rotation = rotation
        self.shape = image.shape[:2]
        self.config = config
        self.records = records
        self.side = max(self.view.shape[:2])
        self.base = 1.0 if rotation == 0 else min(1.0, config.rotated_max_side / self.side)
        self.heatmap: np.ndarray | None = None
        self.heatmap_shape = (0, 0)

    def run(
        self, pixels: np.ndarray, scale: float, region: str, origin=(0, 0), prescale=1.0
    ) -> tuple[list[Face], object]:
        """CenterFace on `pixels` resized by `scale`; `pixels` is the view resized by
        `prescale` and cropped at `origin`. Faces in image coordinates."""
        from p3m.detection.centerface import decode_centerface, predict_centerface

        start = time.perf_counter()
        output = predict_centerface(pixels, scale)
        boxes, scores, keypoints = decode_centerface(output, self.config.centerface_confidence)
        shift = np.float32(origin)
        faces = [
            _to_image(
                Face(
                    tuple(float(v) for v in (box.reshape(2, 2) + shift).ravel() / prescale),
                    float(score),
                    ("centerface",),
                    keypoints5=(points + shift) / np.float32(prescale),
                ),
                self.rotation,
                self.shape,
            )
            for box, score, points in zip(boxes, scores, keypoints, strict=True)
        ]
        self.records.append(
            PassRecord("centerface", self.rotation, scale * prescale, region,
                       output.shape[0] * output.shape[1], time.perf_counter() - start, len(faces))
        )  # fmt: skip
        return faces, output

    def whole(self) -> list[Face]:
        """The native pass (at `base`) and, on large images, the coarse pass."""
        faces, output = self.run(self.view, self.base, "whole")
        self.heatmap, self.heatmap_shape = output.heatmap, output.shape
        if self.side * self.base > 1.5 * self.config.coarse_side:
            faces += self.run(self.view, self.config.coarse_side / self.side, "coarse")[0]
        return faces

    def upscaled(self, explained: Sequence[Face]) -> list[Face]:
        """The upscaled pass where small faces can be: around heatmap peaks not inside a face
        already `explained` (found confidently, or too large to need an upscaled look)."""
        if self.heatmap is None or not self.config.upscales(self.rotation):
            return []
        turns = self.rotation // 90
        boxes = []
        for face in explained:
            x0, y0, x1, y1 = face.box
            corners = _rotate(np.float32([[x0, y0], [x1, y1]]), turns, self.shape) * self.base
            boxes.append((*corners.min(axis=0), *corners.max(axis=0)))
        windows = _gated_windows(
            self.heatmap, self.heatmap_shape, boxes, self.config.gate_threshold, self.config.gate_cell
        )
        area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in windows)
        height, width = self.heatmap_shape
        if area > _WHOLE_IMAGE_FRACTION * height * width:
            return self.run(self.view, self.base * self.config.upscale, "upscaled")[0]
        faces: list[Face] = []
        if windows:
            from p3m.detection.centerface import resize_for_scale

            scaled = resize_for_scale(self.view, self.base)
            for x0, y0, x1, y1 in windows:
                crop = np.ascontiguousarray(scaled[y0:y1, x0:x1])
                faces += self.run(crop, self.config.upscale, "gated", (x0, y0), self.base)[0]
        return faces


def _confirm(image: np.ndarray, face: Face, config: DetectionConfig) -> Face | None:
    """A second, closer look at a weak CenterFace detection: the face's surroundings, turned
    upright by its pass's quarter turns and enlarged so the face is `_FOCUS_SIDE` px wide
    (a larger candidate is looked at again at native scale, in its own surroundings).

    A small real face scores higher when enlarged (the upscaled pass shows it); a texture that
    looked like a face at one scale rarely holds up. Returns the face with the better score, or
    None when the closer look finds nothing at its place.
    """
    from p3m.detection.centerface import decode_centerface, predict_centerface

    x0, y0, x1, y1 = face.box
    size = max(x1 - x0, y1 - y0, 2.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    height, width = image.shape[:2]
    left, top = int(max(0, cx - 1.5 * size)), int(max(0, cy - 1.5 * size))
    right, bottom = int(min(width, cx + 1.5 * size)), int(min(height, cy + 1.5 * size))
    if right - left < 2 or bottom - top < 2:
        return None
    turns = face.rotation // 90
    crop = np.ascontiguousarray(np.rot90(image[top:bottom, left:right], turns))
    scale = min(4.0, max(1.0, _FOCUS_SIDE / size))
    boxes, scores, _ = decode_centerface(predict_centerface(crop, scale), config.centerface_confidence)
    if not len(boxes):
        return None
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    centres = _unrotate(centres, turns, (bottom - top, right - left)) + np.float32([left, top])
    inside = (centres[:, 0] >= x0) & (centres[:, 0] <= x1) & (centres[:, 1] >= y0) & (centres[:, 1] <= y1)
    if not inside.any() or scores[inside].max() < _CONFIRMED:
        return None
    return replace(face, score=max(face.score, float(scores[inside].max())))


def _absorbed(face: Face, boxes: Sequence[Sequence[float]], iou_threshold: float) -> bool:
    """Whether `merge_faces` would fold `face` into a detection with one of `boxes` (IoU or
    containment): a weak detection of a face already found confidently adds nothing to it."""
    return any(
        box_iou(box, face.box) >= iou_threshold
        or box_containment(box, face.box) >= CONTAINMENT_THRESHOLD
        for box in boxes
    )


def _explains_small_faces(face: Face) -> bool:
    """A face whose centre region needs no upscaled look: confident, or large enough that the
    native pass sees it well (a small face is never inside another face)."""
    return face.score >= _CONFIDENT or face.width >= _LARGE_FACE


def _centerface_search(
    image: np.ndarray, config: DetectionConfig, records: list[PassRecord]
) -> list[Face]:
    """Native passes for every orientation first; then the upscaled windows of each, around
    heatmap peaks that no face found so far (in any orientation) explains."""
    views = [_CenterFaceView(image, rotation, config, records) for rotation in config.rotations]
    found: list[Face] = []
    for view in views:
        found += view.whole()
    explained = [face for face in found if _explains_small_faces(face)]
    for view in views:  # upright first: the small faces it finds explain peaks in the others
        faces = view.upscaled(explained)
        found += faces
        explained += [face for face in faces if _explains_small_faces(face)]
    if not config.confirm_weak:
        return found
    start = time.perf_counter()
    strong = [face.box for face in found if face.score >= _WEAK]
    kept, looked = [], 0
    for face in found:
        if face.score < _WEAK:
            if _absorbed(face, strong, config.iou_threshold):
                continue  # `merge_faces` would fold it into a kept face: nothing to confirm
            looked += 1
            face = _confirm(image, face, config)
        if face is not None:
            kept.append(face)
    records.append(PassRecord("centerface", 0, 1.0, "confirm", looked, time.perf_counter() - start,
                              len(kept)))  # fmt: skip
    return kept


# ----------------------------------------------------------------------------- the search


def _run_dlib(image: np.ndarray, name: str, config: DetectionConfig) -> list[Face]:
    """dlib's detectors on a copy at most `dlib_max_side` px long (HOG upsampled once on images
    up to 1.2 MP), scores at least `dlib_confidence`: a complement for frontal faces, whose
    cost must not grow with the photo (HOG upsampled on 12 MP takes seconds)."""
    from p3m.detection.centerface import resize_for_scale

    scale = min(1.0, config.dlib_max_side / max(image.shape[:2]))
    small = np.ascontiguousarray(resize_for_scale(image, scale))
    upsample = 1 if small.shape[0] * small.shape[1] <= 1.2e6 else 0
    if name == "dlib-cnn":
        upsample = 0
    faces = run_detector(small, name, dlib_upsample=upsample)
    return [
        replace(face, box=tuple(v / scale for v in face.box))
        for face in faces
        if face.score >= config.dlib_confidence
    ]


def _timed_pass(name: str, region: str, pixels: int, call) -> tuple[list[Face], PassRecord]:
    start = time.perf_counter()
    faces = call()
    return faces, PassRecord(name, 0, 1.0, region, pixels, time.perf_counter() - start, len(faces))


def _timed(records: list[PassRecord], name: str, region: str, pixels: int, call) -> list[Face]:
    faces, record = _timed_pass(name, region, pixels, call)
    records.append(record)
    return faces


def detect(image: np.ndarray, config: DetectionConfig | None = None) -> FaceDetections:
    """Every face in `image` (RGB uint8 H x W x 3) by the multi-pass search (module doc).

    Returns `FaceDetections`: faces by decreasing score (boxes in image pixels; CenterFace boxes
    of faces cut by the border reach outside the image), and the timed passes. Raises
    `MissingDependencyError` when a requested detector is not installed (the message names the
    command), `ConfigError` for unknown names.
    """
    config = config or DetectionConfig()
    image = _check_image(image)
    names = expand_detector_names(config.detectors)
    height, width = image.shape[:2]
    pixels = height * width
    records: list[PassRecord] = []
    found: list[Face] = []
    start = time.perf_counter()
    # dlib's detectors release the GIL and use one core: they run beside the CenterFace search.
    dlib_names = [name for name in names if name.startswith("dlib")]
    beside = ThreadPoolExecutor(1, "p3m-dlib") if dlib_names and "centerface" in names else None
    pending = {
        name: beside.submit(_timed_pass, name, "whole", pixels, lambda name=name: _run_dlib(image, name, config))
        for name in (dlib_names if beside is not None else ())
    }  # fmt: skip
    try:
        if "centerface" in names:
            found += _centerface_search(image, config, records)
    finally:
        if beside is not None:
            beside.shutdown(wait=True)
    for name in names:
        if name == "centerface":
            continue
        if name in pending:
            faces, record = pending[name].result()
            records.append(record)
        elif name.startswith("dlib"):
            faces = _timed(records, name, "whole", pixels, lambda name=name: _run_dlib(image, name, config))
        else:
            faces = _timed(
                records, name, "whole", pixels,
                lambda name=name: run_detector(image, name, min_confidence=config.min_confidence),
            )  # fmt: skip
        found += faces
    tiled = config.tiled if config.tiled is not None else max(height, width) > TILE_TRIGGER
    if tiled and "mediapipe-full" in names:
        found += _timed(
            records, "mediapipe-full", "tiles", pixels,
            lambda: run_tiled(image, "mediapipe-full", config.min_confidence),
        )  # fmt: skip
    faces = merge_faces(found, config.iou_threshold)
    seconds = time.perf_counter() - start
    for record in records:
        logger.debug("pass %s", record)
    return FaceDetections(faces, (height, width), records, seconds)


def detect_faces(
    image: np.ndarray,
    detectors: Sequence[str] | str = DEFAULT_DETECTORS,
    min_confidence: float = 0.5,
    iou_threshold: float = 0.3,
    tiled: bool | None = None,
    **options: Any,
) -> list[Face]:
    """Every face in `image` (RGB uint8 H x W x 3): the multi-pass search of
    `p3m.detection.multipass` with the union of `detectors`, merged by IoU.

    `min_confidence` is MediaPipe's threshold; `options` are the other `DetectionConfig` fields
    (`centerface_confidence`, `rotations`, `upscale`, ...). `tiled` adds MediaPipe full-range
    tiles (default: when the longer side exceeds `TILE_TRIGGER` px). Returns faces by
    decreasing score, each with box, score, the detectors that found it, keypoints where a
    detector gives them, and orientation; no dense landmarks (see `p3m.privacy.landmarks`).
    Raises `MissingDependencyError` naming the install command when a detector is missing.

    `detect_faces(image, "mediapipe", rotations=(0,), upscale=1)` is the pre-CenterFace search.
    """
    config = DetectionConfig(
        detectors=(detectors,) if isinstance(detectors, str) else tuple(detectors),
        min_confidence=min_confidence,
        iou_threshold=iou_threshold,
        tiled=tiled,
        **options,
    )
    return detect(image, config).faces
