"""`selfie-cf`: the classical matting pipeline that works offline without P3M-Net weights.

MediaPipe's selfie segmentation is made for one person close to a webcam. On the photos people
send (groups, distant people, dark rooms, nobody at all) it has to be told where to look, so
the pipeline is people-aware:

1. **Exposure** (`p3m.detection.exposure.normalize_exposure`): a dark photo is brightened for
   the detectors and the segmenter only; the matte is solved on the photo's own pixels (times
   one gain, a linear map that keeps the compositing equation true).
2. **Whole-frame pass**: the selfie segmentation of the whole image (MediaPipe's legacy model 0,
   the 256 x 256 "general" model bundled in the `mediapipe==0.10.21` wheel; the landscape model 1
   marks parts of the astronaut's flag and table as person). Its blobs are candidate people.
3. **People** (`p3m.detection.people`): faces in the whole image, then faces or a pose inside
   each candidate blob no face explains; when the people found are small (or none), the blobs of
   the segmenter run on 512-px tiles and faces in 256-px tiles too. No person: an empty matte
   and a note (`SelfieCFConfig.require_person`), not a guess.
4. **Per-person segmentation**: each person is segmented in a square crop around them (the
   model's input is square: a row of people is not squeezed into it, a distant person is seen at
   a useful size), also mirrored, by the general model and, where it is unsure, the landscape
   model too; a crop whose mask runs into its border grows and is segmented again, unless the
   wider view calls person what the tighter one was sure is background. A doubtful face whose
   crop is person on both sides of the head, or whose mirrored views disagree, is not a person
   (face-like patterns in gravel), nor one with no shoulders below it (a face-like logo on a
   rocket); nor a person found by a pose alone whose mask is no wider at the shoulders than at
   the nose (a skeleton fitted onto a rocket). The per-person masks are united (maximum).
5. **Trimap and closed-form matting** (Levin, Lischinski & Weiss, TPAMI 2008;
   `p3m.inference.closed_form`, which never fails on thin or empty regions): only in regions
   around the people, at one scale chosen so that at most `solve_pixels` pixels per person are
   solved (the pixel budget decides it, see `SelfieCFBackend`), with an unknown band proportional
   to each region's size; then guided upsampling (`p3m.inference.upsample`) back to full resolution.

    >>> alpha = matte_selfie_cf(image)                  # float32 H x W in [0, 1]
    >>> result = run_selfie_cf(image)                   # alpha, trimap, people, solve sizes, note
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage

from p3m.detection.exposure import Exposure, normalize_exposure
from p3m.errors import MissingDependencyError
from p3m.inference.closed_form import ClosedFormConfig, solve_closed_form
from p3m.inference.upsample import resize_alpha, shrink_image, upsample_alpha
from p3m.io.stderr import native_stderr_silenced

__all__ = [
    "NO_PERSON_NOTE",
    "PEOPLE_NOT_SEGMENTED_NOTE",
    "SELFIE_CF_NAME",
    "MaskFilter",
    "SelfieCFConfig",
    "SelfieCFResult",
    "SolveRegion",
    "matte_selfie_cf",
    "person_mask",
    "run_selfie_cf",
    "trimap_from_mask",
]

logger = logging.getLogger(__name__)

SELFIE_CF_NAME = "selfie-cf"

INSTALL_HINT = 'pip install "p3m[privacy]" (it installs mediapipe==0.10.21)'

NO_PERSON_NOTE = "no person found (no face or body in the image): the matte is empty"
PEOPLE_NOT_SEGMENTED_NOTE = (
    "{count} person(s) found, but the segmentation kept none of them (a very small, blurred or "
    "low-resolution person?): the matte is empty"
)
EMPTY_ALPHA = 0.05  # a matte with no pixel at or above this is empty

DEFAULT_SOLVE_PIXELS = 120_000
"""Pixels closed-form matting solves at the default budget (about 350 x 350 around the people;
the pipeline before people-awareness solved 448 x 299 of every 1620 x 1080 photo, background
included)."""


@dataclass(frozen=True)
class SelfieCFConfig:
    """Parameters of the selfie-cf pipeline (the defaults were chosen on real portraits)."""

    model_selection: int = 0
    """MediaPipe selfie model: 0 = general (256 x 256), 1 = landscape (144 x 256)."""
    threshold: float = 0.5
    """Probability above which a pixel of the whole-frame pass counts as person (candidate blobs,
    and the matte when no person is looked for)."""
    person_margin: float = 0.1
    """The united per-person masks count a pixel as person above `threshold - person_margin`
    (the trimap's centre line; 0.4 by default): lower than the whole-frame threshold because a
    person crop's mask is already confined to a person, and held objects (a helmet, a bag) often
    sit at 0.4-0.5."""
    band_fraction: float = 0.02
    """Half-width of the unknown band as a fraction of the size of the region being solved."""
    segmentation_max_side: int = 1024
    """The image given to MediaPipe is at most this long (it works at 256 px internally)."""
    solve_pixels: int | None = DEFAULT_SOLVE_PIXELS
    """Closed-form matting solves at most this many pixels per person found (summed over the
    regions around the people, at one common scale), so a group is not solved coarser than a
    portrait; None solves at full resolution. `SelfieCFBackend` scales it with the pixel budget
    (`max_pixels`)."""
    people: bool = True
    """Find people and segment each in its own crop; False runs the whole-frame pass only."""
    require_person: bool = True
    """No person found: an empty matte and a note. False: matte the whole-frame segmentation."""
    detectors: tuple[str, ...] | None = None
    """Face detectors for `p3m.detection.find_people` (None: every one `detect_faces` offers)."""
    use_pose: bool = True
    """Confirm face-less candidate blobs with MediaPipe Pose."""
    normalize_exposure: bool = True
    """Stretch dark or flat images for detection and segmentation (never for the solve)."""
    exposure_gain_in_solve: bool = True
    """Scale the pixels by the exposure gain (a linear map) for the solve, so `epsilon` means the
    same at every exposure. The compositing equation stays true under a linear map."""
    crop_side: int = 512
    """Person crops are given to the segmenter with their longer side at most this long."""
    crop_models: tuple[int, ...] | None = (0, 1)
    """MediaPipe selfie models that segment each person crop: where the first one is unsure
    (probability 0.2-0.8), the mean of their masks is taken (the general and the landscape model
    err on different things: a held helmet, a person-coloured cup behind a shoulder). None:
    `model_selection` only."""
    crop_views: tuple[float, ...] = (1.0,)
    """Framings of each person crop (square side / the crop's longer side, at least 1)."""
    flip_views: bool = True
    """Segment each framing mirrored too (the model is not left-right symmetric)."""
    view_union: bool = True
    """Combine the views by their maximum (a part of the person seen in one view is kept: the
    model's answer on a held helmet or bag flips with the framing and the side) instead of
    their mean."""
    pose_rescue_below: float = 0.7
    """When a person's mask is weaker than this over their face and chest (colours close to the
    background's), BlazePose's person mask of the crop is united with it (0 never)."""
    crop_growth_rounds: int = 3
    """How often a person crop whose mask runs into its border grows and is segmented again."""
    implausible_below: float = 0.75
    """A person found with a score below this is dropped when the crop's mask is person beside
    the head on both sides, at the face's height (a face-like pattern in a texture the segmenter
    calls person, such as gravel; the false faces there score 0.5-0.65, with two detectors agreeing)."""
    min_view_agreement: float = 0.6
    """A person found with a score below `implausible_below` is also dropped when the masks of
    the crop and of its mirror image overlap less than this (IoU; real people: 0.9-1.0, a
    face-like pattern in gravel: 0.2)."""
    min_shoulder_width: float = 1.3
    """A person found with a score below `implausible_below` is also dropped when the crop's
    mask, at the shoulders (half to one and a half face heights below the chin), is nowhere wider
    than this many face widths (shoulders span 2.5-3 face widths, about 2 seen from the side; a
    false face on a rocket, a pole or a bottle sits on a strip as wide as the face). Not checked
    where the shoulders are beyond the frame."""
    min_pose_shoulder_ratio: float = 1.3
    """A person found by a pose alone is dropped when the crop's mask is no wider at the
    shoulders than at the nose (this many times at least: a head is 15 cm wide, shoulders 40 cm
    seen from the front, 25 cm from the side; a rocket BlazePose fits a skeleton onto is a
    strip of one width). Not checked while an elbow or a wrist is above the shoulders (raised
    arms widen the head's row) or the rows are beyond the crop (0: never)."""
    growth_max_contradiction: float = 0.1
    """A grown crop is kept only when its mask calls person at most this fraction (of the person's
    area) of what the smaller crop's mask was sure is background (a normal growth changes well
    under 1 %; a wider view that mistakes a person-like object beside the person for more of
    them changes a third)."""
    min_blob_fraction: float = 0.0002
    """Whole-frame blobs smaller than this fraction of the image are not candidate people."""
    fine_search_below: float = 0.1
    """When no face found is taller than this fraction of the image height, small people may be
    missing: the segmenter runs again on tiles and their blobs are searched too."""
    fine_search_tile: int = 512
    """Tile side of that segmentation."""
    face_tile: int = 256
    """In the same case, faces are also looked for in tiles of this side (faces of ~20 px)."""
    face_search_side: int | None = 640
    """Faces are first looked for in a copy of the whole image at most this long (None: as it
    is); faces smaller than ~10 px at that size are found by the searches that follow (crops of
    candidate regions, tiles). 640 px holds CenterFace to ~0.1 s of CPU on any photo."""
    closed_form: ClosedFormConfig = field(default_factory=ClosedFormConfig)


@dataclass(frozen=True)
class SolveRegion:
    """One region solved by closed-form matting: `box` (x0, y0, x1, y1) in image pixels, and the
    (height, width) at which it was solved."""

    box: tuple[int, int, int, int]
    solved_size: tuple[int, int]
    band: int


@dataclass
class SelfieCFResult:
    """What `run_selfie_cf` found and computed.

    `alpha` float32 H x W in [0, 1]; `trimap` uint8 {0, 128, 255} at the input size (nearest);
    `probability` the united person probability (float32 H x W); `people` the people found;
    `regions` the solved regions; `scale` the common solve scale (1 = full resolution) and
    `solved_size` the (height, width) of the whole image at that scale; `exposure` the curve the
    detectors saw; `note` a one-line remark for the user (e.g. no person found), or None.
    """

    alpha: np.ndarray
    trimap: np.ndarray
    probability: np.ndarray = field(repr=False)
    people: list[Any]
    regions: list[SolveRegion]
    scale: float
    solved_size: tuple[int, int]
    exposure: Exposure
    note: str | None = None


_SEGMENTERS: dict[int, Any] = {}
_SEGMENTER_LOCK = threading.Lock()


def _segmenter(model_selection: int) -> Any:
    """A cached MediaPipe SelfieSegmentation graph (building one takes ~50 ms)."""
    if model_selection not in (0, 1):
        raise ValueError(f"model_selection must be 0 or 1, got {model_selection}")
    if model_selection not in _SEGMENTERS:
        # MediaPipe's C++ logging is noisy on stderr; keep warnings only unless the user set it.
        os.environ.setdefault("GLOG_minloglevel", "2")
        try:
            from mediapipe.python.solutions import selfie_segmentation
        except ImportError as error:
            raise MissingDependencyError(
                f"the selfie-cf matting pipeline needs MediaPipe, which is not installed: {INSTALL_HINT}"
            ) from error
        with native_stderr_silenced():
            segmenter = selfie_segmentation.SelfieSegmentation(model_selection=model_selection)
            # The first call prints TensorFlow Lite / absl start-up lines on the C-level stderr.
            segmenter.process(np.zeros((64, 64, 3), dtype=np.uint8))
        _SEGMENTERS[model_selection] = segmenter
    return _SEGMENTERS[model_selection]


def person_mask(image: np.ndarray, config: SelfieCFConfig | None = None) -> np.ndarray:
    """MediaPipe person probability, float32 H x W in [0, 1], at the size of the RGB uint8 image.

    This is the plain whole-frame pass (the model squeezes the image to its square input).
    """
    config = config or SelfieCFConfig()
    height, width = image.shape[:2]
    scale = min(1.0, config.segmentation_max_side / max(height, width))
    small = image
    if scale < 1.0:
        small = shrink_image(image, (max(1, round(height * scale)), max(1, round(width * scale))))
    with _SEGMENTER_LOCK:  # a MediaPipe graph is not re-entrant
        result = _segmenter(config.model_selection).process(np.ascontiguousarray(small))
    mask = np.asarray(result.segmentation_mask, dtype=np.float32)
    if mask.shape != (height, width):
        mask = resize_alpha(mask, (height, width))
    return np.clip(mask, 0.0, 1.0)


def trimap_from_mask(
    mask: np.ndarray,
    band: int,
    threshold: float = 0.5,
    frame_edges: tuple[bool, bool, bool, bool] = (True, True, True, True),
) -> np.ndarray:
    """uint8 trimap {0, 128, 255}: the thresholded mask eroded (255) and dilated (not 0) by `band`
    px (Euclidean: a disk of that radius).

    Erosion treats the outside of the image as person on the sides flagged in `frame_edges`
    (top, bottom, left, right): there the image is the photo's frame, and a body cut by the frame
    stays opaque at the frame. Other sides (a region cut out of a larger image) count as outside.
    """
    person = np.asarray(mask) > threshold
    radius = max(1, int(band))
    trimap = np.zeros(person.shape, dtype=np.uint8)
    if not person.any():
        return trimap
    top, bottom, left, right = frame_edges
    # Pad by the radius: replicated rows / columns on frame sides, "not person" elsewhere.
    padded = np.pad(person, radius, mode="edge")
    if not top:
        padded[:radius] = False
    if not bottom:
        padded[-radius:] = False
    if not left:
        padded[:, :radius] = False
    if not right:
        padded[:, -radius:] = False
    inner = (slice(radius, -radius), slice(radius, -radius))
    certain = ndimage.distance_transform_edt(padded)[inner] > radius
    possible = ndimage.distance_transform_edt(~person) <= radius
    trimap[possible] = 128
    trimap[certain] = 255
    return trimap


# --------------------------------------------------------------------------- per-person crops


def _segment_square(
    seen: np.ndarray, left: int, top: int, side: int, config: SelfieCFConfig
) -> tuple[np.ndarray, float]:
    """Person probability of the square (left, top, side) of the image, at side x side; pixels
    beyond the frame repeat the edge (a body cut by the frame continues); and the agreement of
    the plain and the mirrored view (IoU of their masks > 0.5; 1 without `flip_views`)."""
    height, width = seen.shape[:2]
    inside = seen[max(0, top) : min(height, top + side), max(0, left) : min(width, left + side)]
    pads = ((max(0, -top), max(0, top + side - height)), (max(0, -left), max(0, left + side - width)), (0, 0))
    square = np.pad(inside, pads, mode="edge") if any(p for pair in pads[:2] for p in pair) else inside
    target = min(config.crop_side, side) if side > 256 else 256
    if target != side:
        square = shrink_image(np.ascontiguousarray(square), (target, target))
    square = np.ascontiguousarray(square)
    masks = []
    agreement = 1.0
    with _SEGMENTER_LOCK:
        for model in config.crop_models or (config.model_selection,):
            segmenter = _segmenter(model)
            mask = np.asarray(segmenter.process(square).segmentation_mask, dtype=np.float32)
            if config.flip_views:
                flipped = np.asarray(segmenter.process(np.ascontiguousarray(square[:, ::-1])).segmentation_mask, dtype=np.float32)
                if not masks:  # the agreement of the first model's views
                    plain, mirrored = mask > 0.5, flipped[:, ::-1] > 0.5
                    union = np.count_nonzero(plain | mirrored)
                    agreement = float(np.count_nonzero(plain & mirrored)) / union if union else 1.0
                mask = np.maximum(mask, flipped[:, ::-1]) if config.view_union else 0.5 * (mask + flipped[:, ::-1])
            masks.append(mask)
    mask = masks[0]
    if len(masks) > 1:
        # The other models have a say only where the first is unsure (0.2-0.8): each model alone
        # errs on different things, and the general model is right where it is sure.
        mask = np.where(np.abs(mask - 0.5) > 0.3, mask, np.mean(masks, axis=0))
    if mask.shape != (side, side):
        mask = resize_alpha(mask, (side, side))
    return mask, agreement


def _segment_crop(seen: np.ndarray, box: Sequence[int], config: SelfieCFConfig) -> tuple[np.ndarray, float]:
    """Person probability inside `box` (x0, y0, x1, y1), at the box size, float32 in [0, 1], and
    the lowest agreement of a view with its mirror image (see `_segment_square`).

    The segmenter's input is square (a long crop would be squeezed), so it gets squares around
    the box, taken from the image where it extends that far; one per framing in `crop_views`
    (the box's longer side times the factor), each also mirrored with `flip_views`; the masks
    are combined by their maximum (`view_union`) or mean. The model's answer on an ambiguous
    part (a held helmet, a patch of grass beside a shoulder) changes with framing and side.
    """
    height, width = seen.shape[:2]
    x0, y0, x1, y1 = box
    views = []
    agreements = []
    for factor in config.crop_views:
        side = max(2, round(max(x1 - x0, y1 - y0) * max(1.0, factor)))
        left = int(round((x0 + x1 - side) / 2))
        top = int(round((y0 + y1 - side) / 2))
        # Keep the square inside the image where it fits: padding only beyond the frame.
        if side <= width:
            left = min(max(left, 0), width - side)
        if side <= height:
            top = min(max(top, 0), height - side)
        square, agreement = _segment_square(seen, left, top, side, config)
        agreements.append(agreement)
        views.append(square[y0 - top : y1 - top, x0 - left : x1 - left])
    combined = np.maximum.reduce(views) if config.view_union else np.mean(views, axis=0)
    return np.clip(combined, 0.0, 1.0).astype(np.float32, copy=False), min(agreements)


def _body_extent(person: Any, width: int, height: int) -> tuple[int, int, int, int]:
    """Where any part of a person found by a face can be (x0, y0, x1, y1): four face widths
    either side of the face (an arm's reach; a standing adult's arm span is about 7.5 heads),
    a face height above it, 8.5 below its top (feet); the whole image for a pose-only person."""
    if person.face is None:
        return (0, 0, width, height)
    fx0, fy0, fx1, fy1 = person.face.box
    face_width, face_height = max(fx1 - fx0, 1.0), max(fy1 - fy0, 1.0)
    centre = (fx0 + fx1) / 2
    return (
        max(0, int(centre - 4 * face_width)),
        max(0, int(fy0 - face_height)),
        min(width, int(math.ceil(centre + 4 * face_width))),
        min(height, int(math.ceil(fy0 + 8.5 * face_height))),
    )


def _grown(
    box: Sequence[int],
    mask: np.ndarray,
    threshold: float,
    width: int,
    height: int,
    limit: Sequence[int] | None = None,
) -> tuple[int, int, int, int] | None:
    """`box` grown on the sides where the person's mask runs into it (not at the frame), within
    `limit` (x0, y0, x1, y1; default the image) and never smaller than it was; None when it
    cannot grow."""
    x0, y0, x1, y1 = box
    lx0, ly0, lx1, ly1 = limit if limit is not None else (0, 0, width, height)
    lx0, ly0, lx1, ly1 = min(lx0, x0), min(ly0, y0), max(lx1, x1), max(ly1, y1)
    box_height, box_width = y1 - y0, x1 - x0
    person = mask > threshold
    grow = [0.0, 0.0, 0.0, 0.0]  # left, top, right, bottom
    edges = ((person[:, 0], x0 > 0, 0), (person[0, :], y0 > 0, 1), (person[:, -1], x1 < width, 2), (person[-1, :], y1 < height, 3))
    for values, open_side, index in edges:
        if open_side and values.mean() > 0.05:
            grow[index] = 0.4
    if not any(grow):
        return None
    grown = (
        max(lx0, int(x0 - grow[0] * box_width)),
        max(ly0, int(y0 - grow[1] * box_height)),
        min(lx1, int(math.ceil(x1 + grow[2] * box_width))),
        min(ly1, int(math.ceil(y1 + grow[3] * box_height))),
    )
    return None if grown == tuple(box) else grown


def _contradicted_fraction(
    box: Sequence[int], mask: np.ndarray, bigger: Sequence[int], bigger_mask: np.ndarray, threshold: float
) -> float:
    """The part of `box` that the mask of the grown crop `bigger` calls person (> threshold) while
    the mask of `box` was sure it is not (< 0.2), as a fraction of the person area in `box`."""
    top, left = box[1] - bigger[1], box[0] - bigger[0]
    inner = bigger_mask[top : top + mask.shape[0], left : left + mask.shape[1]]
    area = max(1, int(np.count_nonzero(mask > threshold)))
    return float(np.count_nonzero((inner > threshold) & (mask < 0.2))) / area


def _head_sides(person: Any, box: Sequence[int], mask: np.ndarray) -> float:
    """Mean probability beside the head, at the face's height (1.5 to 2.5 face widths either
    side of its centre; the lower of the two sides, or the one inside the crop): about 0 for a
    real person (the sides of a head are background, unless an arm is raised on both sides),
    about 1 when the segmenter calls a whole textured patch person (gravel around a face-like
    pattern). 0 for a person found without a face."""
    if person.face is None:
        return 0.0
    fx0, fy0, fx1, fy1 = person.face.box
    face_width, centre = fx1 - fx0, (fx0 + fx1) / 2 - box[0]
    rows = slice(max(0, int(fy0) - box[1]), max(0, int(math.ceil(fy1)) - box[1]))
    sides = []
    for near, far in ((centre - 1.5 * face_width, centre - 2.5 * face_width), (centre + 1.5 * face_width, centre + 2.5 * face_width)):
        lo, hi = int(max(0, min(near, far))), int(min(mask.shape[1], math.ceil(max(near, far))))
        window = mask[rows, lo:hi]
        if window.size and hi - lo >= 0.5 * face_width:
            sides.append(float(window.mean()))
    return min(sides, default=0.0)


def _shoulder_width(person: Any, box: Sequence[int], mask: np.ndarray, threshold: float) -> float:
    """The widest run of person (mask > threshold) through the rows half to one and a half face
    heights below the chin, in face widths; inf when those rows are not all inside the crop
    (a person cut by the frame or the crop) or the person was found without a face."""
    if person.face is None:
        return math.inf
    fx0, fy0, fx1, fy1 = person.face.box
    face_width, face_height = max(fx1 - fx0, 1.0), max(fy1 - fy0, 1.0)
    top, bottom = int(fy1 + 0.5 * face_height) - box[1], int(math.ceil(fy1 + 1.5 * face_height)) - box[1]
    if top < 0 or bottom > mask.shape[0] or bottom <= top:
        return math.inf
    widest = _widest_run(mask[top:bottom] > threshold)
    # A run that touches the crop's side may continue beyond it: do not judge it.
    if widest >= mask.shape[1] - 1:
        return math.inf
    return widest / face_width


def _widest_run(rows: np.ndarray) -> int:
    """The longest run of True in any row of a boolean 2-D array (0 when empty)."""
    widest = 0
    for row in rows:
        edges = np.flatnonzero(np.diff(np.concatenate(([0], row.view(np.int8), [0]))))
        if edges.size:
            widest = max(widest, int((edges[1::2] - edges[0::2]).max()))
    return widest


def _pose_shoulder_ratio(person: Any, box: Sequence[int], mask: np.ndarray, threshold: float) -> float:
    """For a person found by a pose alone: the widest run of person (mask > threshold) just
    below the shoulder line over the widest run at the nose's height; inf when not judged (a
    face was found, no landmarks, an elbow or wrist above the shoulders, rows beyond the crop,
    a run through the crop's whole width)."""
    landmarks = person.landmarks
    if person.face is not None or landmarks is None:
        return math.inf
    nose, shoulders, arms = landmarks[0], landmarks[[11, 12]], landmarks[[13, 14, 15, 16]]
    shoulder_y = float(shoulders[:, 1].mean())
    neck = shoulder_y - float(nose[1])
    if neck <= 1.0 or (arms[:, 1] < shoulder_y).any():
        return math.inf
    head_rows = slice(int(nose[1] - 0.15 * neck) - box[1], int(math.ceil(nose[1] + 0.15 * neck)) - box[1] + 1)
    shoulder_rows = slice(int(shoulder_y) - box[1], int(math.ceil(shoulder_y + 0.5 * neck)) - box[1] + 1)
    if head_rows.start < 0 or shoulder_rows.stop > mask.shape[0]:
        return math.inf
    head = _widest_run(mask[head_rows] > threshold)
    body = _widest_run(mask[shoulder_rows] > threshold)
    if head == 0 or body >= mask.shape[1] - 1:
        return math.inf
    return body / head


def _core_probability(person: Any, box: Sequence[int], mask: np.ndarray) -> float:
    """Mean probability where the person surely is: the face and the chest below it (a face
    width wide, two face heights down); 0 for a person found without a face."""
    if person.face is None:
        return 0.0
    fx0, fy0, fx1, fy1 = person.face.box
    top, bottom = int(fy0) - box[1], int(fy1 + 2 * (fy1 - fy0)) - box[1]
    left, right = int(fx0) - box[0], int(math.ceil(fx1)) - box[0]
    core = mask[max(0, top) : max(0, bottom), max(0, left) : max(0, right)]
    return float(core.mean()) if core.size else 0.0


def _person_probability(
    seen: np.ndarray, people: Sequence[Any], config: SelfieCFConfig
) -> tuple[np.ndarray, list[Any]]:
    """The united per-person probabilities (maximum), float32 at the image size, and the people
    kept (a doubtful face whose crop does not look like a person is dropped)."""
    height, width = seen.shape[:2]
    united = np.zeros((height, width), dtype=np.float32)
    kept = []
    for person in people:
        x0, y0, x1, y1 = person.box
        pad_x, pad_y = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
        box = (
            max(0, int(x0 - pad_x)),
            max(0, int(y0 - pad_y)),
            min(width, int(math.ceil(x1 + pad_x))),
            min(height, int(math.ceil(y1 + pad_y))),
        )
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            kept.append(person)
            continue
        first = box
        mask, agreement = _segment_crop(seen, box, config)
        if person.score < config.implausible_below:
            # The checks below are made on the general model's mask alone (as calibrated).
            if config.crop_models is not None and len(config.crop_models) > 1:
                check, agreement = _segment_crop(seen, box, replace(config, crop_models=config.crop_models[:1]))
            else:
                check = mask
        if person.score < config.implausible_below and (
            agreement < config.min_view_agreement
            or _head_sides(person, box, check) > 0.5
            or _shoulder_width(person, box, check, 0.5) < config.min_shoulder_width
        ):
            # A face-like pattern in a texture (gravel): the segmenter calls person all around
            # it (no head stands in a patch of person as wide as the shoulders), or its answer
            # changes with the side it is seen from (a real person's mask barely moves); or a
            # face-like mark on a narrow object (a rocket): no shoulders below the "face".
            logger.debug("selfie-cf: doubtful person at %s (view agreement %.2f) dropped", person.box, agreement)
            continue
        if config.min_pose_shoulder_ratio > 0 and _pose_shoulder_ratio(person, box, mask, 0.5) < config.min_pose_shoulder_ratio:
            # BlazePose fits a skeleton onto a narrow upright object (a rocket): no shoulders
            # wider than the head in the segmenter's mask.
            logger.debug("selfie-cf: pose-only person at %s without shoulders dropped", person.box)
            continue
        kept.append(person)
        limit = _body_extent(person, width, height)
        for _ in range(config.crop_growth_rounds):
            bigger = _grown(box, mask, config.threshold, width, height, limit)
            if bigger is None:
                break
            bigger_mask, _ = _segment_crop(seen, bigger, config)
            # A wider view that loses the person's face and chest sees something else (the
            # segmenter's attention goes to the largest person-like thing in its square).
            if person.face is not None and _core_probability(person, bigger, bigger_mask) < min(
                config.pose_rescue_below, _core_probability(person, box, mask)
            ):
                logger.debug("selfie-cf: grown crop %s loses the person; kept %s", bigger, box)
                break
            # A wider view that calls person much of what the smaller view was sure is background
            # sees a person-like thing beside the person (a red cup behind a shoulder in a dark
            # photo, seen as more of an orange suit once more of it is in the square).
            contradicted = _contradicted_fraction(box, mask, bigger, bigger_mask, config.threshold - config.person_margin)
            if contradicted > config.growth_max_contradiction:
                logger.debug("selfie-cf: grown crop %s contradicts %s on %.0f %% of the person; kept it", bigger, box, 100 * contradicted)
                break
            box, mask = bigger, bigger_mask
        if config.pose_rescue_below > 0 and _core_probability(person, box, mask) < config.pose_rescue_below:
            from p3m.detection.people import pose_segmentation

            # BlazePose segments one person: show it this one, centred (the grown crop may hold
            # a more prominent neighbour).
            px0, py0 = max(box[0], first[0]), max(box[1], first[1])
            px1, py1 = min(box[2], first[2]), min(box[3], first[3])
            rescue = pose_segmentation(np.ascontiguousarray(seen[py0:py1, px0:px1]))
            if rescue is not None:
                logger.debug("selfie-cf: weak person mask at %s; united with the pose's mask", box)
                window = mask[py0 - box[1] : py1 - box[1], px0 - box[0] : px1 - box[0]]
                np.maximum(window, rescue, out=window)
        region = united[box[1] : box[3], box[0] : box[2]]
        np.maximum(region, mask, out=region)
    return united, kept


def _blob_boxes(
    probability: np.ndarray, threshold: float, min_fraction: float, max_side: int = 640
) -> list[tuple[float, float, float, float]]:
    """Bounding boxes (x0, y0, x1, y1, image pixels) of the connected parts of probability >
    threshold, found on a copy at most `max_side` long (boxes are rounded outwards)."""
    height, width = probability.shape
    step = max(1, math.ceil(max(height, width) / max_side))
    reduced = probability
    if step > 1:  # block maxima: a part thinner than a block still shows
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        padded = np.zeros((rows * step, cols * step), dtype=probability.dtype)
        padded[:height, :width] = probability
        # Strided maxima (ten times faster than a reduction over two axes of a reshape).
        reduced = functools.reduce(np.maximum, (padded[k::step] for k in range(step)))
        reduced = functools.reduce(np.maximum, (reduced[:, k::step] for k in range(step)))
    person = reduced > threshold
    labels, count = ndimage.label(person)
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    boxes = []
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None or sizes[index] < min_fraction * person.size:
            continue
        rows, cols = found
        boxes.append((
            float(max(0, cols.start * step - step)),
            float(max(0, rows.start * step - step)),
            float(min(width, cols.stop * step + step)),
            float(min(height, rows.stop * step + step)),
        ))
    return boxes


def _face_height(person: Any) -> float:
    if person.face is not None:
        return person.face.box[3] - person.face.box[1]
    return person.height / 5.6  # a pose's box spans head to hips at least


def _tiled_mask(seen: np.ndarray, tile: int, config: SelfieCFConfig) -> np.ndarray:
    """Person probability from the segmenter run on overlapping tiles (maximum where they overlap)."""
    height, width = seen.shape[:2]
    stride = max(1, tile * 3 // 4)
    united = np.zeros((height, width), dtype=np.float32)
    rows = list(range(0, max(1, height - tile + 1), stride))
    cols = list(range(0, max(1, width - tile + 1), stride))
    if rows[-1] + tile < height:
        rows.append(height - tile)
    if cols[-1] + tile < width:
        cols.append(width - tile)
    for y in rows:
        for x in cols:
            window = united[y : y + tile, x : x + tile]
            np.maximum(window, person_mask(np.ascontiguousarray(seen[y : y + tile, x : x + tile]), config), out=window)
    return united


def _find_people(seen: np.ndarray, whole: np.ndarray, config: SelfieCFConfig) -> list[Any]:
    """Faces, then the whole-frame blobs; when the people found are small (or none), the blobs
    of a segmentation in tiles and faces in smaller tiles, where small people are large enough
    to be found."""
    from p3m.detection.people import (
        EXPLAINED_COVER,
        covered_fraction,
        default_person_detectors,
        distinct_people,
        people_from_faces,
        people_in_regions,
        people_in_tiles,
    )

    height, width = seen.shape[:2]
    if min(height, width) < 8:  # a strip or a dot: nobody to find
        return []
    options = {"detectors": config.detectors, "use_pose": config.use_pose}
    blobs = _blob_boxes(whole, config.threshold, config.min_blob_fraction)
    # MediaPipe's face detectors first; CenterFace too unless their people explain every blob.
    people = people_from_faces(seen, tiled=False, max_side=config.face_search_side, regions=blobs, **options)
    squeezing = tuple(name for name in default_person_detectors() if name.startswith("mediapipe"))
    if config.detectors is not None:
        squeezing = tuple(name for name in config.detectors if name.startswith("mediapipe"))
    # Face detectors squeeze their input into a square: a long image is also searched in square
    # windows along it (no 640-px tiled pass: small people are looked for below, when needed),
    # unless the people found explain every blob of the whole-frame segmentation.
    explained = bool(people) and all(covered_fraction(blob, people) >= EXPLAINED_COVER for blob in blobs)
    if max(height, width) > 1.34 * min(height, width) and squeezing and not explained:
        # Windows in which a face like the smallest found (or of a person filling half the
        # height) is at least a sixth of the window: large enough for the detectors. Only the
        # detectors that squeeze their input (MediaPipe's, at 128 / 192 px) need them:
        # CenterFace has seen the whole frame in its own proportions.
        smallest = min((_face_height(person) for person in people), default=min(height, width) / 12)
        window = int(min(height, width, max(256, 6 * smallest)))
        people += people_in_tiles(seen, window, people, squeezing, use_pose=config.use_pose)
    people += people_in_regions(seen, blobs, people, **options)
    largest = max((_face_height(person) for person in people), default=0.0)
    tile = min(config.fine_search_tile, height, width)
    if largest < config.fine_search_below * height and max(height, width) > tile >= 64:
        fine = _blob_boxes(_tiled_mask(seen, tile, config), config.threshold, config.min_blob_fraction)
        found = people_in_regions(seen, fine, people, **options)
        found += people_in_tiles(seen, config.face_tile, people + found, **options)
        logger.debug("selfie-cf: fine search in %d px tiles: %d blob(s), %d more person(s)", tile, len(fine), len(found))
        people += found
    people = distinct_people(people)
    logger.debug("selfie-cf: %d person(s) found, %d whole-frame blob(s)", len(people), len(blobs))
    return people


# --------------------------------------------------------------------------- solving


def _regions(probability: np.ndarray, threshold: float, pad: float) -> list[tuple[int, int, int, int]]:
    """Padded, merged boxes (x0, y0, x1, y1) around the parts of probability > threshold."""
    height, width = probability.shape
    boxes = []
    for x0, y0, x1, y1 in _blob_boxes(probability, threshold, 0.0):
        margin = pad * max(x1 - x0, y1 - y0) + 4
        boxes.append([max(0, int(x0 - margin)), max(0, int(y0 - margin)),
                      min(width, int(math.ceil(x1 + margin))), min(height, int(math.ceil(y1 + margin)))])
    merged = True
    while merged and len(boxes) > 1:  # merge overlapping boxes until none overlap
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return [tuple(box) for box in boxes]  # type: ignore[misc]


def _nearest(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    rows = np.minimum(((np.arange(size[0]) + 0.5) * values.shape[0] / size[0]).astype(int), values.shape[0] - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * values.shape[1] / size[1]).astype(int), values.shape[1] - 1)
    return values[rows[:, None], cols[None, :]]


def _solve_pixels(image: np.ndarray, exposure: Exposure, config: SelfieCFConfig) -> np.ndarray:
    """The float pixels the solve sees: the photo, times the exposure gain (a linear map)."""
    pixels = image.astype(np.float32)
    if config.exposure_gain_in_solve and exposure.gain != 1.0:
        pixels = np.clip((pixels - np.float32(exposure.offset)) * np.float32(exposure.gain), 0.0, 255.0)
    return pixels / np.float32(255.0)


def _solve_regions(
    image: np.ndarray,
    probability: np.ndarray,
    exposure: Exposure,
    config: SelfieCFConfig,
    threshold: float,
    people: int,
) -> tuple[np.ndarray, np.ndarray, list[SolveRegion], float]:
    height, width = image.shape[:2]
    alpha = np.zeros((height, width), dtype=np.float32)
    trimap = np.zeros((height, width), dtype=np.uint8)
    boxes = _regions(probability, threshold, pad=2 * config.band_fraction + 0.03)
    area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes)
    scale = 1.0
    budget = None if config.solve_pixels is None else config.solve_pixels * max(1, people)
    if budget is not None and area > budget:
        scale = math.sqrt(budget / area)
    regions = []
    for x0, y0, x1, y1 in boxes:
        window = (slice(y0, y1), slice(x0, x1))
        region_image = image[window]
        size = (max(1, round((y1 - y0) * scale)), max(1, round((x1 - x0) * scale)))
        small = region_image if size == region_image.shape[:2] else shrink_image(np.ascontiguousarray(region_image), size)
        small_probability = probability[window]
        if size != small_probability.shape:
            small_probability = resize_alpha(small_probability, size)
        band = max(2, round(config.band_fraction * min(max(size), 1.5 * size[0])))
        edges = (y0 == 0, y1 == height, x0 == 0, x1 == width)
        small_trimap = trimap_from_mask(small_probability, band, threshold, edges)
        solved = solve_closed_form(
            _solve_pixels(small, exposure, config), small_trimap, prior=small_probability, config=config.closed_form
        )
        if size != region_image.shape[:2]:
            solved = upsample_alpha(solved, np.ascontiguousarray(region_image), method="guided")
            small_trimap = _nearest(small_trimap, region_image.shape[:2])
        alpha[window] = solved
        trimap[window] = small_trimap
        regions.append(SolveRegion(box=(x0, y0, x1, y1), solved_size=size, band=band))
        logger.debug("selfie-cf: region %s solved at %dx%d, band %d px", (x0, y0, x1, y1), size[1], size[0], band)
    return alpha, trimap, regions, scale


# --------------------------------------------------------------------------- the pipeline


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be RGB uint8 H x W x 3, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


MaskFilter = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""`mask_filter(image, probability) -> probability`: image RGB uint8 H x W x 3 (exposure-normalised,
as the segmenter saw it), probability float32 H x W in [0, 1] (the united per-person masks);
returns float H x W (clipped to [0, 1]). Video matting smooths the probability over time with it."""


def run_selfie_cf(
    image: np.ndarray,
    config: SelfieCFConfig | None = None,
    probability: np.ndarray | None = None,
    mask_filter: MaskFilter | None = None,
) -> SelfieCFResult:
    """The whole pipeline (see the module doc) on an RGB uint8 H x W x 3 image.

    `probability`: a person probability (float H x W in [0, 1], e.g. smoothed over video frames)
    to solve with instead of finding and segmenting people; `result.probability` is the one
    computed otherwise. `mask_filter` (see `MaskFilter`), when given, replaces the computed
    probability before the trimap is built. Raises `MissingDependencyError` naming what to install when MediaPipe
    is absent, ValueError for arrays that are not RGB uint8.
    """
    config = config or SelfieCFConfig()
    image = _check_image(image)
    height, width = image.shape[:2]
    seen, exposure = normalize_exposure(image) if config.normalize_exposure else (image, Exposure())
    people: list[Any] = []
    note = None
    if probability is not None:
        probability = np.clip(np.asarray(probability, dtype=np.float32), 0.0, 1.0)
        if probability.shape != (height, width):
            raise ValueError(f"probability shape {probability.shape} does not match image {(height, width)}")
    else:
        whole = person_mask(seen, config)
        if config.people:
            people = _find_people(seen, whole, config)
        if people:
            probability, people = _person_probability(seen, people, config)
        if people:
            pass  # the united per-person masks
        elif config.people and config.require_person:
            probability = np.zeros((height, width), dtype=np.float32)
            note = NO_PERSON_NOTE
        else:
            probability = whole
            if config.people:
                note = "no person found: matted the whole-frame segmentation as it is"
        if mask_filter is not None:
            probability = np.clip(np.asarray(mask_filter(seen, probability), dtype=np.float32), 0.0, 1.0)
    threshold = max(0.01, config.threshold - config.person_margin) if people else config.threshold
    alpha, trimap, regions, scale = _solve_regions(image, probability, exposure, config, threshold, len(people))
    if people and note is None and not (alpha >= EMPTY_ALPHA).any():
        # People were found but the segmentation kept none of them: say so, never a silent blank.
        note = PEOPLE_NOT_SEGMENTED_NOTE.format(count=len(people))
    solved_size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return SelfieCFResult(
        alpha=alpha,
        trimap=trimap,
        probability=probability,
        people=people,
        regions=regions,
        scale=scale,
        solved_size=solved_size,
        exposure=exposure,
        note=note,
    )


def matte_selfie_cf(
    image: np.ndarray,
    config: SelfieCFConfig | None = None,
    return_trimap: bool = False,
    mask_filter: MaskFilter | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Alpha matte (float32 H x W in [0, 1]) of the people in an RGB uint8 image; see the module doc.

    With `return_trimap=True` also returns the trimap used (uint8 {0, 128, 255}, input size).
    An image without people gives an all-zero matte (`run_selfie_cf` also returns the note).
    Raises `MissingDependencyError` naming what to install when MediaPipe is absent.
    """
    result = run_selfie_cf(image, config, mask_filter=mask_filter)
    if result.note:
        logger.info("selfie-cf: %s", result.note)
    return (result.alpha, result.trimap) if return_trimap else result.alpha
