"""Matting backends: what `Matter` runs for one image, behind one small protocol.

A backend takes an RGB uint8 H x W x 3 image and returns a `BackendOutput`: the alpha (float32
H x W in [0, 1], at the input size), the trimap it implies (uint8 {0, 128, 255}) if any, how the
image was resized to fit the pixel budget, and a note for the user (or None). Three are built in:

* `SelfieCFBackend`: the offline default (MediaPipe selfie segmentation -> trimap -> closed-form
  matting -> guided upsampling), `p3m.inference.selfie_cf`;
* `P3MNetBackend`: a P3M-Net, run with the official HYBRID or RESIZE procedure
  (`p3m.inference.strategies`); the network is a torch module or an `OnnxP3MNet` (ONNX Runtime),
  which take the same input and return the same `P3MOutput`.

`resolve_backend` turns `Matter`'s arguments ("auto", "selfie-cf", a registered name, an .onnx
file, a built model, or a backend instance of one's own, plus weights and device) into one.

    >>> backend = resolve_backend("selfie-cf")
    >>> output = backend.matte(image)          # output.alpha, output.trimap, output.resized
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from p3m.errors import ConfigError, ModelNotFoundError
from p3m.inference.budget import (
    MATTE_MAX_PIXELS,
    MIN_MATTE_PIXELS,
    check_pixel_budget,
    pixel_budget_from_option,
)
from p3m.inference.selfie_cf import (
    DEFAULT_SOLVE_PIXELS,
    SELFIE_CF_NAME,
    SelfieCFConfig,
    run_selfie_cf,
)
from p3m.inference.strategies import Strategy, predict_p3mnet
from p3m.inference.upsample import budget_scale, shrink_image, upsample_alpha
from p3m.io.images import pixel_count_text

__all__ = [
    "AUTO_PREFERRED_MODEL",
    "MATTE_MAX_PIXELS",
    "BackendOutput",
    "MattingBackend",
    "P3MNetBackend",
    "ResizeInfo",
    "SegmentationFilter",
    "SelfieCFBackend",
    "SelfieCFConfig",
    "MIN_MATTE_PIXELS",
    "check_pixel_budget",
    "check_selfie_config",
    "pixel_budget_from_option",
    "resolve_backend",
]

logger = logging.getLogger(__name__)

AUTO_PREFERRED_MODEL = "p3mnet-vitae-s"
"""`model="auto"` uses this P3M-Net when its weights are cached, else selfie-cf."""

# File name endings of checkpoints, which a user may give as the model instead of the weights.
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".tar", ".bin", ".pkl", ".safetensors")


@dataclass(frozen=True)
class ResizeInfo:
    """At which size an image was matted when not at its own: sizes are (height, width).

    `kind` "budget": the image was above the pixel budget and processed shrunk as a whole
    (P3M-Net). `kind` "solve": the image was analysed whole, and only the closed-form solve ran
    at `scale` (selfie-cf), because the regions around the people (`region_pixels` in all) are
    above selfie-cf's own solve budget, `solve_pixels` per person (`people`; set by the pixel
    budget `max_pixels`, see `SelfieCFBackend.solve_pixels`); `processed_size` is then the
    whole image at that scale.
    """

    original_size: tuple[int, int]
    processed_size: tuple[int, int]
    scale: float
    max_pixels: int
    downscale: str = "antialiased bilinear"
    upsample: str = "guided filter"
    kind: str = "budget"
    solve_pixels: int = 0
    people: int = 0
    region_pixels: int = 0

    def describe(self) -> str:
        """This image's sizes in one short clause (a result's line, a log, the service's
        X-P3M-Resized header); `explain()` says once what it means and what changes it."""
        (h, w), (ph, pw) = self.original_size, self.processed_size
        if self.kind == "solve":
            if self.solve_pixels and self.region_pixels:
                # selfie-cf's own budget (pixels per person), not the pixel budget it derives from.
                return (
                    f"closed-form solved at {self.scale:.2f}x ({pw}x{ph} px): {self.region_pixels:,} px around "
                    f"{max(1, self.people)} person(s) > solve budget {self.solve_pixels:,} px/person"
                )
            budget = f"a pixel budget of {pixel_count_text(self.max_pixels)}" if self.max_pixels else "no pixel budget"
            return f"closed-form solved at {self.scale:.2f}x (about {pw}x{ph} px, {budget}), alpha upsampled to {w}x{h}"
        return (
            f"{w}x{h} ({pixel_count_text(h * w)}) is above the pixel budget of {pixel_count_text(self.max_pixels)}: "
            f"matted at {pw}x{ph}"
        )

    def explain(self, budget: str = "pixel budget") -> str:
        """What resizing of this kind does and how to trade speed for detail, for a note said
        once per run (`budget`: how the caller's surface names the budget, e.g. "--max-pixels")."""
        if self.kind == "solve":
            return (
                f"selfie-cf finds the people on the whole image but solves the closed-form matte around "
                f"them at a reduced size when that region is above its solve budget (pixels per person, "
                f"a fixed share of the {budget}, so a small image can be solved reduced too); the alpha "
                f"is upsampled back with a {self.upsample}; a larger {budget} solves finer, slower"
            )
        return (
            f"images above the pixel budget are matted shrunk ({self.downscale}) and the alpha is "
            f"upsampled back with a {self.upsample}; a larger {budget} mattes finer, slower"
        )


@dataclass
class BackendOutput:
    """One image's matte from a backend; see the module doc for shapes and ranges.

    `details` is whatever else the backend reports (selfie-cf: its `SelfieCFResult`, with the
    people found and the solved regions), or None.
    """

    alpha: np.ndarray
    trimap: np.ndarray | None = None
    resized: ResizeInfo | None = None
    note: str | None = None
    details: Any = None


SegmentationFilter = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""`filter(image, probabilities) -> probabilities`: selfie-cf's person probability (float32
h x w in [0, 1]) or P3M-Net's global class probabilities (3 x h x w), each with the RGB uint8
image it was computed on (see `p3m.inference.selfie_cf.MaskFilter`,
`p3m.inference.strategies.GlobalFilter`)."""


class MattingBackend(Protocol):
    """What `Matter` needs from a matting method.

    `name` is reported with every result (a registered model name or "selfie-cf"); `note` is a
    remark about the choice itself (e.g. why "auto" fell back to selfie-cf), or None.
    """

    name: str
    note: str | None

    def matte(
        self, image: np.ndarray, segmentation_filter: SegmentationFilter | None = None
    ) -> BackendOutput:
        """Alpha of the person in an RGB uint8 H x W x 3 image, at the input size.

        `segmentation_filter(image, probabilities) -> probabilities`, when given, replaces the
        method's segmentation before its trimap is built (video smooths it over time); a
        backend without a segmentation stage may ignore it.
        """
        ...


def nearest_resize(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map (e.g. a trimap) to `size` = (height, width)."""
    rows = np.minimum(((np.arange(size[0]) + 0.5) * values.shape[0] / size[0]).astype(int), values.shape[0] - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * values.shape[1] / size[1]).astype(int), values.shape[1] - 1)
    return values[rows[:, None], cols[None, :]]


