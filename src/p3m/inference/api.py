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
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p3m.errors import ConfigError, ModelNotFoundError
from p3m.inference.foreground import composite, cutout_rgba, estimate_foreground
from p3m.inference.selfie_cf import SELFIE_CF_NAME, SelfieCFConfig, matte_selfie_cf
from p3m.inference.strategies import STRATEGIES, Strategy, predict_p3mnet
from p3m.inference.upsample import budget_scale, shrink_image, upsample_alpha

__all__ = [
    "AUTO_PREFERRED_MODEL",
    "MATTE_MAX_PIXELS",
    "MatteResult",
    "Matter",
    "ResizeInfo",
    "matte",
]

logger = logging.getLogger(__name__)

MATTE_MAX_PIXELS = 1_749_600
"""Default pixel budget (1080 x 1620): keeps a P3M-Net pass on CPU within about 3-4 GiB."""

AUTO_PREFERRED_MODEL = "p3mnet-vitae-s"
"""`model="auto"` uses this P3M-Net when its weights are cached, else selfie-cf."""


@dataclass(frozen=True)
class ResizeInfo:
    """How an image above the pixel budget was processed: sizes are (height, width)."""

    original_size: tuple[int, int]
    processed_size: tuple[int, int]
    scale: float
    max_pixels: int
    downscale: str = "antialiased bilinear"
    upsample: str = "guided filter"

    def describe(self) -> str:
        (h, w), (ph, pw) = self.original_size, self.processed_size
        return (
            f"{w}x{h} ({h * w / 1e6:.1f} MP) is above the pixel budget of {self.max_pixels / 1e6:.2f} MP: "
            f"matted at {pw}x{ph} ({self.downscale}), alpha upsampled back with a {self.upsample}"
        )


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


# --------------------------------------------------------------------------- model resolution

_MODEL_CACHE: dict[tuple[str, str, str, bool], Any] = {}
_MODEL_CACHE_LOCK = threading.Lock()


def _resolve_device(device: str | None) -> Any:
    from p3m.models import resolve_device

    return resolve_device(device)


def _load_p3mnet(name: str, weights: Path, device: str | None, exact: bool = False) -> Any:
    """The loaded P3M-Net, in its fast inference form unless `exact` (see optimize_for_inference)."""
    key = (name, str(Path(weights).resolve()), str(_resolve_device(device)), bool(exact))
    with _MODEL_CACHE_LOCK:
        if key not in _MODEL_CACHE:
            from p3m.models import create_model, optimize_for_inference
            from p3m.models.fast_ops import retain_freed_memory

            _MODEL_CACHE.clear()  # one P3M-Net at a time: they weigh 100-400 MB each
            if not exact:
                retain_freed_memory()  # reuse activation memory between passes (Linux)
            model = create_model(name, weights=weights, device=device)
            _MODEL_CACHE[key] = optimize_for_inference(model, exact=exact, inplace=True)
        return _MODEL_CACHE[key]


def _auto_choice() -> tuple[str, Path | None, str | None]:
    """(model name, weights path, note) for `model="auto"`."""
    from p3m.inference.weights import install_hint, installed_weights

    path = installed_weights(AUTO_PREFERRED_MODEL)
    if path is not None:
        return AUTO_PREFERRED_MODEL, path, None
    note = (
        f"P3M-Net ViTAE-S weights are not in the cache, so the classical selfie-cf pipeline was "
        f"used; for P3M-Net mattes {install_hint(AUTO_PREFERRED_MODEL)}"
    )
    return SELFIE_CF_NAME, None, note


