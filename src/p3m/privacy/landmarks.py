"""Face landmarks on each detected face, and the private-area polygon they outline.

Default scheme, "mediapipe": MediaPipe Face Mesh (468 points, Apache-2.0, in the `mediapipe`
wheel) runs on the detected box enlarged by `CROP_MARGIN` on each side; points are mapped back to
image pixels. The private area follows the P3M-10k recipe (paper Fig. 3): the filled polygon along
the cheek/jaw part of the face oval and the upper contour of the eyebrows, the equivalent of the
68-point scheme's points 0-16 (jaw) and 17-26 (brows). Mesh indices, in polygon order (image
left to right along the jaw for a frontal face, then back along the brows):

    jaw (ear to chin to ear, = 68-pt 0..16):
        127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152,
        377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 356
    subject's left eyebrow, upper contour, outer to inner (= 68-pt 26..22): 300, 293, 334, 296, 336
    subject's right eyebrow, upper contour, inner to outer (= 68-pt 21..17): 107, 66, 105, 63, 70

To cover turned and profile faces too (where the nose and lips stick out past the jaw line), the
area also includes the convex hull of the jaw points and the inner-face points below (for a
frontal face this hull lies inside the polygon already):

    inner face: eye corners 33, 133, 362, 263; nose tip 1, 4; under the nose 2, 98, 327;
        mouth corners 61, 291; lips 0, 17; chin 152

Option "dlib68": dlib's `shape_predictor_68_face_landmarks.dat` from `face_recognition_models`
(the classic P3M recipe): polygon = points 0..16 then 26..17, plus the hull of points 0..16 and
27..67. On the astronaut the two schemes' masks agree at IoU 0.94. Licence caveat: that model
was trained on iBUG 300-W, whose licence excludes commercial use (`DLIB68_LICENCE_NOTE`).

When no mesh is found on a crop (extreme pose, heavy occlusion), the polygon falls back to the
ellipse inscribed in the detection box, and a warning says so: recall first.

    >>> faces = add_landmarks(image, detect_faces(image))
    >>> polygons = private_polygons(faces[0])        # list of K x 2 float32, image pixels
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import cv2
import numpy as np

from p3m.detection.faces import Face, box_iou, dlib_model_path
from p3m.errors import ConfigError, MissingDependencyError
from p3m.vocabulary import LandmarkScheme, values

__all__ = [
    "CROP_MARGIN",
    "DLIB68_LICENCE_NOTE",
    "LANDMARK_SCHEMES",
    "MESH_BROW_LEFT_UPPER",
    "MESH_BROW_RIGHT_UPPER",
    "MESH_INNER_FACE",
    "MESH_JAW",
    "MESH_POLYGON",
    "add_landmarks",
    "ellipse_polygon",
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
MESH_INNER_FACE: tuple[int, ...] = (33, 133, 362, 263, 1, 4, 2, 98, 327, 61, 291, 0, 17, 152)
DLIB68_POLYGON: tuple[int, ...] = tuple(range(17)) + tuple(range(26, 16, -1))
DLIB68_INNER_FACE: tuple[int, ...] = tuple(range(27, 68))

# Face Mesh runs its own (short-range) face detection on the crop: a crop with the face at about
# half its width is what that detector is trained for.
CROP_MARGIN = 0.5

DLIB68_LICENCE_NOTE = (
    "dlib68 landmarks: shape_predictor_68_face_landmarks.dat was trained on the iBUG 300-W data "
    "set, whose licence excludes commercial use; use --landmarks mediapipe (Apache-2.0) for "
    "commercial work."
)


@functools.cache
def _face_mesh():
    from p3m.detection.faces import _import_mediapipe

    mediapipe = _import_mediapipe()
    return mediapipe.solutions.face_mesh.FaceMesh(
        static_image_mode=True,
        max_num_faces=4,
        refine_landmarks=False,
        min_detection_confidence=0.3,
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


def _crop_box(face: Face, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = face.box
    pad_x, pad_y = (x1 - x0) * margin, (y1 - y0) * margin
    return (
        int(max(0, np.floor(x0 - pad_x))),
        int(max(0, np.floor(y0 - pad_y))),
        int(min(width, np.ceil(x1 + pad_x))),
        int(min(height, np.ceil(y1 + pad_y))),
    )


def _mesh_landmarks(image: np.ndarray, face: Face) -> np.ndarray | None:
    from p3m.detection.faces import mediapipe_process

    height, width = image.shape[:2]
    cx0, cy0, cx1, cy1 = _crop_box(face, width, height, CROP_MARGIN)
    crop = np.ascontiguousarray(image[cy0:cy1, cx0:cx1])
    if crop.shape[0] < 8 or crop.shape[1] < 8:
        return None
    result = mediapipe_process(_face_mesh(), crop)
    best, best_iou = None, 0.0
    for mesh in result.multi_face_landmarks or ():
        points = np.array([[p.x, p.y] for p in mesh.landmark], np.float32)
        points *= np.array([crop.shape[1], crop.shape[0]], np.float32)
        points += np.array([cx0, cy0], np.float32)
        # Other faces may share the crop: keep the mesh that matches the detected box.
        mesh_box = (*points.min(axis=0), *points.max(axis=0))
        iou = box_iou(mesh_box, face.box)
        if iou > best_iou:
            best, best_iou = points, iou
    return best if best_iou >= 0.2 else None


def _dlib_box(image: np.ndarray, face: Face) -> tuple[int, int, int, int]:
    """The box the 68-point predictor expects: dlib HOG's own detection if it finds this face.

    MediaPipe boxes are a little larger than dlib's (measured on real portraits: about 4-7 % more
    on the left/top, 3-5 % on the right/bottom); without a HOG match the box is shrunk by that.
    """
    from p3m.detection.faces import run_detector

    if "dlib-hog" not in face.detectors and "dlib-cnn" not in face.detectors:
        height, width = image.shape[:2]
        cx0, cy0, cx1, cy1 = _crop_box(face, width, height, 0.3)
        crop = np.ascontiguousarray(image[cy0:cy1, cx0:cx1])
        shifted = (face.box[0] - cx0, face.box[1] - cy0, face.box[2] - cx0, face.box[3] - cy0)
        for found in run_detector(crop, "dlib-hog"):
            if box_iou(found.box, shifted) > 0.4:
                x0, y0, x1, y1 = found.box
                return round(x0 + cx0), round(y0 + cy0), round(x1 + cx0), round(y1 + cy0)
        x0, y0, x1, y1 = face.box
        w, h = x1 - x0, y1 - y0
        return (
            round(x0 + 0.04 * w),
            round(y0 + 0.07 * h),
            round(x1 - 0.05 * w),
            round(y1 - 0.03 * h),
        )
    return tuple(round(v) for v in face.box)


def _dlib68_landmarks(image: np.ndarray, face: Face) -> np.ndarray:
    import dlib

    from p3m.detection.faces import _LOCK

    x0, y0, x1, y1 = _dlib_box(image, face)
    with _LOCK:
        shape = _dlib68()(image, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
    return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float32)


def add_landmarks(
    image: np.ndarray, faces: Sequence[Face], scheme: str = "mediapipe"
) -> tuple[list[Face], list[str]]:
    """Faces with dense landmarks (in image pixels), and warnings for faces that got none.

    A face without landmarks keeps `landmarks=None` and gets the box-ellipse fallback polygon.
    """
    if scheme not in LANDMARK_SCHEMES:
        raise ConfigError(
            f"unknown landmark scheme {scheme!r}; choose from {', '.join(LANDMARK_SCHEMES)}"
        )
    image = np.ascontiguousarray(image)
    out: list[Face] = []
    warnings: list[str] = []
    for index, face in enumerate(faces):
        if scheme == "dlib68":
            out.append(face.with_landmarks(_dlib68_landmarks(image, face), "dlib68"))
            continue
        points = _mesh_landmarks(image, face)
        if points is None:
            box = ", ".join(f"{v:.0f}" for v in face.box)
            warnings.append(
                f"face {index} at ({box}): Face Mesh found no landmarks, masked the box ellipse instead"
            )
            out.append(face)
        else:
            out.append(face.with_landmarks(points, "mediapipe"))
    return out, warnings


def ellipse_polygon(box: Sequence[float], points: int = 64) -> np.ndarray:
    """Polygon (points x 2, float32) of the ellipse inscribed in an (x0, y0, x1, y1) box."""
    x0, y0, x1, y1 = box
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1).astype(np.float32)


def private_polygons(face: Face) -> list[np.ndarray]:
    """The polygons (K x 2 float32, image pixels) whose filled union is the face's private area.

    With landmarks: the jaw-and-eyebrows polygon and the convex hull of jaw and inner-face points;
    without: the ellipse inscribed in the detection box.
    """
    if face.landmarks is None:
        return [ellipse_polygon(face.box)]
    if face.landmark_scheme == "dlib68":
        outline, inner = DLIB68_POLYGON, tuple(range(17)) + DLIB68_INNER_FACE
    else:
        outline, inner = MESH_POLYGON, MESH_JAW + MESH_INNER_FACE
    hull = cv2.convexHull(face.landmarks[list(inner)].astype(np.float32)).reshape(-1, 2)
    return [face.landmarks[list(outline)], hull]
