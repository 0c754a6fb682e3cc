"""`p3m.anonymize`: find every face, mask every feature, keep the hair band, obfuscate, verify.

The P3M-10k recipe (paper section 3.2, Fig. 3) for one image, made to hold on real photos:

1. faces: `p3m.detection.detect` (CenterFace, both MediaPipe models and dlib where installed;
   scales, gated upscaled windows, four orientations);
2. landmarks for every face (`p3m.privacy.landmarks`; an ellipse from box and keypoints where
   they fail or disagree), and each face's private area: the jaw-and-brow outline plus the hull
   of every inner-face landmark with a margin (`p3m.privacy.facemask.face_areas`);
3. the transition area (0 < alpha < 1) taken out: with a given (exact) matte, every such pixel
   is left bit-identical; with an estimated matte, never inside the inner face;
4. obfuscation per face (blur / mosaic / zero fill), then the identity check of
   `p3m.privacy.verification`: a face still recognised by dlib's descriptor is obfuscated
   again, stronger, until it is not; faces where even a solid fill does not clear the margin
   are "unverified" and the image needs a person's look.

    >>> result = anonymize(image, alpha, method="blur")
    >>> result.image, result.facemask, result.faces          # uint8 H x W x 3, bool H x W, [Face]
    >>> result.rgba                                           # H x W x 4 with the input's alpha
    >>> result.save("anonymised.png")                         # RGBA when the input had alpha
    >>> result.report()                                       # the per-image privacy report
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from os import PathLike
from typing import Any

import numpy as np

from p3m.detection.faces import DEFAULT_DETECTORS, Face
from p3m.detection.multipass import DetectionConfig, detect
from p3m.errors import ConfigError, MissingDependencyError, P3MError, ShapeMismatchError
from p3m.privacy.facemask import (
    TRANSITION_MARGIN,
    FaceArea,
    face_areas,
    spared_area,
    transition_area,
)
from p3m.privacy.landmarks import add_landmarks, dlib5_points
from p3m.privacy.obfuscation import (
    ObfuscationRegion,
    obfuscate,
    obfuscate_area,
    strengthening_ladder,
)
from p3m.privacy.verification import DEFAULT_MARGIN, NO_DLIB_NOTE, resolve_verify

__all__ = [
    "AnonymizeResult",
    "anonymize",
    "blank_hidden",
    "compute_alpha",
    "face_masks_for_image",
    "input_alpha_channel",
    "read_with_alpha",
]

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

    `image` (uint8 H x W x 3) holds the colour only: for an input with its own alpha channel
    (RGBA, LA, palette with a transparent index) that alpha is in `input_alpha`, and the pixels
    it hid (alpha 0) are black in `image`, so that an RGB save, a viewer or a PNG whose alpha
    is dropped never shows what the input had erased. `rgba` (uint8 H x W x 4) is the image
    with that alpha (255 where the input had none); `save(path)` writes it (RGBA when the
    input had an alpha channel), as `p3m anonymize` does.

    `warnings` lists what a person should check (no face found, landmark fallback, no alpha,
    unverified faces); `regions` the obfuscated regions with the blur sigma / mosaic block each
    got; `faces[i].obfuscation` the final method, strength, parameter and identity distance of
    each face. `needs_annotation` gives the reasons the image must be looked at by a person
    (empty when none). `input_alpha` is the input's own alpha channel (uint8 H x W) when it had
    one that is not fully opaque: outputs keep it, so nothing hidden becomes visible.
    `alpha_estimated` says whether `alpha` was estimated (then the inner face was never
    spared); `verify` which verification ran ("identity" or "none"); `detection` the search's
    timing summary (`FaceDetections.summary`); `spared_pixels` the face-area pixels left
    untouched for the transition area.
    """

    image: np.ndarray
    facemask: np.ndarray
    faces: list[Face]
    method: str = "blur"
    warnings: list[str] = field(default_factory=list)
    regions: list[ObfuscationRegion] = field(default_factory=list)
    alpha: np.ndarray | None = field(default=None, repr=False)
    alpha_estimated: bool = False
    input_alpha: np.ndarray | None = field(default=None, repr=False)
    verify: str = "none"
    identity_margin: float = DEFAULT_MARGIN
    detection: dict = field(default_factory=dict)
    spared_pixels: int = 0
    needs_annotation: list[str] = field(default_factory=list)

    @property
    def rgba(self) -> np.ndarray:
        """The anonymised image with the input's own alpha: uint8 H x W x 4 (alpha 255 where
        the input had none)."""
        alpha = self.input_alpha
        if alpha is None:
            alpha = np.full(self.image.shape[:2], 255, np.uint8)
        return np.dstack([self.image, alpha])

    def save(self, path: str | PathLike[str], quality: int = 95) -> None:
        """Write the anonymised image atomically, without metadata, in the format of the suffix
        (.png, .jpg, .webp, .tif, .bmp; `quality` for JPEG/WebP). An input with an alpha channel
        is written with it (RGBA: PNG, WebP or TIFF; `ImageWriteError` for JPEG or BMP, which
        cannot hold it). Raises `ImageWriteError` for an unknown suffix or a failed write."""
        from pathlib import Path

        from p3m.errors import ImageWriteError
        from p3m.io import write_image

        if self.input_alpha is None:
            write_image(path, self.image, quality)
            return
        if Path(path).suffix.lower() in (".jpg", ".jpeg", ".bmp"):
            raise ImageWriteError(
                "the input had an alpha channel, which this format cannot hold: save as .png, .webp "
                "or .tif (or save result.image, whose hidden pixels are black)",
                path,
            )
        write_image(path, self.rgba, quality)

    @property
    def strengthened(self) -> int:
        """Faces obfuscated more strongly than asked because they were still recognised."""
        return sum(bool((f.obfuscation or {}).get("strengthened")) for f in self.faces)

    @property
    def unverified(self) -> int:
        return sum((f.obfuscation or {}).get("status") == "unverified" for f in self.faces)

    @property
    def min_identity_distance(self) -> float | None:
        distances = [
            f.obfuscation["identity_distance"]
            for f in self.faces
            if f.obfuscation and f.obfuscation.get("identity_distance") is not None
        ]
        return min(distances) if distances else None

    def report(self) -> dict:
        """The privacy report of this image (JSON-friendly; see `p3m.privacy.report`)."""
        by_detector: dict[str, int] = {}
        for face in self.faces:
            for name in face.detectors:
                by_detector[name] = by_detector.get(name, 0) + 1
        return {
            "faces": len(self.faces),
            "faces_by_detector": by_detector,
            "faces_masked": sum(bool((f.obfuscation or {}).get("pixels")) for f in self.faces),
            "landmark_fallbacks": sum(f.landmarks is None for f in self.faces),
            "mask_pixels": int(self.facemask.sum()),
            "spared_pixels": int(self.spared_pixels),
            "alpha": "none" if self.alpha is None else ("estimated" if self.alpha_estimated else "given"),
            "verify": self.verify,
            "identity_margin": self.identity_margin,
            "strengthened": self.strengthened,
            "unverified": self.unverified,
            "min_identity_distance": self.min_identity_distance,
            "needs_annotation": list(self.needs_annotation),
            "detection": dict(self.detection),
        }


