"""Face detection, recall first: the union of several detectors, boxes merged by IoU.

A missed face is a privacy leak, so the default runs both MediaPipe face detectors shipped in the
`mediapipe` wheel (BlazeFace short-range, model_selection=0, good on close-ups; full-range,
model_selection=1, good on small and turned faces) and merges their boxes. dlib's HOG detector and
its CNN (MMOD) detector from `face_recognition_models` can be added to the union.

    >>> faces = detect_faces(image)                                  # MediaPipe short + full range
    >>> faces = detect_faces(image, detectors=("mediapipe", "dlib-hog", "dlib-cnn"))
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from p3m.errors import ConfigError, MissingDependencyError, P3MError

__all__ = [
    "DEFAULT_DETECTORS",
    "DETECTOR_NAMES",
    "Face",
    "available_detectors",
    "box_iou",
    "detect_faces",
    "dlib_model_path",
    "expand_detector_names",
    "merge_faces",
    "run_detector",
    "run_tiled",
]

logger = logging.getLogger(__name__)

# "mediapipe" is a shorthand for both MediaPipe models.
DETECTOR_NAMES: tuple[str, ...] = ("mediapipe-short", "mediapipe-full", "dlib-hog", "dlib-cnn")
DEFAULT_DETECTORS: tuple[str, ...] = ("mediapipe-short", "mediapipe-full")
TILE_SIDE = 640
TILE_TRIGGER = 1024
_ALIASES = {"mediapipe": ("mediapipe-short", "mediapipe-full"), "dlib": ("dlib-hog", "dlib-cnn")}


@dataclass(frozen=True)
class Face:
    """One detected face in image pixel coordinates.

    `box` is (x0, y0, x1, y1) as floats, `score` the best detector confidence (MediaPipe: [0, 1];
    dlib scores are mapped into (0, 1) by a logistic), `detectors` the detectors that found it,
    `keypoints` the six MediaPipe keypoints (right eye, left eye, nose tip, mouth centre, right ear,
    left ear; subject's sides) when a MediaPipe detector found the face, and `landmarks` the dense
    landmarks (N x 2, x then y) once `p3m.privacy.landmarks` ran, in scheme `landmark_scheme`.
    """

    box: tuple[float, float, float, float]
    score: float
    detectors: tuple[str, ...]
    keypoints: np.ndarray | None = field(default=None, compare=False, repr=False)
    landmarks: np.ndarray | None = field(default=None, compare=False, repr=False)
    landmark_scheme: str | None = None

    @property
    def size(self) -> float:
        """Geometric mean of the box width and height, in pixels (scales blur and mosaic)."""
        x0, y0, x1, y1 = self.box
        return float(np.sqrt(max(x1 - x0, 1.0) * max(y1 - y0, 1.0)))

    def with_landmarks(self, landmarks: np.ndarray, scheme: str) -> Face:
        return replace(self, landmarks=np.asarray(landmarks, np.float32), landmark_scheme=scheme)

    def to_dict(self) -> dict:
        """JSON-friendly summary (landmarks as lists of [x, y] rounded to 0.1 px)."""
        out: dict = {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "detectors": list(self.detectors),
            "landmark_scheme": self.landmark_scheme,
        }
        if self.landmarks is not None:
            out["landmark_count"] = int(len(self.landmarks))
        return out


def expand_detector_names(detectors: Sequence[str] | str) -> tuple[str, ...]:
    """Detector names with the aliases "mediapipe" and "dlib" expanded, duplicates dropped."""
    if isinstance(detectors, str):
        detectors = (detectors,)
    names: list[str] = []
    for name in detectors:
        for expanded in _ALIASES.get(name, (name,)):
            if expanded not in DETECTOR_NAMES:
                raise ConfigError(
                    f"unknown face detector {expanded!r}; choose from "
                    f"{', '.join(DETECTOR_NAMES + tuple(_ALIASES))}"
                )
            if expanded not in names:
                names.append(expanded)
    return tuple(names)


# ----------------------------------------------------------------------------- model files


def _face_recognition_models_dir() -> Path | None:
    # face_recognition_models/__init__.py imports pkg_resources (gone from current setuptools),
    # so find the package folder without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        models = Path(location) / "models"
        if models.is_dir():
            return models
    return None


def dlib_model_path(file_name: str) -> Path:
    """Path of a dlib model file shipped by `face_recognition_models` (located, never imported)."""
    models = _face_recognition_models_dir()
    if models is None or not (models / file_name).is_file():
        raise MissingDependencyError(
            f"dlib model {file_name} not found: install face_recognition_models (pip install 'p3m[dlib]')"
        )
    return models / file_name


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def available_detectors() -> tuple[str, ...]:
    """The detectors usable in this environment, in `DETECTOR_NAMES` order."""
    found: list[str] = []
    if _has_module("mediapipe"):
        found += ["mediapipe-short", "mediapipe-full"]
    if _has_module("dlib"):
        found.append("dlib-hog")
        if _face_recognition_models_dir() is not None:
            found.append("dlib-cnn")
    return tuple(found)


# ----------------------------------------------------------------------------- detectors

# MediaPipe graphs and dlib detectors are not safe to call from several threads at once.
_LOCK = threading.Lock()
_WARM: set[int] = set()


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Silence file descriptor 2: MediaPipe's C++ side prints TFLite/absl notes when a graph starts."""
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def mediapipe_process(graph: Any, image: np.ndarray) -> Any:
    """`graph.process(image)` under the shared lock; the first call of each graph runs silenced."""
    with _LOCK:
        if id(graph) in _WARM:
            return graph.process(image)
        with _native_stderr_silenced():
            result = graph.process(image)
        _WARM.add(id(graph))
        return result


def _import_mediapipe():
    os.environ.setdefault("GLOG_minloglevel", "2")  # silence MediaPipe's C++ info lines
    try:
        import mediapipe
    except ImportError as error:
        raise MissingDependencyError(
            "face detection needs mediapipe: pip install 'p3m[privacy]' (mediapipe==0.10.21)"
        ) from error
    return mediapipe


@functools.cache
def _mediapipe_detector(model_selection: int, min_confidence: float):
    mediapipe = _import_mediapipe()
    with _native_stderr_silenced():
        return mediapipe.solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=min_confidence
        )


