"""Where the people are: faces first, then body cues in candidate regions.

A portrait matting method made for one person close to the camera (a selfie segmenter) fails on
groups, on distant people and on photos without anyone in them; knowing where each person is
lets it look at one person at a time, at a useful size. A `Person` is found from:

1. faces in the whole image, from `p3m.detection.detect_faces` (whichever detectors it offers:
   `default_person_detectors()`, MediaPipe short and full range, CenterFace when available);
   `people_from_faces`;
2. candidate regions a caller proposes (e.g. the blobs of a segmentation) that no found person
   explains yet: faces again in a crop of the region (a face too small for the whole-image pass
   is large enough in a crop: detectors see their input at 128-192 px), then MediaPipe Pose
   (BlazePose full, the one pose model in the `mediapipe` wheel; it tracks one person, so it
   runs per crop), then faces in the four quarters of a large region; `people_in_regions`;
3. faces in overlapping tiles, for faces of ~20 px in large images; `people_in_tiles`.

Faces smaller than `REFINE_BELOW` px are detected again in a close crop (their boxes from a wide
view are often twice too large), and a face seen by one detector with a score below
`CONFIDENT_FACE_SCORE` must be confirmed by a pose whose nose lies on it (a coffee cup reads as
a face at 0.50 to the short-range model). `find_people` runs 1 and 2, and 3 when nothing was
found. Images are looked at through `normalize_exposure` (a dark photo is brightened).

    >>> people = find_people(image)                          # list of Person, best first
    >>> people = find_people(image, proposals=[(x0, y0, x1, y1), ...])
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from p3m.detection.exposure import normalize_exposure
from p3m.detection.faces import (
    DETECTOR_NAMES,
    Face,
    available_detectors,
    box_iou,
    mediapipe_process,
    start_mediapipe_graph,
)
from p3m.detection.multipass import detect_faces
from p3m.errors import MissingDependencyError, P3MError

__all__ = [
    "PERSON_DETECTORS",
    "Person",
    "body_box_from_face",
    "covered_fraction",
    "default_person_detectors",
    "distinct_people",
    "find_people",
    "people_from_faces",
    "people_in_regions",
    "people_in_tiles",
    "pose_person",
    "pose_segmentation",
]

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]

PERSON_DETECTORS: tuple[str, ...] = ("mediapipe-short", "mediapipe-full", "centerface")
"""Face detectors `find_people` uses by default, those of them that `detect_faces` offers here
(dlib's are left out: HOG misses turned faces and the CNN costs seconds per image)."""

REFINE_BELOW = 48.0
"""Faces smaller than this (geometric mean of the box sides, px) are detected again, close up."""

CONFIDENT_FACE_SCORE = 0.75
"""A face found by one detector below this score needs a pose to count as a person."""

POSE_MIN_VISIBILITY = 0.5
"""A pose counts as a person when its nose or a shoulder is at least this visible."""


@dataclass(frozen=True)
class Person:
    """One person: `box` (x0, y0, x1, y1, image pixels) is where the person is expected to be
    (from a face: head to about the hips, five face widths wide; from a pose: the visible
    landmarks, padded), `score` the cue's confidence in [0, 1], `cues` what found it (detector
    names, "pose"), `face` the face box when a face detector found the person, `landmarks` the
    33 BlazePose landmarks (x, y, visibility; image pixels) when a pose was found."""

    box: Box
    score: float
    cues: tuple[str, ...]
    face: Face | None = None
    landmarks: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "cues": list(self.cues),
            "face": None if self.face is None else [round(float(v), 1) for v in self.face.box],
        }