_ALPHA_MATTERS: dict[str, Any] = {}
_ALPHA_MATTERS_LOCK = threading.Lock()
_ALPHA_MATTERS_KEPT = 2


def alpha_matter(model: str) -> Any:
    """The `p3m.Matter` that estimates mattes for `alpha_from=model`: built (weights loaded)
    once per process and kept for the next images (the last two models asked for).

    Raises what `p3m.Matter` raises (`ModelNotFoundError` for an unknown model or weights that
    are not installed, `CheckpointError`, ...).
    """
    with _ALPHA_MATTERS_LOCK:
        matter = _ALPHA_MATTERS.get(model)
        if matter is None:
            from p3m.inference import Matter

            matter = Matter(model)
            while len(_ALPHA_MATTERS) >= _ALPHA_MATTERS_KEPT:
                _ALPHA_MATTERS.pop(next(iter(_ALPHA_MATTERS)))
            _ALPHA_MATTERS[model] = matter
        return matter


def check_alpha_from(model: str | None, name: str = "alpha_from") -> None:
    """Raise `ConfigError` naming the option `name` (the command line passes "--alpha-from")
    unless `model` can estimate mattes: None, "auto" (selfie-cf when no P3M-Net is cached),
    "selfie-cf", or a model whose weights load (loaded here once and kept, see `alpha_matter`).

    Checked once before a run, so that a misspelt model fails at once instead of leaving the
    whole face area of every image obfuscated with a warning per image.
    """
    if model is None or model in ("auto", "selfie-cf"):
        return
    try:
        alpha_matter(model)
    except MissingDependencyError:
        raise
    except P3MError as error:
        raise ConfigError(f"{name} {model!r} cannot estimate mattes: {error}") from None


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
        result = alpha_matter(model)(image, foreground=False)
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


