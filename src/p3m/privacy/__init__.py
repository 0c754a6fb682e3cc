"""Privacy tools: the P3M-10k face-obfuscation recipe, matting-aware, with audit and review.

    >>> from p3m.privacy import anonymize
    >>> result = anonymize(image, alpha, method="blur")      # faces blurred, hair untouched

Modules: `landmarks` (Face Mesh / dlib68 and the private
polygon), `facemask` (polygons minus the transition area), `obfuscation` (blur, mosaic, mask),
`pipeline` (`anonymize`), `audit`, `review` (contact sheet), `dataset` (folder runs).
Heavy libraries (mediapipe, dlib) are imported on first use.
"""

from __future__ import annotations

from p3m.detection.faces import Face, available_detectors, detect_faces
from p3m.privacy.facemask import face_mask
from p3m.privacy.pipeline import AnonymizeResult, anonymize, face_masks_for_image

__all__ = [
    "AnonymizeResult",
    "Face",
    "anonymize",
    "available_detectors",
    "detect_faces",
    "face_mask",
    "face_masks_for_image",
]