def check_selfie_config(config: SelfieCFConfig) -> SelfieCFConfig:
    """`config` if its refinement options are in range, else ConfigError naming the option.

    `threshold` (person probability) must lie strictly between 0 and 1; `band_fraction` (the
    half-width of the trimap's unknown band, as a fraction of the longer side) in (0, 0.5].
    """
    if not 0.0 < config.threshold < 1.0:
        raise ConfigError(f"the selfie-cf threshold must be between 0 and 1 (exclusive), got {config.threshold}")
    if not 0.0 < config.band_fraction <= 0.5:
        raise ConfigError(f"the selfie-cf trimap band must be in (0, 0.5] of the longer side, got {config.band_fraction}")
    if config.model_selection not in (0, 1):
        raise ConfigError(f"the selfie-cf model_selection must be 0 or 1, got {config.model_selection}")
    return config


class SelfieCFBackend:
    """The offline default: `p3m.inference.selfie_cf` (no downloaded weights).

    The whole image is analysed (people, segmentation); closed-form matting then solves the
    regions around the people with at most `solve_pixels(max_pixels)` pixels per person: the
    config's `solve_pixels` at the default budget, in proportion to `max_pixels` otherwise, and at
    full resolution with `max_pixels=None`. `resized` (kind "solve") reports the solve scale whenever
    it is below 1; the per-image note says when no person was found.
    `config` refines it (`SelfieCFConfig`; checked by `check_selfie_config`).
    Raises `MissingDependencyError` at construction when MediaPipe is missing.
    """

    def __init__(
        self,
        config: SelfieCFConfig | None = None,
        max_pixels: int | None = MATTE_MAX_PIXELS,
        note: str | None = None,
    ) -> None:
        self.name = SELFIE_CF_NAME
        self.note = note
        self.max_pixels = max_pixels
        base = config or SelfieCFConfig()
        base = check_selfie_config(base)
        self.config = replace(base, solve_pixels=self.solve_pixels(max_pixels, base.solve_pixels))
        # Fail now, with the install hint, rather than on the first image.
        from p3m.inference.selfie_cf import _segmenter

        _segmenter(self.config.model_selection)

    @property
    def settings(self) -> dict[str, Any]:
        """What decides this backend's mattes besides the image (JSON-able; see `Matter.settings`):
        the closed-form size it solves at (`solve_pixels`) and the pixel budget that set it
        (`max_pixels`, as given: what a message about other settings shows)."""
        return {
            "model": self.name, "band_fraction": self.config.band_fraction,
            "threshold": self.config.threshold, "solve_pixels": self.config.solve_pixels,
            "max_pixels": self.max_pixels,
        }  # fmt: skip

    @staticmethod
    def solve_pixels(max_pixels: int | None, at_default: int | None = DEFAULT_SOLVE_PIXELS) -> int | None:
        """Closed-form pixels for a pixel budget: `at_default` scaled by max_pixels / MATTE_MAX_PIXELS."""
        if max_pixels is None or at_default is None:
            return None
        return max(1024, round(at_default * max_pixels / MATTE_MAX_PIXELS))

    def matte(
        self, image: np.ndarray, segmentation_filter: SegmentationFilter | None = None
    ) -> BackendOutput:
        height, width = image.shape[:2]
        result = run_selfie_cf(image, config=self.config, mask_filter=segmentation_filter)
        resized = None
        if result.scale < 1.0:
            resized = ResizeInfo(
                (height, width), result.solved_size, result.scale, int(self.max_pixels or 0), kind="solve",
                solve_pixels=int(self.config.solve_pixels or 0), people=len(result.people),
                region_pixels=sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in (r.box for r in result.regions)),
            )
        return BackendOutput(
            alpha=result.alpha, trimap=result.trimap, resized=resized, note=result.note, details=result
        )


