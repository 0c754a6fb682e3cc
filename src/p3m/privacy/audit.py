"""Audit of an anonymised image: do detectors still find faces, does the identity still match?

1. Every available detector (both MediaPipe models, dlib HOG and CNN) runs again on the output;
   each detection is a face "still found". MediaPipe's short-range model responds to head shape
   (hair, ears, hat) as well, so it can fire on a face whose interior is fully masked: read its
   hits together with the identity check.
2. With dlib installed, the identity check compares dlib's 128-D face descriptor (ResNet model
   from `face_recognition_models`) of each original face with the descriptor of the same region
   of the output, both aligned on the original's landmarks (dlib's 5-point layout; its 5-point
   predictor on the box when a face has no landmarks or keypoints). dlib's published
   same-person threshold is a distance below 0.6; a face under it is an identity leak.
   `p3m.privacy.verification` runs this attack during anonymisation and strengthens faces
   that fail it; the audit repeats it afterwards, with the detectors.

    >>> report = audit_image(anonymised, original=image, faces=faces)
    >>> report.faces_found, report.identity_matches
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from p3m.detection.faces import (
    Face,
    available_detectors,
    dlib_model_path,
    expand_detector_names,
    merge_faces,
    run_detector,
)

__all__ = [
    "IDENTITY_THRESHOLD",
    "UNCOVERED_BELOW",
    "AuditResult",
    "audit_anonymized",
    "audit_image",
    "image_status",
    "identity_distances",
]

logger = logging.getLogger(__name__)

IDENTITY_THRESHOLD = 0.6
# A face the audit finds with less than this share of its box inside the face mask lies outside
# every obfuscated region: a face the anonymisation missed, not head shape around a masked face.
UNCOVERED_BELOW = 0.1
# A second look at a weak detection outside every mask: the region with this margin (share of
# the box on each side), its long side scaled to SECOND_LOOK_SIDE pixels, given to these
# detectors at their face-search thresholds.
SECOND_LOOK_MARGIN = 0.5
SECOND_LOOK_SIDE = 256
SECOND_LOOK_DETECTORS = (("centerface", 0.1), ("mediapipe-full", 0.5), ("mediapipe-short", 0.5))


@dataclass
class AuditResult:
    """Faces detectors still find in an output (merged across detectors) and identity distances."""

    faces_found: int
    by_detector: dict[str, int]
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    identity_distances: list[float | None] | None = None
    """One per original face (None: not checked at all). A face's own entry is None when it was
    not checked: a doubtful detection (`p3m.privacy.pipeline.doubtful_detection`: a low score and
    no landmarks), which is masked and listed for annotation but is no evidence of an identity."""
    uncovered: list[tuple[float, float, float, float]] = field(default_factory=list)
    unconfirmed: list[tuple[float, float, float, float]] = field(default_factory=list)
    """Weak detections outside every face mask that a second look did not confirm (see
    `audit_image`): reported, not counted as faces left visible."""

    @property
    def missed_faces(self) -> int:
        """Faces found by the audit outside every obfuscated region (see `audit_image`)."""
        return len(self.uncovered)

    def warning(self) -> str | None:
        """One line for a failed audit, None when it passed. Missed faces come first: they are
        leaks, where a detection on a masked face is often head shape (see the module doc)."""
        if self.passed:
            return None
        parts = []
        if self.uncovered:
            boxes = ", ".join("(" + ", ".join(str(round(v)) for v in box) + ")" for box in self.uncovered)
            parts.append(
                f"audit: {len(self.uncovered)} face(s) found outside every face mask, left visible "
                f"(possibly missed by detection) at {boxes}"
            )
        parts.append(
            f"audit: {self.faces_found} face(s) still detected, {self.identity_matches} identity match(es)"
        )
        if self.unconfirmed:
            boxes = ", ".join("(" + ", ".join(str(round(v)) for v in box) + ")" for box in self.unconfirmed)
            parts.append(
                f"audit: {len(self.unconfirmed)} weak face-like detection(s) outside every face mask "
                f"at {boxes}, not confirmed by a second look (check them in the review)"
            )
        return "; ".join(parts)

    @property
    def identity_matches(self) -> int:
        """Original faces whose identity still matches (descriptor distance < IDENTITY_THRESHOLD)."""
        return sum(d is not None and d < IDENTITY_THRESHOLD for d in self.identity_distances or ())

    @property
    def passed(self) -> bool:
        """No face found at all and no identity match: a strict test (a face still detected
        inside its mask, or a weak unconfirmed detection, fails it). Whether the output leaks
        is `leaked`."""
        return self.faces_found == 0 and self.identity_matches == 0

    @property
    def leaked(self) -> bool:
        """A face left visible (outside every face mask, confirmed) or an identity that still
        matches: the audit's verdict "failed" on every surface (CLI manifest, service)."""
        return bool(self.uncovered) or self.identity_matches > 0

    def review_reasons(self) -> list[str]:
        """Why the output must not be shared before a person looks at it (`leaked`): faces left
        visible, identities that still match. Weak unconfirmed detections are not among them
        (see `to_check`)."""
        reasons = []
        if self.uncovered:
            reasons.append(f"{self.missed_faces} face(s) found by the audit outside every face mask (left visible)")
        if self.identity_matches:
            reasons.append(f"{self.identity_matches} identity match(es) after anonymisation")
        return reasons

    def to_check(self) -> str | None:
        """Weak face-like detections outside every mask that a second look did not confirm (the
        mission patch on scikit-image's astronaut): worth a glance, no evidence of a leak."""
        if not self.unconfirmed:
            return None
        boxes = ", ".join("(" + ", ".join(str(round(v)) for v in box) + ")" for box in self.unconfirmed)
        return (
            f"{len(self.unconfirmed)} weak face-like detection(s) outside every face mask at {boxes}, "
            "not confirmed by a second look"
        )

    def to_dict(self) -> dict:
        return {
            "faces_found": self.faces_found,
            "by_detector": dict(self.by_detector),
            "boxes": [[round(v, 1) for v in box] for box in self.boxes],
            "identity_distances": None
            if self.identity_distances is None
            else [None if d is None else round(d, 3) for d in self.identity_distances],
            "identity_matches": self.identity_matches,
            "uncovered": [[round(v, 1) for v in box] for box in self.uncovered],
            "unconfirmed": [[round(v, 1) for v in box] for box in self.unconfirmed],
            "passed": self.passed,
            "leaked": self.leaked,
        }


