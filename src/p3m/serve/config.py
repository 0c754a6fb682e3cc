"""`ServeConfig`: what the service mattes with, and the limits it holds clients to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from p3m.errors import ConfigError
from p3m.vocabulary import MAX_IMAGE_PIXELS

__all__ = ["ServeConfig"]


@dataclass
class ServeConfig:
    """How `p3m serve` mattes and what it accepts.

    `model`: "auto", "selfie-cf", a registered P3M-Net name, an .onnx file from
    `p3m export-onnx`, or a built model instance (anything `p3m.inference.Matter` accepts).
    `max_pixels`: the matting pixel budget (None: `p3m.matte`'s default, about 1080 x 1620;
    -1: none, images are matted at full size). `max_image_pixels`: the decoding cap for uploads
    (decompression-bomb guard; default `p3m.vocabulary.MAX_IMAGE_PIXELS`, as the library and the
    command line; 0 = no cap). `max_upload_bytes`: the largest request body (the photo plus any
    matte or background image), checked from `Content-Length` before reading and while reading.
    `workers`: inference threads, each with its own loaded `Matter` (None: 2 for selfie-cf, whose
    serial stages overlap, about twice the requests/s of one worker in `bench_serve.py`; 1 for
    P3M-Net and ONNX models, which keep both cores busy alone, so that a second worker would
    add memory and not throughput); `max_queue`: requests
    admitted beyond those being computed (a full queue answers 503 with `Retry-After`);
    `timeout`: seconds from admission to answer (then 504). `anonymize_processes`: run
    anonymisation in worker processes behind the inference threads (one per worker, started on
    the first anonymisation or at start with `preload`), because dlib's detectors and face
    descriptor hold the GIL for seconds and would stall the service from a thread; False runs
    it in the threads (less memory, but `GET /api/health` waits seconds while it runs; the
    baseline of `bench_serve.py --anonymize`).
    """

    model: str | Any = "auto"
    weights: str | None = None
    device: str | None = None
    strategy: str = "hybrid"
    max_pixels: int | None = None
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_upload_bytes: int = 40 * 1024 * 1024
    workers: int | None = None
    max_queue: int = 32
    timeout: float = 120.0
    anonymize_processes: bool = True

    def __post_init__(self) -> None:
        if self.max_pixels is not None and self.max_pixels != -1 and self.max_pixels < 1024:
            raise ConfigError(
                f"max_pixels must be at least 1024 (or -1 for no budget), got {self.max_pixels}"
            )
        if self.max_upload_bytes < 1:
            raise ConfigError(f"max_upload_bytes must be positive, got {self.max_upload_bytes}")
        if self.max_image_pixels < 0:
            raise ConfigError(f"max_image_pixels must be 0 (no cap) or positive, got {self.max_image_pixels}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if self.max_queue < 0:
            raise ConfigError(f"max_queue must be 0 or more, got {self.max_queue}")
        if not self.timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout}")

    @property
    def worker_count(self) -> int:
        """`workers`, or the default for the model (see the class docstring)."""
        if self.workers is not None:
            return self.workers
        return 2 if self._matting_is_selfie_cf() else 1

    def _matting_is_selfie_cf(self) -> bool:
        if self.model == "selfie-cf":
            return True
        if self.model != "auto" or self.weights is not None:
            return False
        from p3m.inference.api import AUTO_PREFERRED_MODEL
        from p3m.models.hub import installed_weights

        return installed_weights(AUTO_PREFERRED_MODEL) is None  # "auto" falls back to selfie-cf

    @property
    def model_label(self) -> str:
        """The model as text (a built instance by its `variant` or class name)."""
        if isinstance(self.model, str):
            return self.model
        return str(getattr(self.model, "variant", type(self.model).__name__))

    def make_matter(self) -> Any:
        """A new `p3m.inference.Matter` for this configuration (one per inference worker)."""
        from p3m.inference import Matter

        kwargs: dict[str, Any] = {}
        if self.max_pixels is not None:
            kwargs["max_pixels"] = None if self.max_pixels == -1 else self.max_pixels
        return Matter(
            self.model,
            weights=self.weights,
            strategy=self.strategy,  # type: ignore[arg-type]
            device=self.device,
            **kwargs,
        )