@functools.cache
def _dlib_detector(kind: str):
    try:
        import dlib
    except ImportError as error:
        raise MissingDependencyError(
            "dlib detectors need dlib: pip install 'p3m[dlib]' (dlib-bin)"
        ) from error
    if kind == "hog":
        return dlib.get_frontal_face_detector()
    return dlib.cnn_face_detection_model_v1(str(dlib_model_path("mmod_human_face_detector.dat")))


def _logistic(value: float) -> float:
    return float(1.0 / (1.0 + np.exp(-value)))


def _run_mediapipe(image: np.ndarray, name: str, min_confidence: float) -> list[Face]:
    detector = _mediapipe_detector(0 if name == "mediapipe-short" else 1, min_confidence)
    height, width = image.shape[:2]
    result = mediapipe_process(detector, image)
    faces = []
    for detection in result.detections or ():
        location = detection.location_data
        box = location.relative_bounding_box
        x0, y0 = box.xmin * width, box.ymin * height
        x1, y1 = x0 + box.width * width, y0 + box.height * height
        keypoints = np.array(
            [[k.x * width, k.y * height] for k in location.relative_keypoints], np.float32
        )
        faces.append(
            Face(
                box=_clip_box((x0, y0, x1, y1), width, height),
                score=float(detection.score[0]),
                detectors=(name,),
                keypoints=keypoints if len(keypoints) == 6 else None,
            )
        )
    return faces


def _run_dlib(image: np.ndarray, name: str, upsample: int | None) -> list[Face]:
    height, width = image.shape[:2]
    if upsample is None:
        # HOG is cheap, so look for faces down to ~40 px; the CNN costs seconds per image on a CPU.
        upsample = 1 if name == "dlib-hog" else 0
    faces = []
    if name == "dlib-hog":
        detector = _dlib_detector("hog")
        with _LOCK:
            rects, scores, _ = detector.run(image, upsample, 0.0)
        found = list(zip(rects, scores, strict=True))
    else:
        detector = _dlib_detector("cnn")
        with _LOCK:
            found = [(d.rect, d.confidence) for d in detector(image, upsample)]
    for rect, score in found:
        box = (
            float(rect.left()),
            float(rect.top()),
            float(rect.right() + 1),
            float(rect.bottom() + 1),
        )
        faces.append(
            Face(box=_clip_box(box, width, height), score=_logistic(score), detectors=(name,))
        )
    return faces


