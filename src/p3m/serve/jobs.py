"""The work one request does on an inference worker: decode, call the library, encode the answer.

Each job is a plain function of the worker's `Matter` that returns a `Reply` (status, bytes,
headers); it runs in a worker thread, never on the event loop, and anonymisation (whose dlib
detectors hold the GIL) in a worker process behind that thread (`InProcess`). Matting is `p3m.inference.Matter`
and anonymisation `p3m.privacy.anonymize`: this module only moves bytes and picks formats.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from p3m.errors import (
    ConfigError,
    ImageReadError,
    ImageTooLargeError,
    MissingDependencyError,
    P3MError,
)
from p3m.io import alpha_to_uint8, encode_png, load_image_and_alpha, load_image_input
from p3m.serve.encoding import data_url, header_text, jsonable, result_notes

__all__ = [
    "ANONYMIZE_OUTPUTS",
    "MATTE_OUTPUTS",
    "AnonymizeJob",
    "InProcess",
    "MatteJob",
    "Reply",
    "error_reply",
]

logger = logging.getLogger(__name__)

MATTE_OUTPUTS = ("rgba", "alpha", "foreground", "composite", "json")
ANONYMIZE_OUTPUTS = ("json", "png")

_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@dataclass
class Reply:
    """An HTTP answer built off the event loop."""

    status: int
    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, content: Any, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps(content, ensure_ascii=False, allow_nan=False).encode("utf-8")
    return Reply(status, body, "application/json", {**_NO_STORE, **(headers or {})})


def error_reply(status: int, detail: str, headers: dict[str, str] | None = None) -> Reply:
    """`{"detail": ...}` with a one-line message, as FastAPI answers its own errors."""
    return json_reply(status, {"detail": " ".join(str(detail).split())}, headers)


def _status_for(error: P3MError) -> int:
    if isinstance(error, ImageTooLargeError):
        return 413
    if isinstance(error, ImageReadError | ConfigError):
        return 400  # the upload or an option is wrong: the client can fix it
    if isinstance(error, MissingDependencyError):
        return 422  # a feature this server was installed without
    return 422  # a readable image the pipeline cannot process


def _failure(error: BaseException, what: str, image: np.ndarray | None) -> Reply:
    """A clear 4xx for anything the pipeline raises on an image; never a bare 500."""
    if isinstance(error, ImageTooLargeError):
        # For the client: the size and this server's cap, not how its operator raises the cap.
        return error_reply(413, f"{what}: {error.problem.split(';')[0]}")
    if isinstance(error, P3MError):
        return error_reply(_status_for(error), f"{what}: {error}")
    if isinstance(error, MemoryError):
        return error_reply(503, f"{what}: out of memory; try a smaller image", {"Retry-After": "30"})
    size = "" if image is None else f" ({image.shape[1]}x{image.shape[0]})"
    # A library bug on an odd input: the client gets a clear 422, the log the traceback.
    logger.error("%s%s failed", what, size, exc_info=error)
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    detail = f"{what}: p3m cannot process this image{size}: {type(error).__name__}"
    return error_reply(422, detail + (f": {message}" if message else ""))


def _named(what: str, file_name: str) -> str:
    """ "b.png (background image)": the upload's file name first, then which upload it is; the
    field alone for an upload without a file name."""
    return f"{file_name} ({what})" if file_name else what


def cover_crop(background: np.ndarray, height: int, width: int) -> np.ndarray:
    """The centred part of `background` with the aspect ratio of height x width (no stretching)."""
    rows, cols = background.shape[:2]
    if rows * width > cols * height:  # taller than needed: crop rows
        keep = max(1, round(cols * height / width))
        top = (rows - keep) // 2
        return background[top : top + keep]
    keep = max(1, round(rows * width / height))
    left = (cols - keep) // 2
    return background[:, left : left + keep]


def _result_headers(result: Any) -> dict[str, str]:
    headers = {"X-P3M-Model": header_text(str(getattr(result, "model", "")))}
    resized = getattr(result, "resized", None)
    if resized is not None:
        headers["X-P3M-Resized"] = header_text(resized.describe())
    notes = result_notes(result)
    if notes:
        headers["X-P3M-Note"] = header_text(" | ".join(notes))
    image_note = getattr(result, "image_note", None)
    if image_note:  # this image's own note (no person found, ...), without the model's
        headers["X-P3M-Image-Note"] = header_text(str(image_note))
    return headers


@dataclass(frozen=True)
class MatteJob:
    """`POST /api/matte`: one photo to a matte, a cut-out, a composite or all of them as JSON."""

    image: bytes
    output: str = "rgba"
    background: str | tuple[int, int, int] = "white"
    background_image: bytes | None = None
    max_image_pixels: int | None = None
    image_name: str = ""
    """The upload's file name, which error messages start with ("matte" without one)."""
    background_name: str = ""

    def __call__(self, matter: Any) -> Reply:
        rgb = None
        try:
            rgb, input_alpha = load_image_and_alpha(self.image, max_pixels=self.max_image_pixels)
            backdrop: Any = self.background
            if self.background_image is not None and self.output in ("composite", "json"):
                try:
                    backdrop = load_image_input(self.background_image, max_pixels=self.max_image_pixels)
                except P3MError as error:
                    return _failure(error, _named("background image", self.background_name), rgb)
                backdrop = cover_crop(backdrop, *rgb.shape[:2])
            result = matter(rgb, foreground=self.output != "alpha", input_alpha=input_alpha)
            return self._encode(result, backdrop)
        except Exception as error:  # noqa: BLE001 - every failure becomes a clear 4xx
            return _failure(error, self.image_name or "matte", rgb)

    def _encode(self, result: Any, backdrop: Any) -> Reply:
        headers = {**_NO_STORE, **_result_headers(result)}
        if self.output == "json":
            bundle = jsonable(result)
            bundle.update(
                resized=None if result.resized is None else result.resized.describe(),
                notes=result_notes(result),
                width=int(result.alpha.shape[1]),
                height=int(result.alpha.shape[0]),
                alpha=data_url(encode_png(alpha_to_uint8(result.alpha))),
                rgba=data_url(encode_png(result.rgba())),
                composite=data_url(encode_png(result.composite(backdrop))),
            )
            return json_reply(200, bundle, headers)
        if self.output == "alpha":
            array = alpha_to_uint8(result.alpha)
        elif self.output == "rgba":
            array = result.rgba()
        elif self.output == "foreground":
            array = result.ensure_foreground()
        else:
            array = result.composite(backdrop)
        return Reply(200, encode_png(array), "image/png", headers)