class Matter:
    """A loaded matting pipeline: build once, call on many images (`Matter(...)(image)`).

    `model` is "auto", "selfie-cf", a registered P3M-Net name, an .onnx file from
    `p3m export-onnx`, or a built model instance (any module returning `P3MOutput`);
    `weights` is a checkpoint path or a cached model name.
    """

    def __init__(
        self,
        model: str | Callable[..., Any] = "auto",
        weights: str | os.PathLike[str] | None = None,
        strategy: Strategy = "hybrid",
        device: str | None = None,
        max_pixels: int | None = MATTE_MAX_PIXELS,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        if max_pixels is not None and max_pixels < 1024:
            raise ConfigError(f"max_pixels must be at least 1024, got {max_pixels}")
        self.strategy = strategy
        self.max_pixels = max_pixels
        self.note: str | None = None
        self._network: Any = None
        self.selfie_config = SelfieCFConfig()
        from p3m.inference.onnx_runtime import is_onnx_path

        if is_onnx_path(model):  # a file written by `p3m export-onnx`, run with onnxruntime
            if weights is not None:
                raise ConfigError("an ONNX model carries its own weights; drop --weights")
            from p3m.inference.onnx_runtime import OnnxP3MNet, providers_for_device

            self._network = OnnxP3MNet(model, providers=providers_for_device(device))
            self.name = self._network.variant
            return
        if not isinstance(model, str):
            self.name = str(getattr(model, "variant", type(model).__name__))
            self._network = model
            return
        from p3m.inference.weights import resolve_weights

        if model == "auto":
            if weights is not None:
                path = resolve_weights(weights, model=AUTO_PREFERRED_MODEL)
                model, self.note = _name_from_weights(path), None
                self._network = _load_p3mnet(model, path, device)
            else:
                model, path, self.note = _auto_choice()
                if path is not None:
                    self._network = _load_p3mnet(model, path, device)
            self.name = model
        elif model == SELFIE_CF_NAME:
            if weights is not None:
                raise ConfigError("selfie-cf takes no weights; drop --weights or pick a P3M-Net model")
            self.name = model
        else:
            from p3m.models import get_spec

            get_spec(model)  # unknown names raise ModelNotFoundError listing the known ones
            path = resolve_weights(weights if weights is not None else model, model=model)
            self._network = _load_p3mnet(model, path, device)
            self.name = model
        if self.name == SELFIE_CF_NAME:
            # Fail now, with the install hint, rather than on the first image.
            from p3m.inference.selfie_cf import _segmenter

            _segmenter(0)

    def __call__(self, image: Any, foreground: bool = True) -> MatteResult:
        """Matte one image (array, path or PIL image); `foreground=False` skips colour estimation."""
        from p3m.io import load_image_input

        image = load_image_input(image)
        height, width = image.shape[:2]
        scale = budget_scale(height, width, self.max_pixels)
        resized = None
        if self._network is None:
            # selfie-cf mattes at its own bounded resolution and upsamples with a guided filter
            # itself, so a big photo goes in whole (no second resampling).
            alpha, trimap = matte_selfie_cf(image, config=self.selfie_config, return_trimap=True)
            if scale < 1.0:
                side = self.selfie_config.matting_max_side
                factor = min(1.0, side / max(height, width))
                size = (max(1, round(height * factor)), max(1, round(width * factor)))
                resized = ResizeInfo((height, width), size, factor, int(self.max_pixels or 0))
        else:
            working = image
            if scale < 1.0:
                size = (max(1, int(height * scale)), max(1, int(width * scale)))
                working = shrink_image(image, size)
                resized = ResizeInfo((height, width), size, scale, int(self.max_pixels or 0))
            prediction = predict_p3mnet(self._network, working, self.strategy)
            alpha, trimap = prediction.alpha, prediction.trimap
            if resized is not None:
                del working
                alpha = upsample_alpha(alpha, image, method="guided")
                trimap = _nearest_resize(trimap, (height, width))
        if resized is not None:
            logger.info(resized.describe())
        result = MatteResult(
            alpha=alpha, image=image, model=self.name, resized=resized, trimap=trimap, note=self.note
        )
        if foreground:
            result.ensure_foreground()
        return result


def _nearest_resize(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    rows = np.minimum(((np.arange(size[0]) + 0.5) * values.shape[0] / size[0]).astype(int), values.shape[0] - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * values.shape[1] / size[1]).astype(int), values.shape[1] - 1)
    return values[rows[:, None], cols[None, :]]


def _name_from_weights(path: Path) -> str:
    """The registered model a checkpoint belongs to (for `model="auto"` with explicit weights)."""
    from p3m.models import identify_variant, list_models, read_state_dict

    variant = identify_variant(read_state_dict(path))
    if variant not in list_models():
        raise ModelNotFoundError(
            "cannot tell which P3M-Net variant this checkpoint is; pass the model name", path
        )
    return variant


def matte(
    image: Any,
    model: str | Callable[..., Any] = "auto",
    weights: str | os.PathLike[str] | None = None,
    strategy: Strategy = "hybrid",
    device: str | None = None,
    max_pixels: int | None = MATTE_MAX_PIXELS,
    foreground: bool = True,
) -> MatteResult:
    """Alpha matte of the person in `image` (RGB uint8 array, path or PIL image).

    `model`: "auto" (P3M-Net ViTAE-S when its weights are cached, otherwise selfie-cf; the
    result's `note` says so), "selfie-cf", "p3mnet-r34" / "p3mnet-swin-t" / "p3mnet-vitae-s"
    (weights from `weights` or the cache), or a built model. `strategy`: the official "hybrid"
    or "resize". Images above `max_pixels` are shrunk first (see `MatteResult.resized`).
    """
    matter = Matter(model, weights=weights, strategy=strategy, device=device, max_pixels=max_pixels)
    return matter(image, foreground=foreground)
