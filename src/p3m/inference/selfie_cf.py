"""`selfie-cf`: the classical matting pipeline that works offline without P3M-Net weights.

1. A person mask from MediaPipe's selfie segmentation (the legacy model bundled in the
   `mediapipe==0.10.21` wheel; model 0, the 256 x 256 "general" model: on the astronaut portrait
   the landscape model 1 marks parts of the flag and the table as person, model 0 does not).
2. A trimap from the thresholded mask by erosion / dilation, with an unknown band whose width is
   a fixed fraction of the image size.
3. Closed-form matting (Levin, Lischinski & Weiss, "A Closed-Form Solution to Natural Image
   Matting", TPAMI 2008; pymatting's `estimate_alpha_cf`) at a bounded resolution.
4. Guided upsampling of the alpha to the input size.

    >>> alpha = matte_selfie_cf(image)                  # float32 H x W in [0, 1]
    >>> alpha, trimap = matte_selfie_cf(image, return_trimap=True)

`mask_filter` is the hook video matting uses (`p3m.video`): it sees the person probability of
step 1 with the image it was computed on, and returns the probability to build the trimap
from (e.g. smoothed over time), so each frame is still solved on its own in step 3.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from p3m.errors import MissingDependencyError
from p3m.inference.upsample import resize_alpha, shrink_image, upsample_alpha

__all__ = [
    "SELFIE_CF_NAME",
    "MaskFilter",
    "SelfieCFConfig",
    "matte_selfie_cf",
    "person_mask",
    "trimap_from_mask",
]

logger = logging.getLogger(__name__)

SELFIE_CF_NAME = "selfie-cf"

INSTALL_HINT = 'pip install "p3m[privacy]" (it installs mediapipe==0.10.21)'


@dataclass(frozen=True)
class SelfieCFConfig:
    """Parameters of the selfie-cf pipeline (the defaults were chosen on real portraits)."""

    model_selection: int = 0
    """MediaPipe selfie model: 0 = general (256 x 256), 1 = landscape (144 x 256)."""
    threshold: float = 0.5
    """Mask probability above which a pixel counts as person."""
    band_fraction: float = 0.02
    """Half-width of the unknown band as a fraction of the longer side of the matting image."""
    matting_max_side: int = 448
    """Closed-form matting runs with the longer side at most this long (time and memory bound)."""
    segmentation_max_side: int = 1024
    """The image given to MediaPipe is at most this long (it works at 256 px internally)."""


_SEGMENTERS: dict[int, Any] = {}
_SEGMENTER_LOCK = threading.Lock()


def _segmenter(model_selection: int) -> Any:
    """A cached MediaPipe SelfieSegmentation graph (building one takes ~50 ms)."""
    if model_selection not in (0, 1):
        raise ValueError(f"model_selection must be 0 or 1, got {model_selection}")
    if model_selection not in _SEGMENTERS:
        # MediaPipe's C++ logging is noisy on stderr; keep warnings only unless the user set it.
        os.environ.setdefault("GLOG_minloglevel", "2")
        try:
            from mediapipe.python.solutions import selfie_segmentation
        except ImportError as error:
            raise MissingDependencyError(
                f"the selfie-cf matting pipeline needs MediaPipe, which is not installed: {INSTALL_HINT}"
            ) from error
        with _native_stderr_silenced():
            segmenter = selfie_segmentation.SelfieSegmentation(model_selection=model_selection)
            # The first call prints TensorFlow Lite / absl start-up lines on the C-level stderr.
            segmenter.process(np.zeros((64, 64, 3), dtype=np.uint8))
        _SEGMENTERS[model_selection] = segmenter
    return _SEGMENTERS[model_selection]


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (unless debug logging is on)."""
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def person_mask(image: np.ndarray, config: SelfieCFConfig | None = None) -> np.ndarray:
    """MediaPipe person probability, float32 H x W in [0, 1], at the size of the RGB uint8 image."""
    config = config or SelfieCFConfig()
    height, width = image.shape[:2]
    scale = min(1.0, config.segmentation_max_side / max(height, width))
    small = image
    if scale < 1.0:
        small = shrink_image(image, (max(1, round(height * scale)), max(1, round(width * scale))))
    with _SEGMENTER_LOCK:  # a MediaPipe graph is not re-entrant
        result = _segmenter(config.model_selection).process(np.ascontiguousarray(small))
    mask = np.asarray(result.segmentation_mask, dtype=np.float32)
    if mask.shape != (height, width):
        mask = resize_alpha(mask, (height, width))
    return np.clip(mask, 0.0, 1.0)