def _clip(box: Sequence[float], width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    return (
        float(np.clip(x0, 0, width)),
        float(np.clip(y0, 0, height)),
        float(np.clip(x1, 0, width)),
        float(np.clip(y1, 0, height)),
    )


def body_box_from_face(face_box: Sequence[float], width: int, height: int) -> Box:
    """Where the rest of a person is expected given a face box: head to hips, 5 face widths.

    Body proportions (a head is about 1/7.5 of a standing adult; shoulders span about three
    face widths) with room for hair, raised arms and held objects; clipped to the image.
    """
    x0, y0, x1, y1 = face_box
    face_width, face_height = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    centre = (x0 + x1) / 2
    return _clip(
        (centre - 2.5 * face_width, y0 - 0.6 * face_height, centre + 2.5 * face_width, y1 + 4.0 * face_height),
        width,
        height,
    )


def default_person_detectors() -> tuple[str, ...]:
    """`PERSON_DETECTORS` that `detect_faces` knows and that can run here."""
    offered = set(DETECTOR_NAMES) & set(available_detectors())
    return tuple(name for name in PERSON_DETECTORS if name in offered)


def _faces_to_people(faces: Sequence[Face], width: int, height: int) -> list[Person]:
    return [
        Person(box=body_box_from_face(face.box, width, height), score=face.score, cues=face.detectors, face=face)
        for face in faces
    ]


# ----------------------------------------------------------------------------- pose


@functools.cache
def _pose_graph(min_confidence: float):
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        from mediapipe.python.solutions import pose
    except ImportError as error:
        raise MissingDependencyError(
            "person detection needs mediapipe: pip install 'p3m[privacy]' (mediapipe==0.10.21)"
        ) from error
    # model_complexity=1 is pose_landmark_full, the only landmark model the wheel ships.
    return start_mediapipe_graph(
        lambda: pose.Pose(
            static_image_mode=True,
            model_complexity=1,
            enable_segmentation=False,
            min_detection_confidence=min_confidence,
        )
    )


@functools.cache
def _pose_segmentation_graph():
    os.environ.setdefault("GLOG_minloglevel", "2")
    from mediapipe.python.solutions import pose

    return start_mediapipe_graph(
        lambda: pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True)
    )


def pose_segmentation(image: np.ndarray) -> np.ndarray | None:
    """BlazePose's person mask (float32 H x W in [0, 1]) of the one person in an RGB uint8 crop,
    or None when it finds no pose. A second opinion beside a selfie segmenter: it is trained on
    whole bodies and holds on where colours barely separate a body from its background."""
    image = np.ascontiguousarray(image)
    if min(image.shape[:2]) < 16:
        return None
    result = mediapipe_process(_pose_segmentation_graph(), image)
    if result.pose_landmarks is None or result.segmentation_mask is None:
        return None
    return np.clip(np.asarray(result.segmentation_mask, dtype=np.float32), 0.0, 1.0)


def pose_person(image: np.ndarray, min_confidence: float = 0.5) -> Person | None:
    """The one person MediaPipe Pose finds in an RGB uint8 image (a crop), or None.

    The person's box spans the landmarks that are at least `POSE_MIN_VISIBILITY` visible,
    padded by 15 % and by a head above the nose; the score is the best of nose/shoulder visibility.
    """
    image = np.ascontiguousarray(image)
    height, width = image.shape[:2]
    if min(height, width) < 16:
        return None
    result = mediapipe_process(_pose_graph(min_confidence), image)
    if result.pose_landmarks is None:
        return None
    landmarks = result.pose_landmarks.landmark
    points = np.array([[p.x * width, p.y * height, p.visibility] for p in landmarks], np.float32)
    anchor = float(max(points[0, 2], points[11, 2], points[12, 2]))  # nose, shoulders
    if anchor < POSE_MIN_VISIBILITY:
        return None
    # A skeleton folded into a few pixels (seen on lamp flares in the dark) is no person: the
    # shoulders must be apart, and the nose away from their midpoint.
    shoulder_span = float(np.hypot(*(points[11, :2] - points[12, :2])))
    neck_to_nose = float(np.hypot(*(points[0, :2] - (points[11, :2] + points[12, :2]) / 2)))
    if shoulder_span < max(4.0, 0.06 * max(height, width)) or neck_to_nose < 0.25 * shoulder_span:
        return None
    seen = points[points[:, 2] >= POSE_MIN_VISIBILITY]
    x0, y0 = seen[:, 0].min(), seen[:, 1].min()
    x1, y1 = seen[:, 0].max(), seen[:, 1].max()
    pad_x, pad_y = 0.15 * (x1 - x0) + 4, 0.15 * (y1 - y0) + 4
    top = min(y0 - pad_y, points[0, 1] - 0.8 * shoulder_span)
    box = _clip((x0 - pad_x, top, x1 + pad_x, y1 + pad_y), width, height)
    if box[2] - box[0] < 4 or box[3] - box[1] < 4:
        return None
    return Person(box=box, score=anchor, cues=("pose",), landmarks=points)


# ----------------------------------------------------------------------------- the finder


