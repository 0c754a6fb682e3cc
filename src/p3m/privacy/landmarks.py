"""Face landmarks on each detected face, and the private-area polygons they outline.

Default scheme, "mediapipe": MediaPipe Face Mesh (468 points, Apache-2.0, in the `mediapipe`
wheel) runs on a crop around the detected box, turned upright by the face's roll (from the
detector's eye keypoints, or the orientation of the pass that found it) and enlarged so that
small faces reach the mesh's input size; points are mapped back to image pixels. The private
area follows the P3M-10k recipe (paper Fig. 3): the filled polygon along the cheek/jaw part of
the face oval and the upper contour of the eyebrows, the equivalent of the 68-point scheme's
points 0-16 (jaw) and 17-26 (brows). Mesh indices, in polygon order (image left to right along
the jaw for a frontal face, then back along the brows):

    jaw (ear to chin to ear, = 68-pt 0..16):
        127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152,
        377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 356
    subject's left eyebrow, upper contour, outer to inner (= 68-pt 26..22): 300, 293, 334, 296, 336
    subject's right eyebrow, upper contour, inner to outer (= 68-pt 21..17): 107, 66, 105, 63, 70

Whatever the pose, the area also contains every facial feature: the convex hull of all
inner-face landmarks (Face Mesh's eye, eyebrow, nose and lip contours and the chin; 68-pt
17..67 and 6..10) and of the detectors' keypoints, grown by `COVERAGE_MARGIN` x the face
width (a head turned or thrown back moves nose, lips and chin past the jaw line).

Option "dlib68": dlib's `shape_predictor_68_face_landmarks.dat` from `face_recognition_models`
(the classic P3M recipe): polygon = points 0..16 then 26..17. On the astronaut the two schemes'
masks agree at IoU 0.94. Licence caveat: that model was trained on iBUG 300-W, whose licence
excludes commercial use (`DLIB68_LICENCE_NOTE`).

Every face gets a mask. When the mesh is not found on the crop (tiny, blurred or occluded
faces), or disagrees with the detection (its eyes, nose or mouth farther than
`AGREEMENT_TOLERANCE` x the face width from the detector's keypoints, or its centre outside the
box), the face keeps `landmarks=None` with a `landmark_note`, and its area is an ellipse from
the box grown to contain the keypoints, plus the keypoint hull as above.

    >>> faces, notes = add_landmarks(image, detect_faces(image))
    >>> polygons = private_polygons(faces[0])        # list of K x 2 float32, image pixels
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from p3m.detection.faces import Face, box_iou, dlib_model_path
from p3m.errors import ConfigError, MissingDependencyError
from p3m.vocabulary import LandmarkScheme, values

__all__ = [
    "AGREEMENT_TOLERANCE",
    "box_chin",
    "COVERAGE_MARGIN",
    "CROP_MARGIN",
    "DLIB68_LICENCE_NOTE",
    "LANDMARK_SCHEMES",
    "MESH_BROW_LEFT_UPPER",
    "MESH_BROW_RIGHT_UPPER",
    "MESH_CORE",
    "MESH_DLIB5",
    "MESH_FEATURES",
    "MESH_INNER_FACE",
    "MESH_JAW",
    "MESH_POLYGON",
    "add_landmarks",
    "dlib5_points",
    "ellipse_polygon",
    "face_width",
    "feature_points",
    "core_points",
    "offset_hull",
    "outline_polygon",
    "private_polygons",
]

logger = logging.getLogger(__name__)

LANDMARK_SCHEMES: tuple[str, ...] = values(LandmarkScheme)

MESH_JAW: tuple[int, ...] = (
    127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152,
    377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 356,
)  # fmt: skip
MESH_BROW_LEFT_UPPER: tuple[int, ...] = (300, 293, 334, 296, 336)  # subject's left, outer -> inner
MESH_BROW_RIGHT_UPPER: tuple[int, ...] = (107, 66, 105, 63, 70)  # subject's right, inner -> outer
MESH_POLYGON: tuple[int, ...] = MESH_JAW + MESH_BROW_LEFT_UPPER + MESH_BROW_RIGHT_UPPER
# Contours of Face Mesh (mediapipe.solutions.face_mesh_connections): eyes, brows, nose, lips.
MESH_EYES: tuple[int, ...] = (
    249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466,
    7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246,
)  # fmt: skip
MESH_BROWS: tuple[int, ...] = (
    276, 282, 283, 285, 293, 295, 296, 300, 334, 336, 46, 52, 53, 55, 63, 65, 66, 70, 105, 107,
)  # fmt: skip
MESH_NOSE: tuple[int, ...] = (
    1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326,
    327, 344, 440,
)  # fmt: skip
MESH_LIPS: tuple[int, ...] = (
    0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191,
    267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415,
)  # fmt: skip
MESH_CHIN: tuple[int, ...] = (152, 148, 176, 149, 377, 400, 378)
# Every feature a mask must contain (coverage hull), and the inner face (eyes, nose, mouth).
MESH_FEATURES: tuple[int, ...] = MESH_EYES + MESH_BROWS + MESH_NOSE + MESH_LIPS + MESH_CHIN
MESH_CORE: tuple[int, ...] = MESH_EYES + MESH_NOSE + MESH_LIPS
# Kept for callers of the first release: a smaller set of the same kind.
MESH_INNER_FACE: tuple[int, ...] = (33, 133, 362, 263, 1, 4, 2, 98, 327, 61, 291, 0, 17, 152)
# dlib's 5-point layout (shape_predictor_5_face_landmarks): subject's left eye outer and inner
# corner, right eye outer and inner corner, under the nose. Measured on the astronaut: each
# predicted point within 1 px of these mesh points.
MESH_DLIB5: tuple[int, ...] = (263, 362, 33, 133, 2)
MESH_EYE_CENTRES = ((33, 133), (362, 263))  # subject's right, left eye corners
MESH_NOSE_TIP = 1
MESH_MOUTH_CORNERS = (61, 291)  # subject's right, left
MESH_WIDTH = (127, 356)  # jaw ends: the face width

DLIB68_POLYGON: tuple[int, ...] = tuple(range(17)) + tuple(range(26, 16, -1))
DLIB68_FEATURES: tuple[int, ...] = tuple(range(17, 68)) + (6, 7, 8, 9, 10)
DLIB68_CORE: tuple[int, ...] = tuple(range(27, 68))
DLIB68_DLIB5: tuple[int, ...] = (45, 42, 36, 39, 33)
DLIB68_WIDTH = (0, 16)
DLIB68_INNER_FACE: tuple[int, ...] = tuple(range(27, 68))

# Face Mesh runs its own (short-range) face detection on the crop: a crop with the face at about
# half its width is what that detector is trained for.
CROP_MARGIN = 0.5
MESH_CROP_SIDE = 256  # small faces are enlarged so that the crop is at least this many px
COVERAGE_MARGIN = 0.15  # x face width, around the hull of the inner-face landmarks
AGREEMENT_TOLERANCE = 0.3  # x face width: mesh feature vs detector keypoint
FALLBACK_GROWTH = 1.1  # the fallback ellipse is the box's inscribed ellipse, this much larger

DLIB68_LICENCE_NOTE = (
    "dlib68 landmarks: shape_predictor_68_face_landmarks.dat was trained on the iBUG 300-W data "
    "set, whose licence excludes commercial use; use --landmarks mediapipe (Apache-2.0) for "
    "commercial work."
)


@functools.cache
def _face_mesh():
    from p3m.detection.faces import _import_mediapipe, start_mediapipe_graph

    mediapipe = _import_mediapipe()
    return start_mediapipe_graph(
        lambda: mediapipe.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=4,
            refine_landmarks=False,
            min_detection_confidence=0.3,
        )
    )


@functools.cache
def _dlib68():
    try:
        import dlib
    except ImportError as error:
        raise MissingDependencyError(
            "dlib68 landmarks need dlib: pip install 'p3m[dlib]'"
        ) from error
    return dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))


# ----------------------------------------------------------------------------- aligned crops


def _face_frame(face: Face) -> tuple[float, float, float, float]:
    """Centre (x, y), side (px) and roll (degrees) of the face, for an upright square crop."""
    x0, y0, x1, y1 = face.box
    roll = face.roll if face.roll is not None else float(face.rotation)
    # An axis-aligned box of a rolled face is larger than the face: undo that for the side.
    angle = math.radians(roll)
    spread = abs(math.cos(angle)) + abs(math.sin(angle))
    side = max(x1 - x0, y1 - y0) / max(spread, 1.0)
    return (x0 + x1) / 2, (y0 + y1) / 2, max(side, 4.0), roll


def _aligned_crop(
    image: np.ndarray, face: Face, margin: float, min_side: int
) -> tuple[np.ndarray, np.ndarray]:
    """An upright square crop around the face and the 2 x 3 affine map image -> crop."""
    cx, cy, side, roll = _face_frame(face)
    crop_side = side * (1 + 2 * margin)
    scale = max(1.0, min_side / crop_side)
    out = int(math.ceil(crop_side * scale))
    # cv2 angles are counter-clockwise on screen: turning by -roll puts the head upright.
    matrix = cv2.getRotationMatrix2D((cx, cy), -roll, scale)
    matrix[:, 2] += (out / 2 - cx, out / 2 - cy)
    crop = cv2.warpAffine(
        image, matrix, (out, out), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT
    )
    return crop, matrix


def _to_image(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    inverse = cv2.invertAffineTransform(matrix)
    return (points @ inverse[:, :2].T + inverse[:, 2]).astype(np.float32)


def _mesh_landmarks(image: np.ndarray, face: Face) -> np.ndarray | None:
    from p3m.detection.faces import mediapipe_process

    crop, matrix = _aligned_crop(image, face, CROP_MARGIN, MESH_CROP_SIDE)
    result = mediapipe_process(_face_mesh(), np.ascontiguousarray(crop))
    side = crop.shape[0]
    face_side = side / (1 + 2 * CROP_MARGIN)
    expected = (side / 2 - face_side / 2, side / 2 - face_side / 2,
                side / 2 + face_side / 2, side / 2 + face_side / 2)  # fmt: skip
    best, best_iou = None, 0.0
    for mesh in result.multi_face_landmarks or ():
        points = np.array([[p.x, p.y] for p in mesh.landmark], np.float32) * np.float32(side)
        # Other faces may share the crop: keep the mesh that matches the detected box.
        iou = box_iou((*points.min(axis=0), *points.max(axis=0)), expected)
        if iou > best_iou:
            best, best_iou = points, iou
    if best is None or best_iou < 0.2:
        return None
    return _to_image(best, matrix)


def _dlib_box(crop: np.ndarray, side: float) -> tuple[int, int, int, int]:
    """The box the 68-point predictor expects in an upright crop with the face of `side` px
    at its centre: dlib HOG's own detection if it finds the face there.

    MediaPipe/CenterFace boxes are a little larger than dlib's (measured on real portraits:
    about 4-7 % more on the left/top, 3-5 % on the right/bottom); without a HOG match the box
    is shrunk by that.
    """
    from p3m.detection.faces import run_detector

    centre = crop.shape[0] / 2
    x0, y0, x1, y1 = centre - side / 2, centre - side / 2, centre + side / 2, centre + side / 2
    for found in run_detector(np.ascontiguousarray(crop), "dlib-hog"):
        if box_iou(found.box, (x0, y0, x1, y1)) > 0.4:
            return tuple(round(v) for v in found.box)
    return (
        round(x0 + 0.04 * side),
        round(y0 + 0.07 * side),
        round(x1 - 0.05 * side),
        round(y1 - 0.03 * side),
    )


def _dlib68_landmarks(image: np.ndarray, face: Face) -> np.ndarray:
    import dlib

    from p3m.detection.faces import _LOCK

    crop, matrix = _aligned_crop(image, face, 0.3, 0)
    side = crop.shape[0] / 1.6
    x0, y0, x1, y1 = _dlib_box(crop, side)
    with _LOCK:
        shape = _dlib68()(crop, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
    points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float32)
    return _to_image(points, matrix)


# ----------------------------------------------------------------------------- agreement


def _scheme_indices(scheme: str | None) -> dict[str, tuple]:
    if scheme == "dlib68":
        return {
            "outline": DLIB68_POLYGON, "features": DLIB68_FEATURES, "core": DLIB68_CORE,
            "dlib5": DLIB68_DLIB5, "width": DLIB68_WIDTH,
            "eyes": ((36, 39), (42, 45)), "nose": 30, "mouth": (48, 54),
        }  # fmt: skip
    return {
        "outline": MESH_POLYGON, "features": MESH_FEATURES, "core": MESH_CORE,
        "dlib5": MESH_DLIB5, "width": MESH_WIDTH,
        "eyes": MESH_EYE_CENTRES, "nose": MESH_NOSE_TIP, "mouth": MESH_MOUTH_CORNERS,
    }  # fmt: skip


def _named_points(landmarks: np.ndarray, scheme: str | None) -> np.ndarray:
    """Right eye, left eye, nose tip, right and left mouth corner (CenterFace's order)."""
    index = _scheme_indices(scheme)
    (r0, r1), (l0, l1) = index["eyes"]
    return np.stack([
        (landmarks[r0] + landmarks[r1]) / 2, (landmarks[l0] + landmarks[l1]) / 2,
        landmarks[index["nose"]], landmarks[index["mouth"][0]], landmarks[index["mouth"][1]],
    ]).astype(np.float32)  # fmt: skip


def _disagreement(face: Face, landmarks: np.ndarray, scheme: str) -> str | None:
    """Why the landmarks cannot be trusted for this detection, or None when they agree."""
    width = face_width(replace(face, landmarks=landmarks, landmark_scheme=scheme))
    box_side = _face_frame(face)[2]
    if not 0.4 * box_side <= width <= 2.5 * box_side:
        return f"landmarks span {width:.0f} px for a {box_side:.0f}-px detection"
    centre = landmarks[list(_scheme_indices(scheme)["core"])].mean(axis=0)
    x0, y0, x1, y1 = face.box
    if not (x0 <= centre[0] <= x1 and y0 <= centre[1] <= y1):
        return "landmarks centred outside the detection box"
    named = _named_points(landmarks, scheme)
    tolerance = AGREEMENT_TOLERANCE * max(width, box_side)
    if face.keypoints5 is not None:
        error = np.linalg.norm(named - face.keypoints5, axis=1).max()
        if error > tolerance:
            return f"landmarks {error:.0f} px from the detector's eye/nose/mouth keypoints"
    elif face.keypoints is not None:  # MediaPipe: eyes and nose tip
        error = np.linalg.norm(named[:3] - face.keypoints[:3], axis=1).max()
        if error > tolerance:
            return f"landmarks {error:.0f} px from the detector's eye/nose keypoints"
    return None


def add_landmarks(
    image: np.ndarray, faces: Sequence[Face], scheme: str = "mediapipe"
) -> tuple[list[Face], list[str]]:
    """Faces with dense landmarks (in image pixels), and a note for each face that got none.

    A face without trustworthy landmarks keeps `landmarks=None`, its `landmark_note` says
    why, and its private area is the fallback ellipse (see `private_polygons`): never no mask.
    """
    if scheme not in LANDMARK_SCHEMES:
        raise ConfigError(
            f"unknown landmark scheme {scheme!r}; choose from {', '.join(LANDMARK_SCHEMES)}"
        )
    image = np.ascontiguousarray(image)
    out: list[Face] = []
    notes: list[str] = []
    for index, face in enumerate(faces):
        if scheme == "dlib68":
            points = _dlib68_landmarks(image, face)
            problem = _disagreement(face, points, scheme)
        else:
            points = _mesh_landmarks(image, face)
            problem = "Face Mesh found no face on the crop" if points is None else (
                _disagreement(face, points, scheme))  # fmt: skip
        if problem is None:
            out.append(face.with_landmarks(points, scheme))
            continue
        box = ", ".join(f"{v:.0f}" for v in face.box)
        notes.append(f"face {index} at ({box}): {problem}; masked an ellipse from box and keypoints")
        out.append(replace(face, landmarks=None, landmark_scheme=None, landmark_note=problem))
    return out, notes


# ----------------------------------------------------------------------------- polygons


def face_width(face: Face) -> float:
    """The face's width in px: jaw end to jaw end with landmarks, else the upright box side."""
    if face.landmarks is not None:
        a, b = _scheme_indices(face.landmark_scheme)["width"]
        width = float(np.linalg.norm(face.landmarks[a] - face.landmarks[b]))
        if width > 1:
            return width
    return _face_frame(face)[2]


def box_chin(face: Face) -> np.ndarray | None:
    """Where CenterFace's box puts the chin (1 x 2): the box edge straight below the eyes.

    CenterFace's boxes run from the hairline to the chin (WIDER FACE annotations), so the edge
    point on the face's own downward axis (perpendicular to its eye line) is an estimate of the
    chin independent of the landmarks. Face Mesh tends to place the chin too high on faces seen
    from below; this point keeps the real chin in the coverage hull.
    """
    if face.keypoints5 is None or "centerface" not in face.detectors:
        return None
    right, left = face.keypoints5[0], face.keypoints5[1]
    axis = left - right
    length = float(np.linalg.norm(axis))
    if length < 1e-3:
        return None
    down = np.array([-axis[1], axis[0]], np.float32) / length
    x0, y0, x1, y1 = face.box
    reach = abs(down[0]) * (x1 - x0) / 2 + abs(down[1]) * (y1 - y0) / 2
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float32)
    return (centre + down * reach)[None].astype(np.float32)


