"""Face detectors and their union: the `Face` record, one runner per detector, box merging.

A missed face is a privacy leak, so p3m unites several detectors: CenterFace
(`p3m.detection.centerface`, trained on WIDER FACE, strong on small faces and crowds), both
MediaPipe face detectors shipped in the `mediapipe` wheel (BlazeFace short-range,
model_selection=0, good on close-ups; full-range, model_selection=1), and dlib's HOG detector
and CNN (MMOD) detector from `face_recognition_models` where dlib is installed. The multi-pass
search over scales, tiles and rotations, and its public entry point `detect_faces`, are in
`p3m.detection.multipass` (both exported by `p3m.detection`).

    >>> faces = run_detector(image, "mediapipe-full")  # one detector, one pass
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from p3m.errors import ConfigError, MissingDependencyError, P3MError
from p3m.io.stderr import native_stderr_silenced

__all__ = [
    "DEFAULT_DETECTORS",
    "DETECTOR_NAMES",
    "Face",
    "available_detectors",
    "box_containment",
    "box_iou",
    "default_detectors",
    "dlib_model_path",
    "expand_detector_names",
    "merge_faces",
    "run_detector",
    "run_tiled",
]

logger = logging.getLogger(__name__)

DETECTOR_NAMES: tuple[str, ...] = (
    "centerface", "mediapipe-short", "mediapipe-full", "dlib-hog", "dlib-cnn",
)  # fmt: skip
# "default" expands to `default_detectors()`: CenterFace, both MediaPipe models, and dlib's HOG
# detector where dlib is installed. "mediapipe" and "dlib" name both models of each.
DEFAULT_DETECTORS: tuple[str, ...] = ("default",)
LEGACY_DETECTORS: tuple[str, ...] = ("mediapipe-short", "mediapipe-full")  # before CenterFace
TILE_SIDE = 640
TILE_TRIGGER = 1024
_ALIASES = {"mediapipe": ("mediapipe-short", "mediapipe-full"), "dlib": ("dlib-hog", "dlib-cnn")}
# Order in which a merged cluster picks its box: CenterFace and MediaPipe boxes span forehead
# to chin, dlib's are tighter; CenterFace's keypoints include the mouth corners.
_BOX_PREFERENCE = ("centerface", "mediapipe-full", "mediapipe-short", "dlib-cnn", "dlib-hog")


@dataclass(frozen=True)
class Face:
    """One detected face in image pixel coordinates.

    `box` is (x0, y0, x1, y1) as floats; a CenterFace box is not clipped to the image, so a face
    cut by the border keeps its true centre and size (MediaPipe and dlib boxes are clipped).
    `score` the best detector confidence (CenterFace, MediaPipe: [0, 1]; dlib scores are mapped
    into (0, 1) by a logistic), `detectors` the detectors that found it, `keypoints` the six
    MediaPipe keypoints (right eye, left eye, nose tip, mouth centre, right ear, left ear;
    subject's sides) when a MediaPipe detector found the face, `keypoints5` CenterFace's five
    (5 x 2: subject's right eye, left eye, nose tip, right and left mouth corner) when it found
    the face, `rotation` the quarter turn (0, 90, 180, 270 degrees counter-clockwise) the image
    was given for the detector to see the face upright, and `roll` the in-plane angle of the head
    in degrees (counter-clockwise from upright; from the eye line where keypoints exist).

    Set later by `p3m.privacy`: `landmarks`, the dense landmarks (N x 2, x then y) in scheme
    `landmark_scheme` (None: the mask is an ellipse from box and keypoints, `landmark_note`
    says why), and `obfuscation`, a JSON-friendly record of how the face was obfuscated and
    verified (method, strength, identity distance, status).
    """

    box: tuple[float, float, float, float]
    score: float
    detectors: tuple[str, ...]
    keypoints: np.ndarray | None = field(default=None, compare=False, repr=False)
    landmarks: np.ndarray | None = field(default=None, compare=False, repr=False)
    landmark_scheme: str | None = None
    keypoints5: np.ndarray | None = field(default=None, compare=False, repr=False)
    rotation: int = 0
    roll: float | None = None
    landmark_note: str | None = None
    obfuscation: dict | None = field(default=None, compare=False)

    @property
    def size(self) -> float:
        """Geometric mean of the box width and height, in pixels (scales blur and mosaic)."""
        x0, y0, x1, y1 = self.box
        return float(np.sqrt(max(x1 - x0, 1.0) * max(y1 - y0, 1.0)))

    def with_landmarks(self, landmarks: np.ndarray, scheme: str) -> Face:
        return replace(self, landmarks=np.asarray(landmarks, np.float32), landmark_scheme=scheme)

    @property
    def width(self) -> float:
        """Box width in pixels (the face size used for margins and size bins)."""
        return float(max(self.box[2] - self.box[0], 1.0))

    def points(self) -> np.ndarray:
        """Every keypoint the detectors gave (K x 2 float32; empty when none)."""
        parts = [p for p in (self.keypoints5, self.keypoints) if p is not None]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 2), np.float32)

    def to_dict(self) -> dict:
        """JSON-friendly summary (coordinates rounded to 0.1 px)."""
        out: dict = {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "detectors": list(self.detectors),
            "landmark_scheme": self.landmark_scheme,
        }
        if self.landmarks is not None:
            out["landmark_count"] = int(len(self.landmarks))
        if self.keypoints5 is not None:
            out["keypoints5"] = np.round(self.keypoints5.astype(np.float64), 1).tolist()
        out["rotation"] = int(self.rotation)
        out["roll"] = None if self.roll is None else round(float(self.roll), 1)
        if self.landmark_note:
            out["landmark_note"] = self.landmark_note
        if self.obfuscation is not None:
            out["obfuscation"] = dict(self.obfuscation)
        return out


def default_detectors() -> tuple[str, ...]:
    """What "default" means here: CenterFace, both MediaPipe models, dlib HOG if dlib is there."""
    names = ("centerface", "mediapipe-short", "mediapipe-full")
    return names + (("dlib-hog",) if _has_module("dlib") else ())


def expand_detector_names(detectors: Sequence[str] | str) -> tuple[str, ...]:
    """Detector names with the aliases "default", "mediapipe" and "dlib" expanded, no duplicates."""
    if isinstance(detectors, str):
        detectors = (detectors,)
    names: list[str] = []
    for name in detectors:
        aliases = _ALIASES.get(name, (name,)) if name != "default" else default_detectors()
        for expanded in aliases:
            if expanded not in DETECTOR_NAMES:
                raise ConfigError(
                    f"unknown face detector {expanded!r}; choose from "
                    f"{', '.join(DETECTOR_NAMES + ('default', *_ALIASES))}"
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


def _centerface_available() -> bool:
    from p3m.detection.centerface import centerface_model_path

    try:
        centerface_model_path()
    except MissingDependencyError:
        return False
    return _has_module("onnxruntime") and _has_module("onnx")


def available_detectors() -> tuple[str, ...]:
    """The detectors usable in this environment, in `DETECTOR_NAMES` order."""
    found: list[str] = []
    if _centerface_available():
        found.append("centerface")
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


def mediapipe_process(graph: Any, image: np.ndarray) -> Any:
    """`graph.process(image)` under the shared lock. Calls run with descriptor 2 silenced until
    the graph has once returned every output (a face, a person found): MediaPipe's C++ warnings
    (e.g. Face Mesh's `landmark_projection_calculator ... NORM_RECT` line) come once per process,
    on the first call that runs the calculator, which needs something found. Later calls are not
    silenced, so a progress bar drawn from another thread is not swallowed."""
    with _LOCK:
        if id(graph) in _WARM:
            return graph.process(image)
        with native_stderr_silenced():
            result = graph.process(image)
        if all(value is not None for value in _fields(result)):
            _WARM.add(id(graph))
        return result


def _fields(result: Any) -> tuple:
    """The outputs of a MediaPipe solution result (named by its `_fields`), or the result itself."""
    names = getattr(result, "_fields", None)
    return tuple(getattr(result, name, None) for name in names) if names else (result,)


def _import_mediapipe():
    os.environ.setdefault("GLOG_minloglevel", "2")  # silence MediaPipe's C++ info lines
    try:
        import mediapipe
    except ImportError as error:
        raise MissingDependencyError(
            "face detection needs mediapipe: pip install 'p3m[privacy]' (mediapipe==0.10.21)"
        ) from error
    return mediapipe


def start_mediapipe_graph(build: Callable[[], Any]) -> Any:
    """A MediaPipe solution graph from `build()`, started with descriptor 2 silenced until it
    has run once on a blank frame.

    A solution starts its graph in the constructor, but the calculators open on MediaPipe's own
    threads afterwards: TensorFlow Lite's start-up lines (absl's `W0000 ...
    inference_feedback_manager.cc:114] Feedback manager requires a model with a single signature
    inference ...`, which `GLOG_minloglevel` does not reach) come after the constructor has
    returned. A first `process` waits until every calculator is open, so the silenced block
    covers them.
    """
    with native_stderr_silenced():
        graph = build()
        graph.process(np.zeros((64, 64, 3), np.uint8))
    return graph


@functools.cache
def _mediapipe_detector(model_selection: int, min_confidence: float):
    mediapipe = _import_mediapipe()
    return start_mediapipe_graph(
        lambda: mediapipe.solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=min_confidence
        )
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


_DLIB_CNN_MIN_SIDE = 16


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
    elif min(height, width) < _DLIB_CNN_MIN_SIDE:
        # dlib's CNN raises for images below its filter windows (under 10 px a side); it finds
        # no face under ~40 px anyway.
        found = []
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


def _run_centerface(image: np.ndarray, min_confidence: float, scale: float) -> list[Face]:
    from p3m.detection.centerface import decode_centerface, predict_centerface

    boxes, scores, keypoints = decode_centerface(predict_centerface(image, scale), min_confidence)
    return [
        Face(
            box=tuple(float(v) for v in box),
            score=float(score),
            detectors=("centerface",),
            keypoints5=points,
            roll=eye_line_roll(points),
        )
        for box, score, points in zip(boxes, scores, keypoints, strict=True)
    ]


def eye_line_roll(keypoints5: np.ndarray) -> float:
    """In-plane head angle in degrees (counter-clockwise, 0 = upright) from the two eyes.

    The subject's right eye is on the image left of an upright face: the vector from it to the
    left eye points along +x; its angle, measured with y up, is the roll.
    """
    (rx, ry), (lx, ly) = keypoints5[0], keypoints5[1]
    return float(np.degrees(np.arctan2(-(ly - ry), lx - rx)))


def run_detector(
    image: np.ndarray,
    name: str,
    min_confidence: float = 0.5,
    dlib_upsample: int | None = None,
    scale: float = 1.0,
) -> list[Face]:
    """Faces found by one detector (`centerface`, `mediapipe-short`, `mediapipe-full`,
    `dlib-hog`, `dlib-cnn`) in one pass over the whole image.

    `min_confidence` is the detection threshold of CenterFace and MediaPipe. `scale` resizes
    the image for CenterFace (2.0: faces down to ~10 px). `dlib_upsample` defaults to 1 for
    HOG (faces down to ~40 px) and 0 for the CNN (~80 px; the CNN takes seconds per image on a
    CPU).
    """
    image = _check_image(image)
    if name == "centerface":
        return _run_centerface(image, min_confidence, scale)
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


def _preference(face: Face) -> int:
    name = face.detectors[0]
    return _BOX_PREFERENCE.index(name) if name in _BOX_PREFERENCE else len(_BOX_PREFERENCE)


def box_containment(outer: Sequence[float], inner: Sequence[float]) -> float:
    """Share of box `inner`'s area that lies inside box `outer` (1: entirely inside)."""
    ix = max(0.0, min(outer[2], inner[2]) - max(outer[0], inner[0]))
    iy = max(0.0, min(outer[3], inner[3]) - max(outer[1], inner[1]))
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return ix * iy / area if area > 0 else 0.0


CONTAINMENT_THRESHOLD = 0.6


def merge_faces(faces: Sequence[Face], iou_threshold: float = 0.3) -> list[Face]:
    """Merge detections of the same face from several detectors and passes.

    Two detections are the same face when their IoU is at least `iou_threshold`, or when most
    (`CONTAINMENT_THRESHOLD`) of a later detection's box lies inside the cluster's box: a pass
    that sees the face at the wrong scale or orientation often fires on part of it (an eye, half
    the face). Never the other way round: a larger box is not absorbed into a smaller one, so
    a merge never shrinks the area that will be masked.

    Greedy: each cluster keeps the box, rotation and roll of its best detection in the order
    CenterFace, MediaPipe full-range, short-range, dlib (CenterFace and MediaPipe boxes span
    forehead to chin; dlib's are tighter), by score within a detector; the best score; the
    MediaPipe and CenterFace keypoints of any member; and the names of every detector that
    contributed. Returned by decreasing score.
    """
    ordered = sorted(faces, key=lambda f: (_preference(f), -f.score))
    clusters: list[list[Face]] = []
    for face in ordered:
        for cluster in clusters:
            head = cluster[0].box
            if (
                box_iou(head, face.box) >= iou_threshold
                or box_containment(head, face.box) >= CONTAINMENT_THRESHOLD
            ):
                cluster.append(face)
                break
        else:
            clusters.append([face])
    merged = []
    for cluster in clusters:
        head = cluster[0]
        detectors = tuple(dict.fromkeys(name for f in cluster for name in f.detectors))
        keypoints = next((f.keypoints for f in cluster if f.keypoints is not None), None)
        keypoints5 = next((f.keypoints5 for f in cluster if f.keypoints5 is not None), None)
        merged.append(
            replace(
                head,
                score=max(f.score for f in cluster),
                detectors=detectors,
                keypoints=keypoints,
                keypoints5=keypoints5,
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