def _shift(person: Person, dx: float, dy: float, scale: float, width: int, height: int) -> Person:
    """A person found in a crop (scaled by `scale`), in the coordinates of the whole image."""

    def move(box: Sequence[float]) -> Box:
        x0, y0, x1, y1 = box
        return (x0 / scale + dx, y0 / scale + dy, x1 / scale + dx, y1 / scale + dy)

    face = person.face
    if face is not None:
        keypoints = None if face.keypoints is None else face.keypoints / scale + np.float32([dx, dy])
        face = replace(face, box=move(face.box), keypoints=keypoints)
    box = body_box_from_face(face.box, width, height) if face is not None else _clip(move(person.box), width, height)
    landmarks = person.landmarks
    if landmarks is not None:
        landmarks = landmarks.copy()
        landmarks[:, :2] = landmarks[:, :2] / scale + np.float32([dx, dy])
    return replace(person, box=box, face=face, landmarks=landmarks)


def padded_crop(
    image: np.ndarray, box: Sequence[float], pad: float, max_side: int, enlarge: bool = False
) -> tuple[np.ndarray, float, float, float]:
    """`box` (x0, y0, x1, y1) widened by `pad` of its size on each side and cut out of `image`,
    shrunk so its long side is `max_side` at most (`enlarge=True`: scaled to exactly that,
    smaller crops too): (crop, x offset, y offset, scale), bilinear resampling."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box
    pad_x, pad_y = pad * (x1 - x0), pad * (y1 - y0)
    left, top = int(max(0, np.floor(x0 - pad_x))), int(max(0, np.floor(y0 - pad_y)))
    right, bottom = int(min(width, np.ceil(x1 + pad_x))), int(min(height, np.ceil(y1 + pad_y)))
    crop = image[top:bottom, left:right]
    scale = 1.0
    if max(crop.shape[:2]) > max_side or (enlarge and 0 < max(crop.shape[:2]) < max_side):
        from PIL import Image

        scale = max_side / max(crop.shape[:2])
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize(size, Image.Resampling.BILINEAR))
    return np.ascontiguousarray(crop), float(left), float(top), scale


def covered_fraction(box: Sequence[float], people: Sequence[Person]) -> float:
    """Fraction of `box` (x0, y0, x1, y1) covered by the boxes of `people` (on a 24 x 24 grid)."""
    x0, y0, x1, y1 = box
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return 1.0
    xs = np.linspace(x0, x1, 24)
    ys = np.linspace(y0, y1, 24)
    grid_x, grid_y = np.meshgrid(xs, ys)
    hit = np.zeros(grid_x.shape, bool)
    for person in people:
        px0, py0, px1, py1 = person.box
        hit |= (grid_x >= px0) & (grid_x <= px1) & (grid_y >= py0) & (grid_y <= py1)
    return float(hit.mean())


def _holds_centre(outer: Sequence[float], inner: Sequence[float]) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return bool(outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3])


def _is_new(person: Person, people: Sequence[Person], iou_threshold: float = 0.3) -> bool:
    """Whether `person` is none of `people`: the faces overlap less than `iou_threshold` and
    neither face box holds the other's centre (one face never holds another: such a box is the
    same face boxed too large, as detectors often box a 20-px face seen in a wide view; a pose
    would then confirm it with the real face's nose), or, without faces, the boxes overlap less
    than half."""
    for other in people:
        if person.face is not None and other.face is not None:
            mine, theirs = person.face.box, other.face.box
            if box_iou(mine, theirs) >= iou_threshold or _holds_centre(mine, theirs) or _holds_centre(theirs, mine):
                return False
        elif box_iou(person.box, other.box) >= 0.5:
            return False
        elif person.face is None and other.face is not None and _inside(person.box, other.box) >= 0.8:
            return False  # a pose found on a part of someone found by their face
    return True


def _inside(box: Sequence[float], other: Sequence[float]) -> float:
    """Fraction of `box`'s area inside `other`."""
    width = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
    height = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
    area = max(1e-6, (box[2] - box[0]) * (box[3] - box[1]))
    return width * height / area


def distinct_people(people: Sequence[Person]) -> list[Person]:
    """`people` without repeats (see `_is_new`), people found by a face first, then by score: a
    pose found on a part of a person (before that person's small face was found in a tile) is
    dropped."""
    kept: list[Person] = []
    for person in sorted(people, key=lambda person: (person.face is not None, person.score), reverse=True):
        if _is_new(person, kept):
            kept.append(person)
    return kept


def _tile_origins(length: int, tile: int, stride: int) -> list[int]:
    origins = list(range(0, max(1, length - tile + 1), stride))
    if origins[-1] + tile < length:
        origins.append(length - tile)
    return origins