class P3MNetBackend:
    """A P3M-Net (torch module or `OnnxP3MNet`) run with the official `strategy`.

    Images above `max_pixels` are shrunk (antialiased) first and the alpha is brought back with
    guided upsampling, the trimap with nearest neighbours.
    """

    def __init__(
        self,
        network: Callable[..., Any],
        name: str,
        strategy: Strategy = "hybrid",
        max_pixels: int | None = MATTE_MAX_PIXELS,
        note: str | None = None,
    ) -> None:
        self.network = network
        self.name = name
        self.strategy = strategy
        self.max_pixels = max_pixels
        self.note = note

    @property
    def settings(self) -> dict[str, Any]:
        """What decides this backend's mattes besides the image (JSON-able; see `Matter.settings`)."""
        return {"model": self.name, "strategy": self.strategy, "max_pixels": self.max_pixels}

    def matte(
        self, image: np.ndarray, segmentation_filter: SegmentationFilter | None = None
    ) -> BackendOutput:
        height, width = image.shape[:2]
        scale = budget_scale(height, width, self.max_pixels)
        working, resized = image, None
        if scale < 1.0:
            size = (max(1, int(height * scale)), max(1, int(width * scale)))
            working = shrink_image(image, size)
            resized = ResizeInfo((height, width), size, scale, int(self.max_pixels or 0))
        prediction = predict_p3mnet(
            self.network, working, self.strategy, global_filter=segmentation_filter
        )
        alpha, trimap = prediction.alpha, prediction.trimap
        if resized is not None:
            del working
            alpha = upsample_alpha(alpha, image, method="guided")
            trimap = nearest_resize(trimap, (height, width))
        return BackendOutput(alpha=alpha, trimap=trimap, resized=resized)


# --------------------------------------------------------------------------- resolution

_MODEL_CACHE: dict[tuple[str, str, str], Any] = {}
_MODEL_CACHE_LOCK = threading.Lock()


def _resolve_device(device: str | None) -> Any:
    from p3m.models import resolve_device

    return resolve_device(device)


def load_p3mnet(name: str, weights: str | os.PathLike[str], device: str | None) -> Any:
    """The registered model `name` with `weights`, on `device`, in its fast inference form
    (`p3m.models.optimize_for_inference`; cached, one at a time)."""
    key = (name, str(Path(weights).resolve()), str(_resolve_device(device)))
    with _MODEL_CACHE_LOCK:
        if key not in _MODEL_CACHE:
            from p3m.models import create_model, optimize_for_inference
            from p3m.models.fast_ops import retain_freed_memory

            _MODEL_CACHE.clear()  # one P3M-Net at a time: they weigh 100-400 MB each
            retain_freed_memory()  # reuse activation memory between passes (Linux, glibc)
            model = create_model(name, weights=weights, device=device)
            _MODEL_CACHE[key] = optimize_for_inference(model, inplace=True)
        return _MODEL_CACHE[key]


def _name_from_weights(path: Path) -> str:
    """The registered model a checkpoint belongs to (for `model="auto"` with explicit weights)."""
    from p3m.models import identify_variant, list_models, read_state_dict

    variant = identify_variant(read_state_dict(path))
    if variant not in list_models():
        raise ModelNotFoundError(
            "cannot tell which P3M-Net variant this checkpoint is; pass the model name", path
        )
    return variant


