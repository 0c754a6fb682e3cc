"""Training augmentation of the official P3M recipe, driven by an explicit random generator.

Per sample, in this order (tests/data/reference/losses/README.md, section 4.9):
1. trimap from the NATIVE-resolution mask by dilation/erosion with a random kernel in 15..30;
2. a square crop of a size drawn from (512, 768, 1024), 512 when the image is smaller, centred
   on a transition (unknown) pixel with probability 0.5, else on any pixel, kept inside the image;
3. a horizontal flip with probability 0.5;
4. a resize of every map to 512 x 512 with bilinear interpolation (the trimap too, as officially,
   which creates the non-canonical trimap values the losses expect).

Every draw comes from the `numpy.random.Generator` passed in, so a sample is a pure function of
(seed, epoch, index): independent of worker processes, ranks and resumption.

    >>> crop = AugmentConfig(crop_sizes=(64, 96, 128), output_size=64)
    >>> arrays = augment({"image": image, "alpha": alpha_u8}, crop, np.random.default_rng(0))
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from p3m.data.trimap import trimap_from_alpha

__all__ = ["AugmentConfig", "augment", "choose_crop"]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation parameters; the defaults are the paper's (crop 512/768/1024 -> 512)."""

    crop_sizes: tuple[int, ...] = (512, 768, 1024)
    output_size: int = 512
    trimap_kernel_range: tuple[int, int] = (15, 30)
    transition_probability: float = 0.5
    flip_probability: float = 0.5

    def __post_init__(self) -> None:
        if not self.crop_sizes or min(self.crop_sizes) < 1:
            raise ValueError(f"crop_sizes must be positive sizes, got {self.crop_sizes}")
        if self.output_size < 1:
            raise ValueError(f"output_size must be positive, got {self.output_size}")
        low, high = self.trimap_kernel_range
        if not 1 <= low <= high:
            raise ValueError(f"trimap_kernel_range must satisfy 1 <= low <= high, got {self.trimap_kernel_range}")
        for name in ("transition_probability", "flip_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")


def choose_crop(
    trimap: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> tuple[int, int, int]:
    """(top, left, size) of the square crop: size from `crop_sizes` (the first when it does not fit)."""
    height, width = trimap.shape
    size = int(config.crop_sizes[rng.integers(len(config.crop_sizes))])
    if size > min(height, width):
        size = int(config.crop_sizes[0])
    size = min(size, height, width)  # an image smaller than every crop is cropped to its short side
    on_transition = rng.random() < config.transition_probability
    rows, cols = np.nonzero(trimap == 128) if on_transition else (None, None)
    if rows is not None and len(rows) > 0:
        pick = int(rng.integers(len(rows)))
        centre_row, centre_col = int(rows[pick]), int(cols[pick])
    else:
        centre_row, centre_col = int(rng.integers(height)), int(rng.integers(width))
    top = min(max(centre_row - size // 2, 0), height - size)
    left = min(max(centre_col - size // 2, 0), width - size)
    return top, left, size


def augment(
    arrays: dict[str, np.ndarray], config: AugmentConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Trimap, crop, flip and resize a sample: `arrays` holds 'image' (RGB uint8) and 'alpha'
    (uint8 0..255) at native resolution, plus optional 'foreground', 'background' (RGB uint8) and
    'facemask' (uint8). Returns the same keys plus 'trimap', every map output_size square;
    'alpha' and 'trimap' become float32 on 0..255 (interpolated), the rest stays uint8.
    """
    alpha = arrays["alpha"]
    low, high = config.trimap_kernel_range
    kernel_size = int(rng.integers(low, high + 1))
    trimap = trimap_from_alpha(alpha, kernel_size)
    top, left, size = choose_crop(trimap, config, rng)
    flip = bool(rng.random() < config.flip_probability)
    out_size = (config.output_size, config.output_size)
    maps = dict(arrays)
    maps["trimap"] = trimap
    result: dict[str, np.ndarray] = {}
    for key, value in maps.items():
        crop = value[top : top + size, left : left + size]
        if flip:
            crop = crop[:, ::-1]
        interpolation = cv2.INTER_NEAREST if key == "facemask" else cv2.INTER_LINEAR
        # Resized as uint8, as officially: the trimap's interpolated values stay integers.
        resized = cv2.resize(np.ascontiguousarray(crop), out_size, interpolation=interpolation)
        result[key] = resized.astype(np.float32) if key in ("alpha", "trimap") else resized
    return result