def _confirmed(person: Person, image: np.ndarray, min_confidence: float, use_pose: bool) -> bool:
    """A face is a person when two detectors agree, its score is high, or a pose confirms it.

    Single low-score detections are where face detectors go wrong on objects (a coffee cup seen
    by the short-range model at 0.50); a pose in the crop around it settles the question.
    """
    face = person.face
    if face is None or len(face.detectors) >= 2 or face.score >= CONFIDENT_FACE_SCORE:
        return True
    if not use_pose:
        return face.score >= min_confidence
    crop, left, top, scale = padded_crop(image, person.box, pad=0.15, max_side=512)
    if min(crop.shape[:2]) < 16:
        return False
    pose = pose_person(crop, min_confidence)
    if pose is None or pose.landmarks is None:
        return False
    # The pose must be this face's: its nose inside the face box (grown by a tenth of its size:
    # grown by half, a box beside a real face, or one boxing a small face three times too
    # large, took that face's nose as its own).
    nose_x, nose_y = pose.landmarks[0, :2] / scale + np.float32([left, top])
    x0, y0, x1, y1 = face.box
    grow_x, grow_y = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
    return bool(x0 - grow_x <= nose_x <= x1 + grow_x and y0 - grow_y <= nose_y <= y1 + grow_y)


def _refined(person: Person, image: np.ndarray, names: Sequence[str], min_confidence: float) -> Person:
    """A small face looked at again in a crop three times its size, where it is large enough for
    the detectors to place its box well (boxes of 20-px faces from a whole-image pass are often
    twice too large, and the body box follows the face box)."""
    face = person.face
    if face is None or face.size > REFINE_BELOW:
        return person
    height, width = image.shape[:2]
    x0, y0, x1, y1 = face.box
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, 1.5 * max(x1 - x0, y1 - y0)
    crop, left, top, scale = padded_crop(image, (cx - side, cy - side, cx + side, cy + side), pad=0.0, max_side=512)
    if min(crop.shape[:2]) < 16:
        return person
    best = None
    for candidate in detect_faces(crop, names, min_confidence, tiled=False, rotations=(0,)):
        seen = Person(box=candidate.box, score=candidate.score, cues=candidate.detectors, face=candidate)
        moved = _shift(seen, left, top, scale, width, height)
        overlaps = moved.face is not None and box_iou(moved.face.box, face.box) > 0.1
        if overlaps and (best is None or moved.score > best.score):
            best = moved
    if best is None:
        return person
    detectors = tuple(dict.fromkeys(face.detectors + best.face.detectors))
    new_face = replace(best.face, score=max(face.score, best.face.score), detectors=detectors)
    return replace(person, face=new_face, box=best.box, score=new_face.score, cues=detectors)


def _scaled_face(face: Face, factor: float) -> Face:
    """`face` found in a copy of the image resized by 1 / `factor`, in the image's pixels."""
    if factor == 1.0:
        return face
    return replace(
        face,
        box=tuple(float(v) * factor for v in face.box),
        keypoints=None if face.keypoints is None else face.keypoints * np.float32(factor),
        keypoints5=None if face.keypoints5 is None else face.keypoints5 * np.float32(factor),
    )


def _whole_image_faces(
    image: np.ndarray, names: Sequence[str], min_confidence: float, tiled: bool | None, max_side: int | None
) -> list[Face]:
    """Faces of the whole image, searched in a copy at most `max_side` long without CenterFace's
    upscaled pass: the people finder looks for small people itself (crops of candidate regions,
    tiles, close looks at small faces), so its whole-image pass only has to find the faces that
    are large enough to matter at that size, at a fraction of the multi-pass search's cost (a
    1080 x 1620 portrait: one CenterFace run on 0.47 MP instead of 1.75 MP plus 7 MP upscaled)."""
    height, width = image.shape[:2]
    factor = 1.0
    if max_side is not None and max(height, width) > max_side:
        from p3m.detection.centerface import resize_for_scale

        factor = max(height, width) / max_side
        image = np.ascontiguousarray(resize_for_scale(image, 1.0 / factor))
    faces = detect_faces(image, names, min_confidence, tiled=tiled, rotations=(0,), upscale=1.0)
    return [_scaled_face(face, factor) for face in faces]


WHOLE_IMAGE_SIDE = 1024
"""`people_from_faces` searches the whole image in a copy at most this long (px)."""


