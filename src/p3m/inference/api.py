"""`p3m.matte`: one call from a photo to an alpha matte, foreground colours and cut-outs.

    >>> result = p3m.matte("portrait.jpg")               # P3M-Net ViTAE-S if cached, else selfie-cf
    >>> result.alpha, result.model, result.resized
    >>> write_png("cutout.png", result.rgba())

Images above the pixel budget (`max_pixels`, default `MATTE_MAX_PIXELS`, about the 1080 x 1620
the official sample script works at) are shrunk first and the alpha is brought back to full size
with guided upsampling; `result.resized` then says how. `Matter` keeps one model loaded for
many images (the command line uses it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p3m.errors import ConfigError, ShapeMismatchError
from p3m.inference.backends import (
    AUTO_PREFERRED_MODEL,
    MATTE_MAX_PIXELS,
    MattingBackend,
    ResizeInfo,
    SegmentationFilter,
    check_pixel_budget,
    resolve_backend,
)
from p3m.inference.foreground import composite, cutout_rgba, estimate_foreground
from p3m.inference.selfie_cf import SelfieCFConfig
from p3m.inference.strategies import STRATEGIES, Strategy

__all__ = [
    "AUTO_PREFERRED_MODEL",
    "MATTE_MAX_PIXELS",
    "MatteResult",
    "Matter",
    "ResizeInfo",
    "SelfieCFConfig",
    "matte",
]

logger = logging.getLogger(__name__)

@dataclass
class MatteResult:
    """Output of `p3m.matte`: alpha float32 H x W in [0, 1] at the input size, and context.

    `note` joins the model's note (e.g. why "auto" used selfie-cf) and this image's
    (`image_note`, e.g. no person found). `input_alpha` is the input's own transparency (None if
    it had none); `alpha` never exceeds it. `details`: what the backend reports besides (selfie-cf:
    a `SelfieCFResult` with the people found and the solved regions).
    """

    alpha: np.ndarray
    image: np.ndarray = field(repr=False)
    model: str
    foreground: np.ndarray | None = field(default=None, repr=False)
    resized: ResizeInfo | None = None
    trimap: np.ndarray | None = field(default=None, repr=False)
    note: str | None = None
    image_note: str | None = None
    input_alpha: np.ndarray | None = field(default=None, repr=False)
    details: Any = field(default=None, repr=False)

    @property
    def solved_size(self) -> tuple[int, int]:
        """(height, width) at which the matte was computed (`resized.processed_size` if resized)."""
        return self.resized.processed_size if self.resized is not None else self.alpha.shape[:2]

    def ensure_foreground(self) -> np.ndarray:
        """The estimated foreground colours (RGB uint8), computed on first use."""
        if self.foreground is None:
            self.foreground = estimate_foreground(self.image, self.alpha)
        return self.foreground

    def rgba(self) -> np.ndarray:
        """Straight-alpha RGBA uint8 cut-out with estimated foreground colours (no dark halo)."""
        return cutout_rgba(self.ensure_foreground(), self.alpha)

    def composite(
        self, background: np.ndarray | str | os.PathLike | tuple[int, int, int] = "white"
    ) -> np.ndarray:
        """The subject over a background, RGB uint8 H x W x 3: a colour (a name, "#rrggbb",
        "r,g,b" or an (r, g, b) tuple), an RGB uint8 image, or an image file (str or `PathLike`,
        relative to the working directory), stretched to the photo's size as `p3m matte
        --background FILE` does. Raises `ConfigError` for a text that is neither a file nor a
        colour, `ImageReadError` for a missing or unreadable `PathLike` file."""
        return composite(self.ensure_foreground(), self.alpha, background)


# --------------------------------------------------------------------------- Matter


class Matter:
    """A loaded matting pipeline: build once, call on many images (`Matter(...)(image)`).

    `model` is "auto", "selfie-cf", a registered P3M-Net name, an .onnx file from
    `p3m export-onnx`, a built model instance (any module returning `P3MOutput`), or a
    `MattingBackend` of one's own (an object with `name`, `note` and `matte(image)`);
    `weights` is a checkpoint path or a cached model name; `device` is checked whatever the
    model (`p3m.models.device.resolve_device`); `selfie_config` (a `SelfieCFConfig`: trimap
    `band_fraction`, `threshold`) refines selfie-cf. The work is done by a
    `p3m.inference.backends.MattingBackend` (`self.backend`) chosen from these arguments.
    Raises `ModelNotFoundError` (unknown model, weights not installed), `ConfigError`
    (conflicting options; `DeviceError` for a device this machine lacks),
    `MissingDependencyError` (MediaPipe / onnxruntime absent).

    For many images build one `Matter` and call it on each (the model is loaded once):

        >>> matter = Matter("auto")
        >>> for path in paths:
        ...     write_png(out / f"{path.stem}.png", matter(path).rgba())

    (a folder run with resume, recorded failures and read-ahead: `p3m.inference.batch`).
    """

    def __init__(
        self,
        model: str | Callable[..., Any] = "auto",
        weights: str | os.PathLike[str] | None = None,
        strategy: Strategy = "hybrid",
        device: str | None = None,
        max_pixels: int | None = MATTE_MAX_PIXELS,
        selfie_config: SelfieCFConfig | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        check_pixel_budget(max_pixels)
        self.strategy = strategy
        self.max_pixels = max_pixels
        self.weights = weights
        self.backend: MattingBackend = resolve_backend(
            model, weights, strategy, device, max_pixels, selfie_config=selfie_config
        )
        self.name = self.backend.name
        self.note: str | None = self.backend.note

    @property
    def settings(self) -> dict[str, Any]:
        """What decides the mattes besides the image, JSON-able: the model and the options that
        change its output (P3M-Net: strategy, pixel budget; selfie-cf: trimap band, threshold,
        solve size); a backend of one's own without a `settings` attribute gives its name only.
        Folder runs record it per image and refuse to keep outputs other settings made."""
        own = getattr(self.backend, "settings", None)
        settings = dict(own) if isinstance(own, dict) else {"model": self.name}
        if self.weights is not None:  # a checkpoint of one's own: which file
            given = Path(self.weights).expanduser()
            settings["weights"] = str(given.resolve()) if given.exists() else str(self.weights)
        return settings

    def __call__(
        self,
        image: Any,
        foreground: bool = True,
        input_alpha: np.ndarray | None = None,
        segmentation_filter: SegmentationFilter | None = None,
    ) -> MatteResult:
        """Matte one image (array, path, PIL image or encoded bytes); `foreground=False` skips
        colour estimation.

        The input's own transparency (RGBA / LA / palette files, an H x W x 4 array, or
        `input_alpha`, float H x W in [0, 1]) bounds the result: the matte is at most the input
        alpha, and the backend sees the image over mid-grey, so nothing hidden is matted back.
        `segmentation_filter(image, probabilities) -> probabilities` (default None) replaces the
        model's segmentation before the trimap is built: selfie-cf's person probability (h x w)
        or P3M-Net's global class probabilities (3 x h x w); `p3m.video` smooths them over time
        through it.
        """
        from p3m.io import load_image_and_alpha

        image, own_alpha = load_image_and_alpha(image)
        limit = _combine_alpha(own_alpha, input_alpha, image.shape[:2])
        seen = image if limit is None else _over_grey(image, limit)
        output = (
            self.backend.matte(seen)
            if segmentation_filter is None
            else self.backend.matte(seen, segmentation_filter=segmentation_filter)
        )
        alpha = output.alpha
        if limit is not None:
            alpha = np.minimum(alpha, limit)
        if output.resized is not None:
            logger.info(output.resized.describe())
        notes = [note for note in (self.note, output.note) if note]
        result = MatteResult(
            alpha=alpha,
            image=image,
            model=self.name,
            resized=output.resized,
            trimap=output.trimap,
            note="; ".join(notes) if notes else None,
            image_note=output.note,
            input_alpha=limit,
            details=output.details,
        )
        if foreground:
            result.ensure_foreground()
        return result


def _combine_alpha(
    own: np.ndarray | None, given: np.ndarray | None, shape: tuple[int, ...]
) -> np.ndarray | None:
    """The tighter of the image's own alpha and the caller's `input_alpha` (float32), or None."""
    if given is not None:
        given = np.asarray(given)
        if given.dtype == np.uint8:
            given = given.astype(np.float32) / np.float32(255)
        given = np.clip(np.asarray(given, dtype=np.float32), 0.0, 1.0)
        if given.shape != tuple(shape):
            raise ShapeMismatchError(
                f"input_alpha is {given.shape[1]}x{given.shape[0]}, the image {shape[1]}x{shape[0]}"
            )
        own = given if own is None else np.minimum(own, given)
    return own


def _over_grey(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The image as a viewer shows it over mid-grey (RGB uint8): hidden pixels are not seen."""
    weight = alpha[:, :, None]
    blended = image.astype(np.float32) * weight + np.float32(128.0) * (1.0 - weight)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def matte(
    image: Any,
    model: str | Callable[..., Any] = "auto",
    weights: str | os.PathLike[str] | None = None,
    strategy: Strategy = "hybrid",
    device: str | None = None,
    max_pixels: int | None = MATTE_MAX_PIXELS,
    foreground: bool = True,
    selfie_config: SelfieCFConfig | None = None,
    input_alpha: np.ndarray | None = None,
) -> MatteResult | list[MatteResult]:
    """Alpha matte of the person in `image` (RGB uint8 array, path, PIL image or encoded bytes);
    given a list (or tuple) of images, a list of results in the same order, one model load.

    `model`: "auto" (P3M-Net ViTAE-S when its weights are cached, otherwise selfie-cf; the
    result's `note` says so), "selfie-cf", "p3mnet-r34" / "p3mnet-swin-t" / "p3mnet-vitae-s"
    (weights from `weights` or the cache), or a built model. `strategy`: the official "hybrid"
    or "resize". Images above `max_pixels` are shrunk first (see `MatteResult.resized`).
    `selfie_config` refines selfie-cf (see `Matter`). A list stops at the first image that
    cannot be matted (raising its P3MError); for folders that go on, see `p3m.inference.batch`.
    The matte never exceeds the input's own alpha (RGBA files or arrays) or `input_alpha`
    (for a list, `input_alpha` must be None: each file's own alpha still applies).
    """
    matter = Matter(
        model, weights=weights, strategy=strategy, device=device, max_pixels=max_pixels,
        selfie_config=selfie_config,
    )
    if isinstance(image, list | tuple):
        if input_alpha is not None:
            raise ConfigError("input_alpha goes with one image, not a list")
        return [matter(item, foreground=foreground) for item in image]
    return matter(image, foreground=foreground, input_alpha=input_alpha)
