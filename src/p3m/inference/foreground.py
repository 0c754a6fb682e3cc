"""Foreground colours, straight-alpha cut-outs and composites.

A photo's edge pixel is a mix `alpha * F + (1 - alpha) * B` of foreground and background.
Keeping the photo's colour in an RGBA cut-out drags the old background along (a fringe), and
writing premultiplied colour into a straight-alpha PNG darkens every edge (a halo). p3m
estimates F with pymatting's multilevel foreground estimation (Germer et al., "Fast
Multi-Level Foreground Estimation", ICPR 2020) and writes it with straight alpha.

    >>> foreground = estimate_foreground(image, alpha)
    >>> rgba = cutout_rgba(foreground, alpha)              # uint8 H x W x 4, straight alpha
    >>> picture = composite(foreground, alpha, "white")
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import ImageColor

from p3m.errors import ConfigError, ShapeMismatchError
from p3m.inference.upsample import resize_alpha, shrink_image

__all__ = [
    "FOREGROUND_MAX_PIXELS",
    "composite",
    "cutout_rgba",
    "estimate_foreground",
    "parse_color",
]

FOREGROUND_MAX_PIXELS = 2_100_000
"""Above this, F is estimated at a reduced size and its correction to the photo upsampled."""


def _check_pair(image: np.ndarray, alpha: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be RGB uint8 H x W x 3, got {image.dtype} {image.shape}")
    if alpha.shape != image.shape[:2]:
        raise ShapeMismatchError(
            f"alpha shape {alpha.shape} does not match image shape {image.shape[:2]}"
        )


def _estimate_full(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    from pymatting import estimate_foreground_ml

    foreground = estimate_foreground_ml(
        image.astype(np.float64) / 255.0, alpha.astype(np.float64)
    )
    return np.asarray(foreground, dtype=np.float32)


def estimate_foreground(
    image: np.ndarray, alpha: np.ndarray, max_pixels: int = FOREGROUND_MAX_PIXELS
) -> np.ndarray:
    """Foreground colours F (RGB uint8) of `image` under `alpha` (float H x W in [0, 1]).

    Where alpha is 1, F equals the photo. Above `max_pixels`, F is solved on a shrunk copy and
    only its difference to the photo is upsampled, so opaque areas keep full-resolution detail.
    A single pixel has no neighbours to borrow colour from: its F is the photo itself.
    """
    image = np.asarray(image)
    alpha = np.asarray(alpha, dtype=np.float32)
    _check_pair(image, alpha)
    height, width = alpha.shape
    if height * width == 1:  # pymatting's multilevel solver divides by zero on one pixel
        return image.copy()
    if height * width <= max_pixels:
        foreground = _estimate_full(image, alpha)
        foreground *= 255.0
    else:
        scale = (max_pixels / (height * width)) ** 0.5
        small_size = (max(1, round(height * scale)), max(1, round(width * scale)))
        image_small = shrink_image(image, small_size)
        alpha_small = np.clip(resize_alpha(alpha, small_size), 0.0, 1.0)
        correction_small = _estimate_full(image_small, alpha_small) * 255.0 - image_small
        foreground = image.astype(np.float32)
        for channel in range(3):
            foreground[:, :, channel] += resize_alpha(correction_small[:, :, channel], (height, width))
    # Fully opaque pixels are the photo itself.
    opaque = alpha >= 1.0
    foreground[opaque] = image[opaque]
    np.clip(foreground, 0.0, 255.0, out=foreground)
    return (foreground + 0.5).astype(np.uint8)


def cutout_rgba(foreground: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight (not premultiplied) RGBA uint8: the foreground colours plus alpha as channel 4."""
    foreground = np.asarray(foreground)
    alpha = np.asarray(alpha)
    _check_pair(foreground, alpha)
    from p3m.io import alpha_to_uint8

    return np.dstack([foreground, alpha_to_uint8(alpha)])


def parse_color(color: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """A colour name ('white'), '#rrggbb' or 'r,g,b' (or a tuple) -> (r, g, b) in 0..255."""
    if isinstance(color, tuple):
        values = color
    else:
        text = color.strip()
        try:
            if "," in text:
                values = tuple(int(part) for part in text.split(","))
            else:
                values = ImageColor.getrgb(text)[:3]
        except ValueError as error:
            if any(mark in text for mark in ("/", "\\", ".")):
                raise ConfigError(
                    f"{color}: background image not found (and not a colour: a name, #rrggbb or r,g,b)"
                ) from error
            raise ConfigError(
                f"cannot read the colour {color!r} (use a name, #rrggbb or r,g,b)"
            ) from error
    if len(values) != 3 or not all(0 <= int(v) <= 255 for v in values):
        raise ConfigError(f"colour {color!r} must have three components in 0..255")
    return (int(values[0]), int(values[1]), int(values[2]))


Background = np.ndarray | str | os.PathLike | tuple[int, int, int]


def _background_image(background: Background) -> np.ndarray | str | tuple[int, int, int]:
    """An image file named by `background` read as RGB uint8 (as `p3m matte --background FILE`):
    a `PathLike`, or a str naming an existing file (relative to the working directory, `~`
    expanded); anything else is returned as given (an array, or a colour for `parse_color`)."""
    if isinstance(background, os.PathLike) or (
        isinstance(background, str) and Path(background).expanduser().is_file()
    ):
        from p3m.io import read_image

        return read_image(Path(background).expanduser())
    return background


def composite(
    foreground: np.ndarray,
    alpha: np.ndarray,
    background: Background = "white",
) -> np.ndarray:
    """alpha * foreground + (1 - alpha) * background, RGB uint8.

    `background` is a colour (see `parse_color`), an RGB uint8 image, or the path of an image
    file (str or `PathLike`, relative to the working directory; read with `p3m.io.read_image`,
    which raises `ImageReadError` naming the file when it is missing or unreadable). An image
    is resized to the foreground's size when it differs (stretched, as `p3m matte --background
    FILE`; crop it beforehand to keep its aspect).
    """
    background = _background_image(background)
    foreground = np.asarray(foreground)
    alpha = np.asarray(alpha, dtype=np.float32)
    _check_pair(foreground, alpha)
    height, width = alpha.shape
    if isinstance(background, np.ndarray):
        if background.dtype != np.uint8 or background.ndim != 3 or background.shape[2] != 3:
            raise ValueError(
                f"background must be RGB uint8 H x W x 3, got {background.dtype} {background.shape}"
            )
        if background.shape[:2] != (height, width):
            background = shrink_image(background, (height, width))
        backdrop = [background[:, :, channel] for channel in range(3)]
    else:
        backdrop = list(parse_color(background))
    weight = np.clip(alpha, 0.0, 1.0)
    result = np.empty((height, width, 3), dtype=np.uint8)
    # One channel at a time keeps the float32 temporaries at H x W (24 MP photos).
    for channel in range(3):
        base = np.asarray(backdrop[channel], dtype=np.float32)
        mixed = foreground[:, :, channel].astype(np.float32)
        mixed -= base
        mixed *= weight
        mixed += base + 0.5
        np.clip(mixed, 0.0, 255.0, out=mixed)
        result[:, :, channel] = mixed
    return result