@functools.cache
def _recognizer():
    import dlib

    return (
        dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat"))),
        dlib.face_recognition_model_v1(
            str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat"))
        ),
    )


def _identity_available() -> bool:
    try:
        dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")
        import dlib  # noqa: F401
    except Exception:
        return False
    return True


def identity_distances(
    original: np.ndarray, anonymised: np.ndarray, faces: Sequence[Face]
) -> list[float]:
    """Descriptor distance between each face in `original` and the same region of `anonymised`.

    The alignment (5 points) comes from the original (its landmarks or keypoints, else dlib's
    5-point predictor on the box) and is reused for the output, so both descriptors see exactly
    the same face chip.
    """
    import dlib

    from p3m.detection.faces import _LOCK
    from p3m.privacy.landmarks import dlib5_points
    from p3m.privacy.verification import IdentityVerifier

    predictor, _ = _recognizer()
    original = np.ascontiguousarray(original)
    layouts = []
    for face in faces:
        points = dlib5_points(face)
        if points is None:
            x0, y0, x1, y1 = (round(v) for v in face.box)
            rect = dlib.rectangle(x0, y0, max(x0 + 1, x1 - 1), max(y0 + 1, y1 - 1))
            with _LOCK:
                shape = predictor(original, rect)
            points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], np.float32)
        layouts.append(points)
    return IdentityVerifier().distances(original, np.ascontiguousarray(anonymised), layouts)


