"""`p3m.anonymize`: detect faces, outline them, keep the matte's transition area, obfuscate.

The P3M-10k recipe (paper section 3.2, Fig. 3) for one image:

    >>> result = anonymize(image, alpha, method="blur")
    >>> result.image, result.facemask, result.faces          # uint8 H x W x 3, bool H x W, [Face]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np

from p3m.detection.faces import DEFAULT_DETECTORS, Face, detect_faces
from p3m.errors import P3MError, ShapeMismatchError
from p3m.privacy.facemask import TRANSITION_MARGIN, face_mask, transition_area
from p3m.privacy.landmarks import add_landmarks
from p3m.privacy.obfuscation import ObfuscationRegion, obfuscate

__all__ = ["AnonymizeResult", "anonymize", "compute_alpha", "face_masks_for_image"]

logger = logging.getLogger(__name__)

COMPUTED_ALPHA_SNAP = 0.04
KEPT_FRACTION_WARNING = 0.05  # warn when the transition area takes more of the face than this

NO_ALPHA_WARNING = (
    "no alpha matte: the transition area (0 < alpha < 1) was not excluded from the face mask, "
    "so hair over the face may be obfuscated too"
)


@dataclass(frozen=True)
class AnonymizeResult:
    """The anonymised image (RGB uint8), the mask that was obfuscated (bool H x W) and the faces.

    `warnings` lists what a person should check (no face found, landmark fallback, no alpha);
    `regions` the obfuscated regions with the blur sigma / mosaic block each got.
    """

    image: np.ndarray
    facemask: np.ndarray
    faces: list[Face]
    method: str = "blur"
    warnings: list[str] = field(default_factory=list)
    regions: list[ObfuscationRegion] = field(default_factory=list)
    alpha: np.ndarray | None = field(default=None, repr=False)


def compute_alpha(image: np.ndarray, model: str = "auto") -> np.ndarray:
    """Alpha matte (float32 H x W, 8-bit steps) from a matting model, for `--alpha-from`.

    "selfie-cf" is the offline classical pipeline; any other name goes to `p3m.matte` ("auto" =
    the offline matting default). A computed matte is an estimate: values within
    `COMPUTED_ALPHA_SNAP` of 0 or 1 are snapped there, and the rest quantised to 8 bits, so that
    estimation noise inside the face (0.99...) does not punch holes in the face mask.
    """
    if model == "selfie-cf":
        from p3m.inference.selfie_cf import matte_selfie_cf

        alpha = matte_selfie_cf(image)
    else:
        from p3m.inference import matte

        result = matte(image, model=model, foreground=False)
        if result.note:
            logger.info("alpha from %s: %s", result.model, result.note)
        alpha = result.alpha
    alpha = np.clip(np.asarray(alpha, np.float32), 0, 1)
    alpha = np.round(alpha * 255).astype(np.float32) / np.float32(255)
    alpha[alpha >= 1 - COMPUTED_ALPHA_SNAP] = 1
    alpha[alpha <= COMPUTED_ALPHA_SNAP] = 0
    return alpha


def _as_alpha(alpha: Any, shape: tuple[int, ...]) -> np.ndarray:
    from p3m.io import read_alpha

    if isinstance(alpha, str | PathLike):
        alpha = read_alpha(alpha)
    alpha = np.asarray(alpha)
    if alpha.ndim == 3 and alpha.shape[2] == 1:
        alpha = alpha[:, :, 0]
    if alpha.ndim != 2:
        raise P3MError(f"alpha matte must be H x W, got shape {alpha.shape}")
    if alpha.dtype == np.uint8:
        alpha = alpha.astype(np.float32) / np.float32(255)
    if alpha.shape != tuple(shape[:2]):
        raise ShapeMismatchError(
            f"alpha matte is {alpha.shape[1]}x{alpha.shape[0]}, image is {shape[1]}x{shape[0]}"
        )
    return alpha.astype(np.float32, copy=False)


def face_masks_for_image(
    image: np.ndarray,
    alpha: np.ndarray | None = None,
    detectors: Sequence[str] = DEFAULT_DETECTORS,
    landmarks: str = "mediapipe",
    min_confidence: float = 0.5,
    transition_margin: int = TRANSITION_MARGIN,
) -> tuple[np.ndarray, list[Face], list[str]]:
    """Face mask (bool H x W) of every face in `image`, the faces (with landmarks) and warnings.

    Detection, landmarks and the transition-area exclusion without obfuscation: P3M-CP uses it to
    cut source faces. `alpha` float32 in [0, 1] (or uint8) or None to skip the exclusion.
    """
    if alpha is not None:
        alpha = _as_alpha(alpha, image.shape)
    faces = detect_faces(image, detectors, min_confidence=min_confidence)
    faces, warnings = add_landmarks(image, faces, scheme=landmarks)
    facemask = face_mask(image.shape, faces, None)
    if alpha is not None:
        face_area = int(facemask.sum())
        facemask &= ~transition_area(alpha, transition_margin)
        kept = face_area - int(facemask.sum())
        if face_area and kept / face_area > KEPT_FRACTION_WARNING:
            warnings.append(
                f"{100 * kept / face_area:.0f}% of the face area is left unobfuscated because the "
                "matte is semi-transparent there: check the audit and the review"
            )
    return facemask, faces, warnings


def anonymize(
    image: Any,
    alpha: Any = None,
    method: str = "blur",
    *,
    alpha_from: str | None = None,
    facemask: np.ndarray | None = None,
    detectors: Sequence[str] = DEFAULT_DETECTORS,
    landmarks: str = "mediapipe",
    min_confidence: float = 0.5,
    transition_margin: int = TRANSITION_MARGIN,
    strength: float = 1.0,
) -> AnonymizeResult:
    """Obfuscate every face in `image` except its semi-transparent pixels (the P3M-10k recipe).

    `image`: path, PIL image or RGB uint8 array. `alpha`: path or float32 [0, 1] / uint8 matte of
    the same size; None with `alpha_from=None` skips the transition-area exclusion (with a
    warning), `alpha_from="auto"` / "selfie-cf" / a model name computes one. `method`: "blur",
    "mosaic" or "mask" (zeros). `facemask` (bool or 0/255, H x W): a hand-made mask used instead
    of detection (its transition area is still excluded). Pixels outside the final mask, and every
    pixel with 0 < alpha < 1, are bit-identical to the input.
    """
    from p3m.io import load_image_input

    image = load_image_input(image)
    warnings: list[str] = []
    if alpha is not None:
        alpha = _as_alpha(alpha, image.shape)
    elif alpha_from is not None:
        alpha = compute_alpha(image, alpha_from)
    else:
        warnings.append(NO_ALPHA_WARNING)
    if facemask is not None:
        manual = np.asarray(facemask)
        if manual.shape[:2] != image.shape[:2]:
            raise ShapeMismatchError(
                f"face mask is {manual.shape[1]}x{manual.shape[0]}, image is {image.shape[1]}x{image.shape[0]}"
            )
        final_mask = manual.astype(bool) if manual.ndim == 2 else manual[:, :, 0].astype(bool)
        if alpha is not None:
            final_mask = final_mask & ~transition_area(alpha, transition_margin)
        faces: list[Face] = []
    else:
        final_mask, faces, landmark_warnings = face_masks_for_image(
            image, alpha, detectors, landmarks, min_confidence, transition_margin
        )
        warnings += landmark_warnings
        if not faces:
            warnings.append("no face found: annotate the face mask by hand")
    anonymised, regions = obfuscate(image, final_mask, method, strength, [f.box for f in faces])
    for message in warnings:
        logger.info(message)
    return AnonymizeResult(
        image=anonymised,
        facemask=final_mask,
        faces=faces,
        method=method,
        warnings=warnings,
        regions=regions,
        alpha=alpha,
    )
