"""Privacy tools: the P3M-10k face-obfuscation recipe, matting-aware, with audit and review.

    >>> from p3m.privacy import anonymize
    >>> result = anonymize(image, alpha, method="blur")      # faces blurred, hair untouched

Modules: `landmarks` (Face Mesh / dlib68, the private polygons and the coverage hull),
`facemask` (face areas minus the transition area; the inner face for estimated mattes),
`obfuscation` (blur, mosaic, mask; the strengthening ladder), `verification` (the identity
attack), `pipeline` (`anonymize`), `report` (the run's privacy report), `audit`, `review`
(contact sheet), `dataset` (folder runs), `testdata` (synthetic group photos and posed faces
for measuring all this). Face detection is `p3m.detection`. Heavy libraries (onnxruntime,
mediapipe, dlib) are imported on first use.
"""

from __future__ import annotations

from p3m.detection.faces import Face, available_detectors
from p3m.detection.multipass import detect_faces
from p3m.privacy.facemask import face_mask
from p3m.privacy.pipeline import AnonymizeResult, anonymize, face_masks_for_image
from p3m.privacy.report import PrivacyReport

__all__ = [
    "AnonymizeResult",
    "PrivacyReport",
    "Face",
    "anonymize",
    "available_detectors",
    "detect_faces",
    "face_mask",
    "face_masks_for_image",
]
