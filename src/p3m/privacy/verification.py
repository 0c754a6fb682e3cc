"""Verified obfuscation: attack the output with a face-recognition model, strengthen until it fails.

The attack p3m runs on its own output is dlib's face recognition ResNet (`dlib_face_recognition_
resnet_model_v1.dat` from `face_recognition_models`; 128-D descriptors, 99.38 % on LFW, same
person when the Euclidean distance is below 0.6). The attacker is given the advantage of
knowing where the face is: the face chip of the obfuscated image is cut with the alignment
computed on the original (dlib's 5-point layout, taken from the original's landmarks), and its
descriptor is compared with the original's. A face passes when the distance is at least
`margin` (default `DEFAULT_MARGIN` = 0.6 + 0.05). A face that does not pass is obfuscated again,
stronger, along `strengthening_ladder` (larger blur sigma, then mosaic, then a solid fill),
until it passes; where even the solid fill stays below the margin (hair, outline and what the
transition area keeps still match) the face is "unverified" and the image goes to
`needs_annotation.txt`. A weak detection (score < 0.5) without landmarks that stays close is
not strengthened (it is most likely a texture, and a black blob on it helps nobody) but is
"unverified" too, for a person to decide.

The network runs on onnxruntime where it is installed (`p3m.privacy.face_descriptor` reads
dlib's weights and computes the same descriptors, to ~1e-6, 4-7x faster than the BLAS-less
`dlib-bin` wheel); dlib still cuts the aligned chips.

What this does not check: recognisers trained on obfuscated faces (published work re-identifies
blurred and mosaicked faces that way, so blur at any strength is obfuscation for data set parity
with P3M-10k, not anonymity), other recognition models, and identification from context (hair,
clothes, place). See the README's threat model.

    >>> verifier = IdentityVerifier()
    >>> chips = verifier.chips(original, points5)         # aligned on the original
    >>> verifier.distances(original, anonymised, [points5])
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence

import numpy as np

from p3m.detection.faces import dlib_model_path
from p3m.errors import ConfigError, MissingDependencyError
from p3m.vocabulary import Verification, values

__all__ = [
    "DEFAULT_MARGIN",
    "IDENTITY_THRESHOLD",
    "VERIFY_MODES",
    "IdentityVerifier",
    "identity_available",
    "resolve_verify",
]

IDENTITY_THRESHOLD = 0.6  # dlib's published same-person threshold
DEFAULT_MARGIN = 0.65
VERIFY_MODES: tuple[str, ...] = values(Verification)
NO_DLIB_NOTE = (
    "identity verification skipped: dlib and face_recognition_models are not installed "
    "(pip install 'p3m[dlib]'); obfuscation strength was not checked against face recognition"
)
CHIP_SIZE = 150  # what the recognition model expects
CHIP_PADDING = 0.25  # dlib's default context around the aligned face


def identity_available() -> bool:
    """Whether dlib and its recognition model are installed (checked without importing dlib's
    model package)."""
    if importlib.util.find_spec("dlib") is None:
        return False
    try:
        dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")
    except MissingDependencyError:
        return False
    return True


def resolve_verify(verify: str) -> str:
    """"auto" -> "identity" where dlib is installed, else "none"; checks the name."""
    if verify not in VERIFY_MODES:
        raise ConfigError(f"unknown verification {verify!r}; choose from {', '.join(VERIFY_MODES)}")
    if verify == "auto":
        return "identity" if identity_available() else "none"
    if verify == "identity" and not identity_available():
        raise MissingDependencyError(
            "{verify} needs dlib and face_recognition_models: pip install 'p3m[dlib]'",
            options={"verify": "identity"},
        )
    return verify


@functools.cache
def _recognizer():
    import dlib

    return dlib.face_recognition_model_v1(
        str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat"))
    )


def _surroundings(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A crop holding everything an aligned chip of these points can show, and its origin.

    The chip spans about 2.5 eye-to-nose-bottom spans around the points (dlib's padding of
    0.25 on a face of ~2 spans); 4 spans either side is ample, and cheap to copy.
    """
    lo, hi = points.min(axis=0), points.max(axis=0)
    reach = 4 * max(float(np.max(hi - lo)), 4.0)
    height, width = image.shape[:2]
    x0, y0 = int(max(0, np.floor(lo[0] - reach))), int(max(0, np.floor(lo[1] - reach)))
    x1, y1 = int(min(width, np.ceil(hi[0] + reach))), int(min(height, np.ceil(hi[1] + reach)))
    if x1 <= x0 or y1 <= y0:  # points outside the image: a chip of padding
        x0, y0, x1, y1 = 0, 0, min(width, 2), min(height, 2)
    return np.ascontiguousarray(image[y0:y1, x0:x1]), np.float32([x0, y0])