def feature_points(face: Face) -> np.ndarray:
    """Every point a mask must contain (K x 2): inner-face landmarks and detector keypoints."""
    parts = _keypoints(face)
    if face.landmarks is not None:
        parts.append(face.landmarks[list(_scheme_indices(face.landmark_scheme)["features"])])
    parts = [p for p in parts if len(p)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 2), np.float32)


def core_points(face: Face) -> np.ndarray:
    """Eye, nose and mouth points (K x 2): the inner face that is never spared."""
    if face.landmarks is not None:
        return face.landmarks[list(_scheme_indices(face.landmark_scheme)["core"])]
    parts = _keypoints(face)
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 2), np.float32)


def _keypoints(face: Face) -> list[np.ndarray]:
    """The detectors' eye, nose and mouth keypoints (MediaPipe's ears are outside the face)."""
    parts = [face.keypoints5, None if face.keypoints is None else face.keypoints[:4]]
    return [p for p in parts if p is not None]


def dlib5_points(face: Face) -> np.ndarray | None:
    """dlib's 5 alignment points (5 x 2; see `MESH_DLIB5`) from landmarks or keypoints.

    From CenterFace's keypoints alone, eye corners are put 0.19 inter-ocular distances either
    side of each eye centre along the eye line and the point under the nose 0.23 distances below
    the nose tip (measured on the astronaut against dlib's own 5-point predictor).
    """
    if face.landmarks is not None:
        return face.landmarks[list(_scheme_indices(face.landmark_scheme)["dlib5"])]
    if face.keypoints5 is None:
        return None
    right, left, nose = face.keypoints5[0], face.keypoints5[1], face.keypoints5[2]
    axis = left - right
    distance = float(np.linalg.norm(axis))
    if distance < 1e-3:
        return None
    along = axis / distance
    down = np.array([-along[1], along[0]], np.float32)  # eye line turned clockwise: chinwards
    offset = 0.19 * distance * along
    return np.stack([left + offset, left - offset, right - offset, right + offset,
                     nose + 0.23 * distance * down]).astype(np.float32)  # fmt: skip