def _clip_box(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    return (
        float(np.clip(x0, 0, width)),
        float(np.clip(y0, 0, height)),
        float(np.clip(x1, 0, width)),
        float(np.clip(y1, 0, height)),
    )


def run_detector(
    image: np.ndarray, name: str, min_confidence: float = 0.5, dlib_upsample: int | None = None
) -> list[Face]:
    """Faces found by one detector (`mediapipe-short`, `mediapipe-full`, `dlib-hog`, `dlib-cnn`).

    `dlib_upsample` defaults to 1 for HOG (faces down to ~40 px) and 0 for the CNN (~80 px; the
    CNN takes seconds per image on a CPU).
    """
    image = _check_image(image)
    if name in ("mediapipe-short", "mediapipe-full"):
        faces = _run_mediapipe(image, name, min_confidence)
    elif name in ("dlib-hog", "dlib-cnn"):
        faces = _run_dlib(image, name, dlib_upsample)
    else:
        raise ConfigError(f"unknown face detector {name!r}; choose from {', '.join(DETECTOR_NAMES)}")
    # A box clipped to nothing (face entirely outside the frame) is no face.
    return [f for f in faces if f.box[2] - f.box[0] >= 2 and f.box[3] - f.box[1] >= 2]


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise P3MError(
            f"face detection needs an RGB uint8 H x W x 3 image, got {image.dtype} {image.shape}"
        )
    return np.ascontiguousarray(image)


# ----------------------------------------------------------------------------- merging


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def merge_faces(faces: Sequence[Face], iou_threshold: float = 0.3) -> list[Face]:
    """Merge detections of the same face (IoU >= threshold) from several detectors.

    Greedy by score: each cluster keeps the box and keypoints of its best-scoring MediaPipe
    detection (MediaPipe boxes include the forehead; dlib's are tighter), the best score, and the
    names of every detector that contributed. Returned by decreasing score.
    """
    ordered = sorted(
        faces, key=lambda f: (f.detectors[0].startswith("mediapipe"), f.score), reverse=True
    )
    clusters: list[list[Face]] = []
    for face in ordered:
        for cluster in clusters:
            if box_iou(cluster[0].box, face.box) >= iou_threshold:
                cluster.append(face)
                break
        else:
            clusters.append([face])
    merged = []
    for cluster in clusters:
        head = cluster[0]
        detectors = tuple(dict.fromkeys(name for f in cluster for name in f.detectors))
        keypoints = next((f.keypoints for f in cluster if f.keypoints is not None), None)
        merged.append(
            replace(
                head, score=max(f.score for f in cluster), detectors=detectors, keypoints=keypoints
            )
        )
    return sorted(merged, key=lambda f: f.score, reverse=True)


def _tile_origins(length: int, tile: int, stride: int) -> list[int]:
    origins = list(range(0, max(1, length - tile + 1), stride))
    if origins[-1] + tile < length:
        origins.append(length - tile)
    return origins


def run_tiled(
    image: np.ndarray, name: str = "mediapipe-full", min_confidence: float = 0.5
) -> list[Face]:
    """`name` run on overlapping `TILE_SIDE` tiles (stride 3/4 tile): finds faces too small for
    MediaPipe's whole-image pass (it sees the image at 128 or 192 px; measured here: a 95-px face
    in a 2048-px image is missed by both models)."""
    height, width = image.shape[:2]
    stride = TILE_SIDE * 3 // 4
    faces = []
    for y in _tile_origins(height, TILE_SIDE, stride):
        for x in _tile_origins(width, TILE_SIDE, stride):
            tile = np.ascontiguousarray(image[y : y + TILE_SIDE, x : x + TILE_SIDE])
            for face in run_detector(tile, name, min_confidence=min_confidence):
                x0, y0, x1, y1 = face.box
                keypoints = None if face.keypoints is None else face.keypoints + np.float32([x, y])
                faces.append(
                    replace(face, box=(x0 + x, y0 + y, x1 + x, y1 + y), keypoints=keypoints)
                )
    return faces


def detect_faces(
    image: np.ndarray,
    detectors: Sequence[str] | str = DEFAULT_DETECTORS,
    min_confidence: float = 0.5,
    iou_threshold: float = 0.3,
    tiled: bool | None = None,
) -> list[Face]:
    """Faces found by the union of `detectors` (default both MediaPipe models), merged by IoU.

    `image` is RGB uint8 H x W x 3. `min_confidence` applies to the MediaPipe detectors (dlib's
    detectors use their own default thresholds). `tiled` adds a tiled full-range pass (default:
    when the longer side exceeds `TILE_TRIGGER` px). Faces are returned by decreasing score,
    without landmarks (see `p3m.privacy.landmarks.add_landmarks`).
    """
    image = _check_image(image)
    names = expand_detector_names(detectors)
    found: list[Face] = []
    for name in names:
        faces = run_detector(image, name, min_confidence=min_confidence)
        logger.debug("%s found %d face(s)", name, len(faces))
        found += faces
    if tiled is None:
        tiled = max(image.shape[:2]) > TILE_TRIGGER
    if tiled and "mediapipe-full" in names:
        faces = run_tiled(image, "mediapipe-full", min_confidence)
        logger.debug("tiled mediapipe-full found %d face(s)", len(faces))
        found += faces
    return merge_faces(found, iou_threshold)