def audit_image(
    anonymised: np.ndarray,
    detectors: Sequence[str] | None = None,
    original: np.ndarray | None = None,
    faces: Sequence[Face] = (),
    min_confidence: float = 0.5,
    facemask: np.ndarray | None = None,
) -> AuditResult:
    """Run `detectors` (default every available one) on `anonymised`; identity check if possible.

    The identity check needs `original` and the `faces` found on it, and dlib. With `facemask`
    (H x W, nonzero = obfuscated), a face found with less than `UNCOVERED_BELOW` of its box
    inside the mask is listed in `uncovered`: a face left visible, which callers report as a
    leak needing annotation. Unless it is a weak detection: found by dlib alone with a score
    under the face search's own dlib threshold (`DetectionConfig.dlib_confidence`), which the
    audit's lower threshold lets in (dlib HOG fires on round emblems, such as the mission patch
    on scikit-image's astronaut). Such a box gets a second look (`SECOND_LOOK_DETECTORS` on
    the region enlarged); when none of them finds a face there it goes to `unconfirmed`.
    """
    names = expand_detector_names(detectors) if detectors is not None else available_detectors()
    found: list[Face] = []
    by_detector: dict[str, int] = {}
    for name in names:
        hits = run_detector(anonymised, name, min_confidence=min_confidence)
        by_detector[name] = len(hits)
        found += hits
    merged = merge_faces(found)
    distances: list[float | None] | None = None
    if original is not None and faces and _identity_available():
        from p3m.privacy.pipeline import doubtful_detection

        # A doubtful detection (a 6 x 8 px "face" on a mission patch) is no evidence of an
        # identity: its distance would be a false leak (the video audit leaves it out too).
        checked = [face for face in faces if not doubtful_detection(face)]
        measured = iter(identity_distances(original, anonymised, checked) if checked else ())
        distances = [None if doubtful_detection(face) else next(measured) for face in faces]
    uncovered, unconfirmed = [], []
    if facemask is not None:
        covered = np.asarray(facemask) > 0
        height, width = covered.shape[:2]
        for face in merged:
            x0, y0, x1, y1 = face.box
            left, top = max(0, int(x0)), max(0, int(y0))
            right, bottom = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
            if right <= left or bottom <= top:
                continue
            if covered[top:bottom, left:right].mean() < UNCOVERED_BELOW:
                (uncovered if _confirmed(anonymised, face) else unconfirmed).append(face.box)
    return AuditResult(
        faces_found=len(merged),
        by_detector=by_detector,
        boxes=[f.box for f in merged],
        identity_distances=distances,
        uncovered=uncovered,
        unconfirmed=unconfirmed,
    )


def _confirmed(image: np.ndarray, face: Face) -> bool:
    """Whether a detection outside every face mask counts as a face left visible (see
    `audit_image`): anything but a lone weak dlib hit, or one that a second look confirms."""
    from p3m.detection.multipass import DetectionConfig

    if len(face.detectors) != 1 or not face.detectors[0].startswith("dlib"):
        return True
    if face.score >= DetectionConfig().dlib_confidence:
        return True
    from p3m.detection.people import padded_crop

    region = padded_crop(image, face.box, SECOND_LOOK_MARGIN, SECOND_LOOK_SIDE, enlarge=True)[0]
    if min(region.shape[:2]) < 2:
        return True
    available = set(available_detectors())
    looked = False
    for name, threshold in SECOND_LOOK_DETECTORS:
        if name not in available:
            continue
        looked = True
        if run_detector(region, name, min_confidence=threshold):
            return True
    return not looked  # nothing to look with: keep the finding


def image_status(result: Any, audit: AuditResult | None, manual_facemask: bool = False) -> tuple[str, list[str]]:
    """The status of one anonymised image and the reasons a person must look at it, as the
    CLI's manifest records it and the service answers it (`p3m.privacy.dataset.STATUSES`):
    "needs_annotation" when no face was found (and no hand-made mask given), "needs_review"
    when `result.needs_annotation` or the audit (`AuditResult.review_reasons`) gives a reason,
    else "done"."""
    reasons = list(getattr(result, "needs_annotation", ()))
    if not manual_facemask and not getattr(result, "faces", ()):
        return "needs_annotation", reasons or ["no face found"]
    if audit is not None:
        reasons += audit.review_reasons()
    return ("needs_review" if reasons else "done"), reasons


def audit_anonymized(result: Any, original: np.ndarray, detectors: Sequence[str] | None = None) -> AuditResult:
    """`audit_image` of a `p3m.anonymize` result (`result.image`, `.faces`, `.facemask`) against
    the `original` image: detectors, identity check, and the faces left outside every face mask."""
    return audit_image(
        result.image, detectors, original=original, faces=result.faces, facemask=result.facemask
    )