DESCRIPTOR_BACKENDS: tuple[str, ...] = ("auto", "onnx", "dlib")


class IdentityVerifier:
    """dlib descriptors of face chips aligned on given 5-point layouts (see the module doc).

    `backend`: "onnx" runs dlib's network with onnxruntime (`p3m.privacy.face_descriptor`:
    the same weights and computation, descriptors equal to dlib's to ~1e-6, several times
    faster), "dlib" calls dlib's own `compute_face_descriptor`, "auto" (default) takes "onnx"
    where onnx and onnxruntime are installed. Chips are cut by dlib in every case.
    """

    def __init__(self, backend: str = "auto") -> None:
        if not identity_available():
            raise MissingDependencyError(
                "identity verification needs dlib and face_recognition_models: "
                "pip install 'p3m[dlib]'"
            )
        if backend not in DESCRIPTOR_BACKENDS:
            raise ConfigError(
                f"unknown descriptor backend {backend!r}; choose from {', '.join(DESCRIPTOR_BACKENDS)}"
            )
        from p3m.privacy.face_descriptor import DescriptorNetwork, descriptor_network_available

        if backend == "auto":
            backend = "onnx" if descriptor_network_available() else "dlib"
        self.backend = backend
        self.network = DescriptorNetwork.load() if backend == "onnx" else None
        self.recognizer = _recognizer() if backend == "dlib" else None

    @staticmethod
    def _shape(points5: np.ndarray):
        import dlib

        points = np.asarray(points5, np.float64)
        x0, y0 = np.floor(points.min(axis=0)).astype(int)
        x1, y1 = np.ceil(points.max(axis=0)).astype(int)
        rect = dlib.rectangle(int(x0), int(y0), int(max(x1, x0 + 1)), int(max(y1, y0 + 1)))
        parts = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in points])
        return dlib.full_object_detection(rect, parts)

    def chips(self, image: np.ndarray, layouts: Sequence[np.ndarray]) -> list[np.ndarray]:
        """150 x 150 aligned face chips (RGB uint8) of `image`, one per 5-point layout."""
        import dlib

        from p3m.detection.faces import _LOCK

        chips = []
        for points in layouts:
            # dlib copies the whole image it is given: hand it the face's surroundings only.
            crop, origin = _surroundings(image, np.asarray(points, np.float32))
            with _LOCK:
                chip = dlib.get_face_chip(
                    crop, self._shape(points - origin), size=CHIP_SIZE, padding=CHIP_PADDING
                )
            chips.append(np.asarray(chip))
        return chips

    def descriptors(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """N x 128 float64 descriptors of aligned chips (150 x 150 x 3 uint8 RGB)."""
        from p3m.detection.faces import _LOCK

        if not chips:
            return np.zeros((0, 128))
        if self.network is not None:
            return self.network.descriptors(chips)
        with _LOCK:
            vectors = self.recognizer.compute_face_descriptor(
                [np.ascontiguousarray(c) for c in chips]
            )
        return np.array([np.array(v) for v in vectors])

    def distances(
        self, original: np.ndarray, anonymised: np.ndarray, layouts: Sequence[np.ndarray]
    ) -> list[float]:
        """Descriptor distance per face between `original` and `anonymised`, both aligned on
        the layouts (5 x 2 points each, dlib's order)."""
        before = self.descriptors(self.chips(original, layouts))
        after = self.descriptors(self.chips(anonymised, layouts))
        return [float(d) for d in np.linalg.norm(before - after, axis=1)]