def offset_hull(points: np.ndarray, margin: float, directions: int = 24) -> np.ndarray:
    """The convex hull of `points` grown by `margin` px (round corners), K x 2 float32."""
    points = np.asarray(points, np.float32).reshape(-1, 2)
    angles = np.linspace(0, 2 * np.pi, directions, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32) * margin
    grown = (points[:, None, :] + ring[None, :, :]).reshape(-1, 2)
    return cv2.convexHull(grown).reshape(-1, 2).astype(np.float32)


def ellipse_polygon(
    box: Sequence[float], points: int = 64, growth: float = 1.0
) -> np.ndarray:
    """Polygon (points x 2, float32) of the ellipse inscribed in an (x0, y0, x1, y1) box,
    its axes multiplied by `growth`."""
    x0, y0, x1, y1 = box
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    rx, ry = growth * (x1 - x0) / 2, growth * (y1 - y0) / 2
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1).astype(np.float32)


def outline_polygon(face: Face) -> np.ndarray:
    """The P3M-10k outline (jaw and eyebrows) with landmarks, else the fallback ellipse."""
    if face.landmarks is None:
        return ellipse_polygon(face.box, growth=FALLBACK_GROWTH)
    return face.landmarks[list(_scheme_indices(face.landmark_scheme)["outline"])]


def private_polygons(face: Face) -> list[np.ndarray]:
    """The polygons (K x 2 float32, image pixels) whose filled union is the face's private area.

    The P3M-10k jaw-and-eyebrows outline (or, without landmarks, the box's inscribed ellipse
    grown by `FALLBACK_GROWTH`), the hull of every inner-face landmark and detector keypoint
    grown by `COVERAGE_MARGIN` x the face width, and the hull of those points with the
    detector's chin (`box_chin`, not grown: the box already reaches the chin): eyes, nose,
    mouth and chin are inside whatever the pose.
    """
    polygons = [outline_polygon(face)]
    features = feature_points(face)
    if len(features):
        polygons.append(offset_hull(features, COVERAGE_MARGIN * face_width(face)))
        chin = box_chin(face)
        if chin is not None:
            polygons.append(cv2.convexHull(np.concatenate([features, chin])).reshape(-1, 2))
    return polygons