def _disk(radius: int) -> np.ndarray:
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius * radius


def trimap_from_mask(mask: np.ndarray, band: int, threshold: float = 0.5) -> np.ndarray:
    """uint8 trimap {0, 128, 255}: the thresholded mask eroded (255) and dilated (not 0) by `band` px.

    Erosion treats the outside of the image as person, so a body cut by the frame stays opaque
    at the frame.
    """
    person = mask > threshold
    structure = _disk(max(1, int(band)))
    certain = ndimage.binary_erosion(person, structure, border_value=1)
    possible = ndimage.binary_dilation(person, structure)
    trimap = np.zeros(mask.shape, dtype=np.uint8)
    trimap[possible] = 128
    trimap[certain] = 255
    return trimap


def _closed_form(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    # Closed-form matting needs both known classes; a frame with no certain person (nobody
    # there, or a sliver) is background, and one with no certain background all person.
    if not (trimap == 128).any() or not (trimap == 255).any():
        return (trimap == 255).astype(np.float32)
    if not (trimap == 0).any():
        return np.ones(trimap.shape, np.float32)
    from pymatting import estimate_alpha_cf

    alpha = estimate_alpha_cf(image.astype(np.float64) / 255.0, trimap.astype(np.float64) / 255.0)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


MaskFilter = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""`mask_filter(image, probability) -> probability`: image RGB uint8 h x w x 3 (the matting
resolution), probability float32 h x w in [0, 1]; returns float h x w (clipped to [0, 1])."""


def matte_selfie_cf(
    image: np.ndarray,
    config: SelfieCFConfig | None = None,
    return_trimap: bool = False,
    mask_filter: MaskFilter | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Alpha matte (float32 H x W in [0, 1]) of the person in an RGB uint8 image; see the module doc.

    With `return_trimap=True` also returns the trimap used, upsampled (nearest) to the input size.
    `mask_filter(small_image, probability)`, when given, replaces the person probability before
    the trimap is built (temporal smoothing in `p3m.video`); see `MaskFilter`.
    Raises `MissingDependencyError` naming what to install when MediaPipe is absent.
    """
    config = config or SelfieCFConfig()
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be RGB uint8 H x W x 3, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    scale = min(1.0, config.matting_max_side / max(height, width))
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    small = image if scale == 1.0 else shrink_image(image, size)

    mask = person_mask(small, config)
    if mask_filter is not None:
        mask = np.clip(np.asarray(mask_filter(small, mask), dtype=np.float32), 0.0, 1.0)
    band = max(2, round(config.band_fraction * max(size)))
    trimap = trimap_from_mask(mask, band, config.threshold)
    alpha_small = _closed_form(small, trimap)
    alpha = upsample_alpha(alpha_small, image, method="guided")
    logger.debug("selfie-cf: matting at %dx%d, band %d px", size[1], size[0], band)
    if not return_trimap:
        return alpha
    if trimap.shape != (height, width):
        rows = np.minimum((np.arange(height) + 0.5) * size[0] / height, size[0] - 1).astype(int)
        cols = np.minimum((np.arange(width) + 0.5) * size[1] / width, size[1] - 1).astype(int)
        trimap = trimap[rows[:, None], cols[None, :]]
    return alpha, trimap