def _unknown_model(model: str) -> ModelNotFoundError:
    """What `model=` (`--model`) was given that names no model: a checkpoint file belongs in
    `weights=`; anything else lists the models this parameter takes."""
    from p3m.models import list_models

    path = Path(model).expanduser()
    if path.is_file() or path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return ModelNotFoundError(
            "is not a model name; a checkpoint goes to {weights} (with {model} or the P3M-Net "
            "it belongs to); an .onnx file from `p3m export-onnx` is itself a model",
            model,
            options={"weights": model, "model": "auto"},
        )
    known = ", ".join(["auto", SELFIE_CF_NAME, *list_models()])
    return ModelNotFoundError(f"unknown model {model!r} (known models: {known}; or an .onnx file)")


def _auto_fallback_note() -> str:
    from p3m.models.hub import install_hint

    return (
        f"P3M-Net ViTAE-S weights are not in the cache, so the classical selfie-cf pipeline was "
        f"used; for P3M-Net mattes {install_hint(AUTO_PREFERRED_MODEL)}"
    )


def _is_backend(value: object) -> bool:
    return callable(getattr(value, "matte", None)) and isinstance(getattr(value, "name", None), str)


def resolve_backend(
    model: str | os.PathLike[str] | Callable[..., Any] = "auto",
    weights: str | os.PathLike[str] | None = None,
    strategy: Strategy = "hybrid",
    device: str | None = None,
    max_pixels: int | None = MATTE_MAX_PIXELS,
    selfie_config: SelfieCFConfig | None = None,
) -> MattingBackend:
    """The backend for `Matter`'s arguments (see `Matter`); raises the errors `Matter` documents.

    The device is checked first, whatever the model (`DeviceError`: unknown, or not on this
    machine), so a wrong `--device` fails before any weights are read. `selfie_config` refines
    selfie-cf (also when "auto" falls back to it; a note says it was unused when "auto" found
    P3M-Net); with any other model it is a ConfigError.
    """
    from p3m.inference.onnx_runtime import is_onnx_path, providers_for_device

    if is_onnx_path(model):
        providers = providers_for_device(device)  # onnxruntime's own CUDA, not torch's
    else:
        _resolve_device(device)
    if selfie_config is not None:
        check_selfie_config(selfie_config)
        if model not in ("auto", SELFIE_CF_NAME):
            raise ConfigError(
                "the trimap band and threshold options refine selfie-cf only; drop them or use "
                "{model} (or auto)",
                options={"model": SELFIE_CF_NAME},
            )
    if _is_backend(model):  # a backend built by the caller (e.g. a custom method)
        if weights is not None:
            raise ConfigError("a matting backend instance carries its own weights; drop weights")
        return model  # type: ignore[return-value]
    if is_onnx_path(model):  # a file written by `p3m export-onnx`, run with onnxruntime
        if weights is not None:
            raise ConfigError("an ONNX model carries its own weights; give no weights with it")
        from p3m.inference.onnx_runtime import OnnxP3MNet

        network = OnnxP3MNet(model, providers=providers)
        return P3MNetBackend(network, network.variant, strategy, max_pixels)
    if not isinstance(model, str):
        name = str(getattr(model, "variant", type(model).__name__))
        return P3MNetBackend(model, name, strategy, max_pixels)
    from p3m.models import list_models
    from p3m.models.hub import installed_weights, resolve_weights

    if model == "auto":
        if weights is not None:
            path = resolve_weights(weights, model=AUTO_PREFERRED_MODEL)
            name = _name_from_weights(path)
            return P3MNetBackend(load_p3mnet(name, path, device), name, strategy, max_pixels)
        path = installed_weights(AUTO_PREFERRED_MODEL)
        if path is not None:
            network = load_p3mnet(AUTO_PREFERRED_MODEL, path, device)
            unused = None
            if selfie_config is not None:
                unused = f"auto chose {AUTO_PREFERRED_MODEL}, so the selfie-cf options were not used"
            return P3MNetBackend(network, AUTO_PREFERRED_MODEL, strategy, max_pixels, note=unused)
        return SelfieCFBackend(selfie_config, max_pixels=max_pixels, note=_auto_fallback_note())
    if model == SELFIE_CF_NAME:
        if weights is not None:
            raise ConfigError("selfie-cf takes no weights; give none, or pick a P3M-Net model")
        return SelfieCFBackend(selfie_config, max_pixels=max_pixels)
    if model not in list_models():
        raise _unknown_model(model)
    path = resolve_weights(weights if weights is not None else model, model=model)
    return P3MNetBackend(load_p3mnet(model, path, device), model, strategy, max_pixels)
