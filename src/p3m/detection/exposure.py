"""Exposure and contrast normalisation for detectors and segmenters (never for the output pixels).

Face detectors and person segmenters are trained on well-exposed photos; on an underexposed one
(everything in 0..25) they lose most of the body. `normalize_exposure` stretches the luma range
of such an image to the full 8 bits (one gain for the three channels, from the 99.5th luma
percentile, as a longer exposure would) and lifts a still-dark mid-tone with a gamma, through one
lookup table. Well-exposed images come back unchanged (the same array). Matting itself solves on the
photo's own pixels: a tone curve would break the compositing equation I = aF + (1 - a)B.

    >>> seen, exposure = normalize_exposure(image)      # uint8 H x W x 3, Exposure
    >>> exposure.gain                                    # 1.0 when nothing was changed
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Exposure", "normalize_exposure"]


@dataclass(frozen=True)
class Exposure:
    """The tone curve applied: out = 255 * ((in - offset) * gain / 255) ** gamma, clipped."""

    gain: float = 1.0
    offset: float = 0.0
    gamma: float = 1.0

    @property
    def identity(self) -> bool:
        return self.gain == 1.0 and self.offset == 0.0 and self.gamma == 1.0

    def lookup_table(self) -> np.ndarray:
        """uint8[256]: the curve for every 8-bit value."""
        values = np.clip((np.arange(256, dtype=np.float64) - self.offset) * self.gain / 255.0, 0.0, 1.0)
        return np.round(255.0 * values**self.gamma).astype(np.uint8)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The curve applied to an RGB uint8 image (the same array when it is the identity)."""
        if self.identity:
            return image
        return self.lookup_table()[image]


def _luma(image: np.ndarray, max_samples: int = 40_000) -> np.ndarray:
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / max_samples)))
    sample = image[::step, ::step].astype(np.float32)
    return sample[..., 0] * 0.299 + sample[..., 1] * 0.587 + sample[..., 2] * 0.114


def normalize_exposure(
    image: np.ndarray,
    bright_level: float = 160.0,
    dark_median: float = 60.0,
    target_median: float = 100.0,
    max_gain: float = 16.0,
) -> tuple[np.ndarray, Exposure]:
    """The image as detectors should see it (RGB uint8 H x W x 3), and the curve used.

    Underexposure is corrected like a camera would: when the 99.5th luma percentile is below
    `bright_level`, a gain (at most `max_gain`) brings it to 255; when the median is then still
    below `dark_median`, a gamma (at least 0.4) lifts it towards `target_median`. A flat or low-
    contrast image that is not dark is left alone (stretching a plain wall only amplifies noise).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be RGB uint8 H x W x 3, got {image.dtype} {image.shape}")
    luma = _luma(image)
    median, high = (float(v) for v in np.percentile(luma, (50.0, 99.5)))
    gain = 1.0
    if high < bright_level:
        gain = float(min(max_gain, 255.0 / max(high, 1.0)))
    lifted_median = float(np.clip(median * gain, 1.0, 254.0))
    gamma = 1.0
    if lifted_median < dark_median:
        gamma = float(np.clip(np.log(target_median / 255.0) / np.log(lifted_median / 255.0), 0.4, 1.0))
    exposure = Exposure(gain=gain, gamma=gamma)
    if exposure.identity:
        return image, exposure
    return exposure.apply(image), exposure
