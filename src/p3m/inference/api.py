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
from typing import Any

import numpy as np

from p3m.errors import ConfigError
from p3m.inference.backends import (
    AUTO_PREFERRED_MODEL,
    MATTE_MAX_PIXELS,
    MattingBackend,
    ResizeInfo,
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
    """Output of `p3m.matte`: alpha float32 H x W in [0, 1] at the input size, and context."""

    alpha: np.ndarray
    image: np.ndarray = field(repr=False)
    model: str
    foreground: np.ndarray | None = field(default=None, repr=False)
    resized: ResizeInfo | None = None
    trimap: np.ndarray | None = field(default=None, repr=False)
    note: str | None = None

    def ensure_foreground(self) -> np.ndarray:
        """The estimated foreground colours (RGB uint8), computed on first use."""
        if self.foreground is None:
            self.foreground = estimate_foreground(self.image, self.alpha)
        return self.foreground

    def rgba(self) -> np.ndarray:
        """Straight-alpha RGBA uint8 cut-out with estimated foreground colours (no dark halo)."""
        return cutout_rgba(self.ensure_foreground(), self.alpha)

    def composite(self, background: np.ndarray | str | tuple[int, int, int] = "white") -> np.ndarray:
        """The subject over a colour or an RGB uint8 image, RGB uint8."""
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
        if max_pixels is not None and max_pixels < 1024:
            raise ConfigError(f"max_pixels must be at least 1024, got {max_pixels}")
        self.strategy = strategy
        self.max_pixels = max_pixels
        self.backend: MattingBackend = resolve_backend(
            model, weights, strategy, device, max_pixels, selfie_config=selfie_config
        )
        self.name = self.backend.name
        self.note: str | None = self.backend.note

    def __call__(self, image: Any, foreground: bool = True) -> MatteResult:
        """Matte one image (array, path or PIL image); `foreground=False` skips colour estimation."""
        from p3m.io import load_image_input

        image = load_image_input(image)
        output = self.backend.matte(image)
        if output.resized is not None:
            logger.info(output.resized.describe())
        notes = [note for note in (self.note, output.note) if note]
        result = MatteResult(
            alpha=output.alpha,
            image=image,
            model=self.name,
            resized=output.resized,
            trimap=output.trimap,
            note="; ".join(notes) if notes else None,
        )
        if foreground:
            result.ensure_foreground()
        return result


def matte(
    image: Any,
    model: str | Callable[..., Any] = "auto",
    weights: str | os.PathLike[str] | None = None,
    strategy: Strategy = "hybrid",
    device: str | None = None,
    max_pixels: int | None = MATTE_MAX_PIXELS,
    foreground: bool = True,
    selfie_config: SelfieCFConfig | None = None,
) -> MatteResult | list[MatteResult]:
    """Alpha matte of the person in `image` (RGB uint8 array, path, PIL image or encoded bytes);
    given a list (or tuple) of images, a list of results in the same order, one model load.

    `model`: "auto" (P3M-Net ViTAE-S when its weights are cached, otherwise selfie-cf; the
    result's `note` says so), "selfie-cf", "p3mnet-r34" / "p3mnet-swin-t" / "p3mnet-vitae-s"
    (weights from `weights` or the cache), or a built model. `strategy`: the official "hybrid"
    or "resize". Images above `max_pixels` are shrunk first (see `MatteResult.resized`).
    `selfie_config` refines selfie-cf (see `Matter`). A list stops at the first image that
    cannot be matted (raising its P3MError); for folders that go on, see `p3m.inference.batch`.
    """
    matter = Matter(
        model, weights=weights, strategy=strategy, device=device, max_pixels=max_pixels,
        selfie_config=selfie_config,
    )
    if isinstance(image, list | tuple):
        return [matter(item, foreground=foreground) for item in image]
    return matter(image, foreground=foreground)
