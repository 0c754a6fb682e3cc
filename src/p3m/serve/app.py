"""The FastAPI application behind `p3m serve`.

Endpoints: `GET /` (the web page), `GET /api/health`, `GET /api/models`, and
`POST /api/matte` (multipart field `image`; `output=rgba|alpha|foreground|composite`,
`background=` a colour for composites) which answers with a PNG, or with `output=json` a JSON
object holding the alpha, the cut-out and the composite as PNG data URLs (one matting pass). All matting logic is
`p3m.inference.Matter`; this module only moves bytes.
"""

from __future__ import annotations

import base64
import logging
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from p3m.errors import MissingDependencyError, P3MError
from p3m.io import alpha_to_uint8, encode_png, load_image_and_alpha

try:  # FastAPI resolves the endpoint annotations from this module's globals
    from fastapi import FastAPI, File, Form, HTTPException, UploadFile
    from fastapi.responses import HTMLResponse, JSONResponse, Response
except ImportError:  # pragma: no cover - only without the [serve] extra
    FastAPI = None  # type: ignore[assignment,misc]

logger = logging.getLogger(__name__)

OUTPUTS = ("rgba", "alpha", "foreground", "composite", "json")


@dataclass
class ServeConfig:
    """How the service mattes: model, weights, device, and limits on what clients may send."""

    model: str = "auto"
    weights: str | None = None
    device: str | None = None
    strategy: str = "hybrid"
    max_upload_bytes: int = 40 * 1024 * 1024
    max_pixels: int | None = None  # the matting pixel budget; None keeps p3m.matte's default
    max_image_pixels: int = 100_000_000  # decoding cap for uploads (decompression-bomb guard)


def _data_url(array: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(array)).decode("ascii")


def _page() -> str:
    return resources.files("p3m.serve").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(config: ServeConfig | None = None, preload: bool = False) -> Any:
    """Build the FastAPI app; the matting pipeline is loaded on the first request, or now with
    `preload` (so that a wrong model or missing weights fail at start, not on every request)."""
    if FastAPI is None:  # pragma: no cover - only without the [serve] extra
        raise MissingDependencyError('the HTTP service needs FastAPI: pip install "p3m[serve]"')

    config = config or ServeConfig()
    app = FastAPI(title="p3m", description="Privacy-preserving portrait matting service.")
    state: dict[str, Any] = {"matter": None}
    lock = threading.Lock()  # one inference at a time: models are large and not re-entrant

    def matter() -> Any:
        if state["matter"] is None:
            from p3m.inference import Matter

            kwargs: dict[str, Any] = {}
            if config.max_pixels is not None:
                kwargs["max_pixels"] = config.max_pixels
            state["matter"] = Matter(
                config.model,
                weights=config.weights,
                strategy=config.strategy,  # type: ignore[arg-type]
                device=config.device,
                **kwargs,
            )
        return state["matter"]

    if preload:
        matter()

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return _page()

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        loaded = state["matter"]
        return {"status": "ok", "model": config.model, "loaded": None if loaded is None else loaded.name}

    @app.get("/api/models")
    def models() -> dict[str, Any]:
        from p3m.inference.weights import installed_weights
        from p3m.models import list_models

        return {
            "models": [
                {"name": name, "weights_installed": installed_weights(name) is not None}
                for name in list_models()
            ],
            "default": config.model,
        }

    @app.post("/api/matte")
    async def matte_endpoint(
        image: UploadFile = File(..., description="a photo (JPEG, PNG, WebP, TIFF, BMP)"),
        output: str = Form("rgba"),
        background: str = Form("white"),
    ) -> Response:
        if output not in OUTPUTS:
            raise HTTPException(400, f"output must be one of {', '.join(OUTPUTS)}")
        data = await image.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            raise HTTPException(413, f"upload larger than {config.max_upload_bytes} bytes")
        try:
            rgb, input_alpha = load_image_and_alpha(data, max_pixels=config.max_image_pixels)
        except P3MError as error:
            raise HTTPException(400, error.problem) from error
        try:
            with lock:
                result = matter()(rgb, foreground=output != "alpha", input_alpha=input_alpha)
                if output == "alpha":
                    array = alpha_to_uint8(result.alpha)
                elif output == "rgba":
                    array = result.rgba()
                elif output == "foreground":
                    array = result.ensure_foreground()
                elif output == "composite":
                    array = result.composite(background)
                else:
                    bundle = {
                        "model": result.model,
                        "resized": None if result.resized is None else result.resized.describe(),
                        "note": result.note,
                        "alpha": _data_url(alpha_to_uint8(result.alpha)),
                        "rgba": _data_url(result.rgba()),
                        "composite": _data_url(result.composite(background)),
                    }
        except P3MError as error:
            raise HTTPException(400, str(error)) from error
        if output == "json":
            return JSONResponse(bundle)
        headers = {"X-P3M-Model": result.model}
        if result.resized is not None:
            headers["X-P3M-Resized"] = result.resized.describe()
        if result.note:
            headers["X-P3M-Note"] = result.note
        return Response(encode_png(array), media_type="image/png", headers=headers)

    @app.exception_handler(P3MError)
    async def p3m_error(_request: Any, error: P3MError) -> Any:
        return JSONResponse(status_code=400, content={"detail": str(error)})

    return app