def people_from_faces(
    image: np.ndarray,
    detectors: Sequence[str] | None = None,
    min_confidence: float = 0.5,
    use_pose: bool = True,
    tiled: bool | None = None,
    max_side: int | None = WHOLE_IMAGE_SIDE,
    regions: Sequence[Sequence[float]] | None = None,
) -> list[Person]:
    """People from the faces in the whole image (each low-confidence face confirmed by a pose),
    by decreasing score; a face holding another's centre is the same person (`_is_new`).

    The image is searched in a copy at most `max_side` px long (None: as it is) without the
    upscaled CenterFace pass (see `_whole_image_faces`): faces smaller than ~16 px at that size
    are left to `people_in_regions` and `people_in_tiles`. `regions`: where people are expected
    (x0, y0, x1, y1; e.g. the blobs of a person segmentation). With them, MediaPipe's detectors
    (a few ms) look first, and the others (CenterFace, ~0.1 s at 640 px) only when the people
    found leave a region less than `EXPLAINED_COVER` covered, or are not `CONFIDENT_FACE_SCORE`
    sure: a well-exposed portrait needs no second detector.
    """
    image = _check(image)
    names = _names(detectors)
    quick = tuple(name for name in names if name.startswith("mediapipe"))
    if regions is not None and quick and len(quick) < len(names):
        people = _people_from_faces(image, quick, min_confidence, use_pose, tiled, max_side)
        if people and all(person.score >= CONFIDENT_FACE_SCORE for person in people) and all(
            covered_fraction(region, people) >= EXPLAINED_COVER for region in regions
        ):
            logger.debug("people: %d from MediaPipe's faces explain every region", len(people))
            return people
    return _people_from_faces(image, names, min_confidence, use_pose, tiled, max_side)


EXPLAINED_COVER = 0.8
"""`people_from_faces` with `regions`: the fraction of each region that the people found by
MediaPipe's detectors must cover for the other detectors to be spared (a second person beside
a found one leaves half of their common region uncovered)."""


def _people_from_faces(
    image: np.ndarray,
    names: Sequence[str],
    min_confidence: float,
    use_pose: bool,
    tiled: bool | None,
    max_side: int | None,
) -> list[Person]:
    height, width = image.shape[:2]
    found = _faces_to_people(_whole_image_faces(image, names, min_confidence, tiled, max_side), width, height)
    found = [_refined(person, image, names, min_confidence) for person in found]
    people: list[Person] = []
    for person in sorted(found, key=lambda person: person.score, reverse=True):
        if _is_new(person, people) and _confirmed(person, image, min_confidence, use_pose):
            people.append(person)
    logger.debug(
        "people: %d from %s faces in the whole image (%d rejected)", len(people), "/".join(names), len(found) - len(people)
    )
    return people


def people_in_regions(
    image: np.ndarray,
    proposals: Sequence[Sequence[float]],
    people: Sequence[Person] = (),
    detectors: Sequence[str] | None = None,
    min_confidence: float = 0.5,
    use_pose: bool = True,
) -> list[Person]:
    """New people in the candidate boxes that `people` do not explain yet.

    Each box is cut out with a margin and searched for faces; a box with none is searched for a
    pose, and a large one is also split into four overlapping quarters searched for faces (a small
    person merged with a large object into one candidate). Returns only the people not in `people`.
    """
    image = _check(image)
    names = _names(detectors)
    height, width = image.shape[:2]
    known = list(people)
    new: list[Person] = []
    for proposal in proposals:
        if covered_fraction(proposal, known) >= 0.6:
            continue
        found = _search_box(image, proposal, names, min_confidence, use_pose, whole=True)
        for person in found:
            if _is_new(person, known):
                known.append(person)
                new.append(person)
        logger.debug("people: proposal %s -> %d found", [round(v) for v in proposal], len(found))
    return new