@dataclass(frozen=True)
class InProcess:
    """`job` run in one of `processes`' worker processes rather than in the pool's worker thread
    (which waits for it without the GIL): for jobs whose libraries hold the GIL for seconds
    (dlib's detectors and face descriptor in anonymisation and its audit), which would stall
    the event loop. A dead process is answered 503 with `Retry-After`."""

    job: Any
    processes: Any  # p3m.serve.pool.ProcessRunner

    def __call__(self, _state: Any) -> Reply:
        from p3m.serve.pool import ProcessCrashed

        try:
            return self.processes.call(self.job, None)
        except ProcessCrashed as error:
            return error_reply(503, f"{error}; retry", {"Retry-After": "5"})


@dataclass(frozen=True)
class AnonymizeJob:
    """`POST /api/anonymize`: the P3M-10k recipe on one photo, with the per-face report.

    `alpha` is an uploaded matte (any file `p3m.io` reads as a matte); without one the matte is
    estimated with `alpha_from` (a model name) or, with `alpha_from=None`, not used.
    """

    image: bytes
    alpha: bytes | None = None
    alpha_from: str | None = "auto"
    method: str = "blur"
    detectors: tuple[str, ...] = ("default",)
    landmarks: str = "mediapipe"
    min_confidence: float = 0.5
    transition_margin: int = 3
    strength: float = 1.0
    audit: bool = True
    audit_detectors: tuple[str, ...] | None = None
    output: str = "json"
    max_image_pixels: int | None = None
    image_name: str = ""
    """The upload's file name, which error messages start with ("anonymize" without one)."""
    alpha_name: str = ""

    def __call__(self, _matter: Any) -> Reply:
        rgb = None
        try:
            from p3m.io import read_alpha
            from p3m.privacy import anonymize

            rgb, transparency = load_image_and_alpha(self.image, max_pixels=self.max_image_pixels)
            alpha = None
            if self.alpha is not None:
                try:
                    alpha = read_alpha(self.alpha, max_pixels=self.max_image_pixels)
                except P3MError as error:
                    return _failure(error, _named("alpha matte", self.alpha_name), rgb)
            # The upload's own alpha goes in with the pixels: the answer keeps it, so nothing
            # it hid becomes visible.
            source = rgb if transparency is None else np.dstack([rgb, alpha_to_uint8(transparency)])
            result = anonymize(
                source,
                alpha,
                self.method,
                alpha_from=None if alpha is not None else self.alpha_from,
                detectors=self.detectors,
                landmarks=self.landmarks,
                min_confidence=self.min_confidence,
                transition_margin=self.transition_margin,
                strength=self.strength,
            )
            audit = None
            if self.audit:
                from p3m.privacy.audit import audit_anonymized

                audit = audit_anonymized(result, rgb, self.audit_detectors)
            source = "upload" if alpha is not None else self.alpha_from or "none"
            return self._encode(result, audit, source)
        except Exception as error:  # noqa: BLE001 - every failure becomes a clear 4xx
            return _failure(error, self.image_name or "anonymize", rgb)

    def _encode(self, result: Any, audit: Any, alpha_source: str) -> Reply:
        from p3m.privacy.audit import image_status

        faces = getattr(result, "faces", [])
        warnings = [str(w) for w in getattr(result, "warnings", [])]
        if audit is not None and not audit.passed:
            warnings.append(audit.warning())
        # The library's verdict, the status `p3m anonymize` records in its manifest.
        status, reasons = image_status(result, audit)
        to_check = None if audit is None else audit.to_check()
        headers = {**_NO_STORE, "X-P3M-Faces": str(len(faces)), "X-P3M-Status": status}
        if reasons:
            headers["X-P3M-Review-Reasons"] = header_text(" | ".join(reasons))
        if to_check:
            headers["X-P3M-To-Check"] = header_text(to_check)
        if warnings:
            headers["X-P3M-Warnings"] = header_text(" | ".join(warnings))
        if audit is not None:
            # A face the audit finds outside every mask, or an identity that still matches, is a
            # leak: said in headers of their own (and in the JSON), so that a client reading only
            # the image cannot miss it. A weak unconfirmed detection is no leak (X-P3M-To-Check).
            headers["X-P3M-Audit"] = "failed" if audit.leaked else "passed"
            headers["X-P3M-Faces-Left-Visible"] = str(audit.missed_faces)
        image = result.image if result.input_alpha is None else np.dstack([result.image, result.input_alpha])
        if self.output == "png":
            return Reply(200, encode_png(image), "image/png", headers)
        facemask = np.asarray(result.facemask)
        report = jsonable(result)
        mask_area = int(facemask.sum())
        report.update(
            warnings=warnings,
            alpha_source=alpha_source,
            mask_area=mask_area,
            mask_fraction=round(mask_area / max(1, facemask.size), 5),
            audit=jsonable(audit),
            audit_passed=None if audit is None else not audit.leaked,
            status=status,
            review_reasons=reasons,
            to_check=to_check,
            faces_left_visible=None if audit is None else audit.missed_faces,
            width=int(result.image.shape[1]),
            height=int(result.image.shape[0]),
            image=data_url(encode_png(image)),
            facemask=data_url(encode_png(facemask.astype(np.uint8) * 255)),
        )
        return json_reply(200, report, headers)
