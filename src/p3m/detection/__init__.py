"""Face detection for every part of p3m that needs to know where people are.

It sits below `inference` and `privacy`: the anonymiser finds faces to obfuscate, and the
offline matting default finds people to segment one by one, without either importing the other.

    >>> from p3m.detection import detect_faces
    >>> faces = detect_faces(image)          # list of Face: box, score, detectors, keypoints
    >>> found = detect(image, DetectionConfig(rotations=(0,)))   # + timed passes
    >>> found = detect(image, DetectionConfig.preset("standard"))  # faster, fewer small turned faces

Modules: `faces` (the `Face` record, one runner per detector: CenterFace, MediaPipe
short/full range, dlib HOG/CNN; box merging, tiling), `centerface` (the CenterFace network and
its decoding), `multipass` (the search over scales, gated upscaled windows and orientations).
Heavy libraries (onnxruntime, mediapipe, dlib) are imported on first use.
"""

from __future__ import annotations

from p3m.detection.faces import (
    DEFAULT_DETECTORS,
    DETECTOR_NAMES,
    Face,
    available_detectors,
    box_iou,
    default_detectors,
    dlib_model_path,
    expand_detector_names,
    merge_faces,
    run_detector,
    run_tiled,
)
from p3m.detection.multipass import (
    DETECTION_PRESETS,
    DetectionConfig,
    FaceDetections,
    PassRecord,
    detect,
    detect_faces,
)

__all__ = [
    "DEFAULT_DETECTORS",
    "DETECTION_PRESETS",
    "DETECTOR_NAMES",
    "DetectionConfig",
    "Face",
    "FaceDetections",
    "PassRecord",
    "available_detectors",
    "box_iou",
    "default_detectors",
    "detect",
    "detect_faces",
    "dlib_model_path",
    "expand_detector_names",
    "merge_faces",
    "run_detector",
    "run_tiled",
]