def _search_box(
    image: np.ndarray,
    box: Sequence[float],
    names: Sequence[str],
    min_confidence: float,
    use_pose: bool,
    whole: bool,
) -> list[Person]:
    """People in one candidate box; `whole`: the box as proposed (not yet a quarter of one)."""
    height, width = image.shape[:2]
    crop, left, top, scale = padded_crop(image, box, pad=0.2, max_side=1024)
    if min(crop.shape[:2]) < 8:
        return []
    faces = detect_faces(crop, names, min_confidence, tiled=False, rotations=(0,))
    found = [
        _shift(person, left, top, scale, width, height)
        for person in _faces_to_people(faces, crop.shape[1], crop.shape[0])
    ]
    found = [_refined(person, image, names, min_confidence) for person in found]
    found = [person for person in found if _confirmed(person, image, min_confidence, use_pose)]
    if found:
        return found
    if use_pose and whole:
        person = pose_person(crop, min_confidence)
        if person is not None:
            return [_shift(person, left, top, scale, width, height)]
    x0, y0, x1, y1 = box
    if whole and max(x1 - x0, y1 - y0) >= 192:
        quarter_w, quarter_h = 0.6 * (x1 - x0), 0.6 * (y1 - y0)
        for qx in (x0, x1 - quarter_w):
            for qy in (y0, y1 - quarter_h):
                quarter = (qx, qy, qx + quarter_w, qy + quarter_h)
                for person in _search_box(image, quarter, names, min_confidence, use_pose, whole=False):
                    if _is_new(person, found):
                        found.append(person)
    return found


def people_in_tiles(
    image: np.ndarray,
    tile: int,
    people: Sequence[Person] = (),
    detectors: Sequence[str] | None = None,
    min_confidence: float = 0.5,
    use_pose: bool = True,
) -> list[Person]:
    """New people whose faces show up in overlapping `tile`-px tiles (stride 3/4 tile).

    Face detectors see their input at 128-192 px, so a face of 20 px in a 2000-px image is lost
    in the whole-image pass but found in a 256-px tile. Returns only people not in `people`.
    """
    image = _check(image)
    names = _names(detectors)
    height, width = image.shape[:2]
    tile = max(32, min(tile, height, width))
    stride = max(1, tile * 3 // 4)
    known = list(people)
    new: list[Person] = []
    for y in _tile_origins(height, tile, stride):
        for x in _tile_origins(width, tile, stride):
            crop = np.ascontiguousarray(image[y : y + tile, x : x + tile])
            faces = detect_faces(crop, names, min_confidence, tiled=False, rotations=(0,))
            for person in _faces_to_people(faces, crop.shape[1], crop.shape[0]):
                person = _refined(_shift(person, x, y, 1.0, width, height), image, names, min_confidence)
                if _is_new(person, known) and _confirmed(person, image, min_confidence, use_pose):
                    known.append(person)
                    new.append(person)
    logger.debug("people: %d more from faces in %d px tiles", len(new), tile)
    return new


def _check(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise P3MError(f"person detection needs an RGB uint8 H x W x 3 image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def _names(detectors: Sequence[str] | None) -> tuple[str, ...]:
    names = tuple(detectors) if detectors is not None else default_person_detectors()
    if not names:
        raise MissingDependencyError(
            "person detection needs a face detector: pip install 'p3m[privacy]' (mediapipe==0.10.21)"
        )
    return names


def find_people(
    image: np.ndarray,
    proposals: Sequence[Sequence[float]] = (),
    detectors: Sequence[str] | None = None,
    min_confidence: float = 0.5,
    use_pose: bool = True,
    deep_search: bool = True,
    tiled: bool | None = None,
    normalize: bool = True,
) -> list[Person]:
    """The people in an RGB uint8 H x W x 3 image, by decreasing score (see the module doc).

    `proposals`: candidate boxes (x0, y0, x1, y1) to look into closely. `detectors`: face
    detector names for `detect_faces` (default `default_person_detectors()`). `use_pose`: confirm
    doubtful faces and face-less proposals with MediaPipe Pose. `deep_search`: when nothing was
    found, search again for faces in tiles of about 384 px. `tiled` is passed to `detect_faces`
    for the whole-image pass. `normalize`: look through `normalize_exposure` (a no-op on
    well-exposed images). Raises `MissingDependencyError` when MediaPipe is missing,
    `ConfigError` for unknown detector names.
    """
    image = _check(image)
    height, width = image.shape[:2]
    if min(height, width) < 8:
        return []
    names = _names(detectors)
    if normalize:
        image, exposure = normalize_exposure(image)
        if not exposure.identity:
            logger.debug("people: exposure normalised for detection (%s)", exposure)
    people = people_from_faces(image, names, min_confidence, use_pose, tiled)
    people += people_in_regions(image, proposals, people, names, min_confidence, use_pose)
    if not people and deep_search and max(height, width) > 384:
        people += people_in_tiles(image, 384, people, names, min_confidence, use_pose)
    return sorted(distinct_people(people), key=lambda person: person.score, reverse=True)