def blank_hidden(image: np.ndarray, input_alpha: np.ndarray | None) -> np.ndarray:
    """`image` with the pixels the input's own alpha hid (alpha 0) set to black: what the input
    had erased carries no colour in the result (see `AnonymizeResult`)."""
    if input_alpha is None:
        return image
    hidden = input_alpha == 0
    if not hidden.any():
        return image
    image = image.copy()
    image[hidden] = 0
    return image


def input_alpha_channel(source: Any) -> np.ndarray | None:
    """The alpha channel (uint8 H x W) of an image input, None when it has none or it is fully
    opaque. `source`: a path, encoded bytes, PIL image or array as `anonymize` takes. Read by
    `p3m.io.load_image_and_alpha`: the pixel cap is checked from the header before anything is
    decoded, and EXIF orientation is applied so the channel lines up with the pixels."""
    return read_with_alpha(source)[1]


def read_with_alpha(source: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(RGB uint8 H x W x 3, the input's own alpha as uint8 H x W or None) of an image input
    (path, encoded bytes, PIL image or array), decoded once; see `input_alpha_channel`."""
    from p3m.io import alpha_to_uint8, load_image_and_alpha

    image, alpha = load_image_and_alpha(source)
    return image, None if alpha is None else alpha_to_uint8(alpha)


def _detection_config(
    config: DetectionConfig | str | None,
    detectors: Sequence[str] | str,
    min_confidence: float,
) -> DetectionConfig:
    if isinstance(config, str):
        return DetectionConfig.preset(config)
    if config is not None:
        return config
    names = (detectors,) if isinstance(detectors, str) else tuple(detectors)
    return DetectionConfig(detectors=names, min_confidence=min_confidence)


def _find_faces(
    image: np.ndarray, landmarks: str, config: DetectionConfig
) -> tuple[list[Face], list[str], dict]:
    found = detect(image, config)
    faces, notes = add_landmarks(image, found.faces, scheme=landmarks)
    return faces, notes, found.summary()


def face_masks_for_image(
    image: np.ndarray,
    alpha: np.ndarray | None = None,
    detectors: Sequence[str] = DEFAULT_DETECTORS,
    landmarks: str = "mediapipe",
    min_confidence: float = 0.5,
    transition_margin: int = TRANSITION_MARGIN,
    alpha_estimated: bool = False,
    detection: DetectionConfig | str | None = None,
) -> tuple[np.ndarray, list[Face], list[str]]:
    """Face mask (bool H x W) of every face in `image`, the faces (with landmarks) and warnings.

    Detection, landmarks and the transition-area exclusion without obfuscation: P3M-CP uses it to
    cut source faces. `alpha` float32 in [0, 1] (or uint8) or None to skip the exclusion.
    """
    if alpha is not None:
        alpha = _as_alpha(alpha, image.shape)
    config = _detection_config(detection, detectors, min_confidence)
    faces, warnings, _ = _find_faces(image, landmarks, config)
    areas = face_areas(image.shape, faces)
    facemask = np.zeros(image.shape[:2], bool)
    for area in areas:
        area.paste(facemask)
    if alpha is not None:
        face_area = int(facemask.sum())
        facemask &= ~spared_area(image.shape, faces, alpha, transition_margin, alpha_estimated)
        kept = face_area - int(facemask.sum())
        if face_area and kept / face_area > KEPT_FRACTION_WARNING:
            warnings.append(_kept_warning(kept / face_area))
    return facemask, faces, warnings


def _kept_warning(fraction: float) -> str:
    return (
        f"{100 * fraction:.0f}% of the face area is left unobfuscated because the matte is "
        "semi-transparent there: check the audit and the review"
    )


DOUBTFUL_SCORE = 0.5


def doubtful_detection(face: Face) -> bool:
    """A detection with little evidence of being a face: a score under `DOUBTFUL_SCORE` and no
    landmarks found. Not strengthened here (no black blob on a spoon: a person decides), and
    left out of the audit's identity check (images and videos)."""
    return face.score < DOUBTFUL_SCORE and face.landmarks is None


def _obfuscate_faces(
    image: np.ndarray,
    faces: list[Face],
    areas: list[FaceArea],
    spared: np.ndarray | None,
    method: str,
    strength: float,
    verify: str,
    margin: float,
) -> tuple[np.ndarray, np.ndarray, list[Face], list[str]]:
    """Per-face obfuscation with the identity loop; returns image, mask, faces with records,
    and the reasons for needing annotation."""
    out = image.copy()
    facemask = np.zeros(image.shape[:2], bool)
    masks: list[np.ndarray] = []
    records: list[dict] = []
    for area in areas:
        x0, y0, x1, y1 = area.window
        mask = area.mask if spared is None else area.mask & ~spared[y0:y1, x0:x1]
        masks.append(mask)
        facemask[y0:y1, x0:x1] |= mask
        records.append({"pixels": int(mask.sum()), "spared": int(area.mask.sum() - mask.sum())})
    ladder = strengthening_ladder(method, strength)
    steps = [0] * len(faces)

    def apply(index: int) -> None:
        step_method, step_strength = ladder[steps[index]]
        parameter = obfuscate_area(
            image, out, areas[index].window, masks[index], faces[index].size,
            step_method, step_strength,
        )  # fmt: skip
        records[index].update(method=step_method, strength=step_strength, parameter=parameter)

    for index in range(len(faces)):
        apply(index)
    reasons: list[str] = []
    if verify == "identity" and faces:
        from p3m.privacy.verification import IdentityVerifier

        verifier = IdentityVerifier()
        layouts = [dlib5_points(face) for face in faces]
        checked = [i for i, points in enumerate(layouts) if points is not None and records[i]["pixels"]]
        reference = dict(zip(checked, verifier.descriptors(verifier.chips(image, [layouts[i] for i in checked])), strict=True))  # fmt: skip
        pending = list(checked)
        while pending:
            now = verifier.descriptors(verifier.chips(out, [layouts[i] for i in pending]))
            retry = []
            for i, descriptor in zip(pending, now, strict=True):
                distance = float(np.linalg.norm(reference[i] - descriptor))
                records[i].setdefault("identity_distance_initial", round(distance, 4))
                records[i]["identity_distance"] = round(distance, 4)
                if distance >= margin:
                    records[i]["status"] = "verified"
                elif doubtful_detection(faces[i]):
                    # Likely not a face (a texture the low threshold let in): no black blob on
                    # a spoon; a person decides.
                    records[i]["status"] = "unverified"
                    records[i]["note"] = (
                        f"weak detection (score {faces[i].score:.2f}) without landmarks: "
                        "possibly not a face, not strengthened"
                    )
                elif steps[i] + 1 < len(ladder):
                    steps[i] += 1
                    apply(i)
                    retry.append(i)
                else:
                    records[i]["status"] = "unverified"
            pending = retry
        for i, record in enumerate(records):
            record["strengthened"] = steps[i] > 0
            if "status" not in record:
                record["status"] = "unchecked"
                record["note"] = (
                    "nothing left to obfuscate" if not record["pixels"]
                    else "no eye/nose keypoints to align a face chip"
                )  # fmt: skip
            if record["status"] == "unverified":
                how = record.get("note") or "even with a solid fill"
                reasons.append(
                    f"face {i} unverified: identity distance {record['identity_distance']:.3f} "
                    f"< {margin:.2f} ({how})"
                )
    else:
        for record in records:
            record.update(status="unchecked", strengthened=False)
    faces = [replace(face, obfuscation=record) for face, record in zip(faces, records, strict=True)]
    return out, facemask, faces, reasons


def anonymize(
    image: Any,
    alpha: Any = None,
    method: str = "blur",
    *,
    alpha_from: str | None = None,
    alpha_estimated: bool | None = None,
    facemask: np.ndarray | None = None,
    detectors: Sequence[str] = DEFAULT_DETECTORS,
    landmarks: str = "mediapipe",
    min_confidence: float = 0.5,
    transition_margin: int = TRANSITION_MARGIN,
    strength: float = 1.0,
    verify: str = "auto",
    identity_margin: float = DEFAULT_MARGIN,
    detection: DetectionConfig | str | None = None,
) -> AnonymizeResult:
    """Obfuscate every face in `image`, sparing the matte's semi-transparent pixels (P3M-10k).

    `image`: path, PIL image or RGB(A) uint8 array (an alpha channel is kept in
    `result.input_alpha`). `alpha`: path or float32 [0, 1] / uint8 matte of the same size, or
    the `MatteResult` of `p3m.matte` (then an estimate: `alpha_estimated` defaults to True);
    None with `alpha_from=None` skips the transition-area exclusion (with a warning);
    `alpha_from="auto"` / "selfie-cf" / a model name estimates one (if that fails, the whole
    face is obfuscated, with a warning). `alpha_estimated` (default: True exactly when p3m
    estimated the matte) makes the inner face never spared. `method`: "blur", "mosaic" or
    "mask" (zeros); `strength` multiplies the blur sigma / mosaic block. `facemask` (bool or
    0/255, H x W): a hand-made mask used instead of detection (its transition area is still
    excluded; nothing to verify). `verify`: "identity" (dlib's face descriptor attacks each
    obfuscated face; still recognised within `identity_margin` -> strengthened), "none", or
    "auto" (identity where dlib is installed). `detectors` / `min_confidence`, or a whole
    `detection` config or preset name ("thorough", the default search; "standard": without the
    upscaled windows of the turned views, a third less CenterFace work, fewer small turned
    faces found; see `p3m.detection.DetectionConfig`), set the face search.

    With a given (exact) matte, pixels outside the final mask and every pixel with
    0 < alpha < 1 are bit-identical to the input, except the pixels the input's own alpha hid
    (alpha 0), which are black (`result.rgba` / `result.save` keep that alpha). Raises `ShapeMismatchError` for a matte or
    mask of another size, `MissingDependencyError` naming the install command for a missing
    detector or for `verify="identity"` without dlib, `ConfigError` for an unknown preset.
    """
    image, input_alpha = read_with_alpha(image)
    requested, verify = verify, resolve_verify(verify)
    warnings: list[str] = []
    if requested == "auto" and verify == "none":
        warnings.append(NO_DLIB_NOTE)
    estimated = False
    if alpha is not None:
        from p3m.inference.api import MatteResult

        if isinstance(alpha, MatteResult):  # p3m.matte's result: an estimate, not a hand-made matte
            alpha, alpha_estimated = alpha.alpha, True if alpha_estimated is None else alpha_estimated
        alpha = _as_alpha(alpha, image.shape)
        estimated = bool(alpha_estimated)
    elif alpha_from is not None:
        try:
            alpha = compute_alpha(image, alpha_from)
            estimated = True if alpha_estimated is None else bool(alpha_estimated)
        except MissingDependencyError:
            raise
        except (P3MError, ValueError, RuntimeError) as error:
            alpha = None
            warnings.append(
                f"matte estimation failed ({error}); the transition area was not excluded: "
                "the whole face area is obfuscated"
            )
    else:
        warnings.append(NO_ALPHA_WARNING)

    if facemask is not None:
        manual = np.asarray(facemask)
        if manual.shape[:2] != image.shape[:2]:
            raise ShapeMismatchError(
                f"face mask is {manual.shape[1]}x{manual.shape[0]}, image is {image.shape[1]}x{image.shape[0]}"
            )
        final_mask = manual.astype(bool) if manual.ndim == 2 else manual[:, :, 0].astype(bool)
        spared_pixels = 0
        if alpha is not None:
            kept = final_mask & transition_area(alpha, transition_margin)
            spared_pixels = int(kept.sum())
            final_mask = final_mask & ~kept
        anonymised, regions = obfuscate(image, final_mask, method, strength)
        return AnonymizeResult(
            image=blank_hidden(anonymised, input_alpha), facemask=final_mask, faces=[], method=method,
            warnings=warnings, regions=regions, alpha=alpha, alpha_estimated=estimated, input_alpha=input_alpha,
            verify="none", identity_margin=identity_margin, spared_pixels=spared_pixels,
        )  # fmt: skip

    config = _detection_config(detection, detectors, min_confidence)
    faces, notes, detection_summary = _find_faces(image, landmarks, config)
    warnings += notes
    areas = face_areas(image.shape, faces)
    spared = None
    if alpha is not None and faces:
        spared = spared_area(image.shape, faces, alpha, transition_margin, estimated)
    anonymised, final_mask, faces, reasons = _obfuscate_faces(
        image, faces, areas, spared, method, strength, verify, identity_margin
    )
    face_pixels = np.zeros(image.shape[:2], bool)
    for area in areas:
        area.paste(face_pixels)
    spared_pixels = int(face_pixels.sum() - final_mask.sum())
    if face_pixels.any() and spared_pixels / face_pixels.sum() > KEPT_FRACTION_WARNING:
        warnings.append(_kept_warning(spared_pixels / face_pixels.sum()))
    needs_annotation = list(reasons)
    if not faces:
        warnings.append("no face found: annotate the face mask by hand")
        needs_annotation.append("no face found")
    warnings += reasons
    strengthened = [i for i, f in enumerate(faces) if f.obfuscation.get("strengthened")]
    if strengthened:
        warnings.append(
            f"{len(strengthened)} face(s) were still recognised and were obfuscated more strongly "
            f"(faces {', '.join(map(str, strengthened))})"
        )
    regions = [
        ObfuscationRegion(
            box=area.window, size=round(face.size, 1), parameter=face.obfuscation.get("parameter", 0.0)
        )
        for face, area in zip(faces, areas, strict=True)
        if face.obfuscation.get("pixels")
    ]
    for message in warnings:
        logger.info(message)
    return AnonymizeResult(
        image=blank_hidden(anonymised, input_alpha),
        facemask=final_mask,
        faces=faces,
        method=method,
        warnings=warnings,
        regions=regions,
        alpha=alpha,
        alpha_estimated=estimated,
        input_alpha=input_alpha,
        verify=verify,
        identity_margin=identity_margin,
        detection=detection_summary,
        spared_pixels=spared_pixels,
        needs_annotation=needs_annotation,
    )
