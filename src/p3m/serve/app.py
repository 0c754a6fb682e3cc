"""The FastAPI application behind `p3m serve`: a thin layer that moves bytes to the library.

Endpoints:

* `GET /` the web page (matte and anonymise modes), `GET /static/...` its script and style;
* `GET /api/health` (answered on the event loop, never behind the queue) and `GET /api/models`;
* `POST /api/matte`: multipart field `image`; `output=rgba|alpha|foreground|composite|json`;
  `background=` a colour, or a file field `background_image`, for composites. Answers a PNG,
  or with `output=json` one JSON object with the alpha, the cut-out and the composite as PNG
  data URLs (one matting pass). Notes of the library (`MatteResult.note`, e.g. no person found)
  travel in the `X-P3M-Note` header and the JSON `notes`;
* `POST /api/anonymize`: the P3M-10k recipe as `p3m anonymize` runs it (`method`, `detectors`,
  `landmarks`, `min_confidence`, `transition_margin`, `strength`, a matte uploaded as `alpha`
  or estimated with `alpha_from`, `audit`), answering JSON with the per-face report and the
  anonymised image, or (`output=png`) the image alone (face count in `X-P3M-Faces`, warnings
  in `X-P3M-Warnings`). `X-P3M-Status` (JSON `status`) is the status `p3m anonymize` records
  in its manifest: done, needs_review (reasons in `X-P3M-Review-Reasons`, JSON
  `review_reasons`) or needs_annotation (no face found). With the audit on,
  `X-P3M-Audit: passed|failed` and `X-P3M-Faces-Left-Visible: N` (JSON `audit_passed`,
  `faces_left_visible`): failed when a face was found outside every face mask (left visible in
  the answer) or an identity still matches; weak detections a second look did not confirm are
  no leak, named in `X-P3M-To-Check` (JSON `to_check`).

Load: inference runs on a bounded pool of worker threads (`p3m.serve.pool`), anonymisation in
worker processes behind them (dlib holds the GIL, which would stall the event loop); a full queue
answers 503 with `Retry-After`, a request over its time bound 504, an upload over the size limit
413 (from `Content-Length` before reading, or as soon as the limit is passed). Uploads are parsed
in memory and never written to disk; answers carry only pixels (no EXIF, ICC or text chunks).
Errors are JSON `{"detail": "<one line>"}` with a 4xx status; odd images never produce a 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from p3m.errors import MissingDependencyError, P3MError
from p3m.serve.config import ServeConfig
from p3m.serve.jobs import (
    ANONYMIZE_OUTPUTS,
    MATTE_OUTPUTS,
    AnonymizeJob,
    InProcess,
    MatteJob,
    Reply,
    error_reply,
)
from p3m.serve.pool import (
    InferencePool,
    ProcessRunner,
    ServiceBusy,
    ServiceTimeout,
    WorkerSetupError,
)
from p3m.serve.uploads import BadUpload, Form, UploadTooLarge, check_declared_length, read_form

try:  # FastAPI resolves the endpoint annotations from this module's globals
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.requests import ClientDisconnect
except ImportError:  # pragma: no cover - only without the [serve] extra
    FastAPI = None  # type: ignore[assignment,misc]

__all__ = ["ServeConfig", "create_app"]

logger = logging.getLogger(__name__)

ALPHA_FROM_NONE = "none"


class OptionError(ValueError):
    """A form option has a value the endpoint does not take (answered 400)."""


def _page() -> str:
    return resources.files("p3m.serve").joinpath("static/index.html").read_text(encoding="utf-8")


def _to_response(reply: Reply) -> Any:
    return Response(reply.body, status_code=reply.status, media_type=reply.media_type, headers=reply.headers)


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> Any:
    return _to_response(error_reply(status, detail, headers))


# --------------------------------------------------------------------------- form options


MATTE_FIELDS = ("image", "output", "background", "background_image")
ANONYMIZE_FIELDS = (
    "image", "alpha", "alpha_from", "method", "detectors", "landmarks", "min_confidence",
    "transition_margin", "strength", "audit", "audit_detectors", "output",
)  # fmt: skip


def _ignored_fields(form: Form, known: tuple[str, ...]) -> list[str]:
    """Form fields the endpoint does not read: answered in the `X-P3M-Ignored-Fields` header,
    so that a `model=` or `strategy=` is not ignored without a word (the server's model is set
    when it starts: `p3m serve --model`)."""
    return sorted((set(form.texts) | set(form.files)) - set(known))


def _unused_background(form: Form, job: Any) -> list[str]:
    """A background sent to /api/matte for an output without a composite (rgba, alpha,
    foreground): read by no one, so named in `X-P3M-Ignored-Fields` too."""
    if not isinstance(job, MatteJob) or job.output in ("composite", "json"):
        return []
    return sorted(name for name in ("background", "background_image") if name in form.texts or name in form.files)


def _choice(form: Form, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (form.text(name) or default).strip().lower()
    if value not in choices:
        raise OptionError(f"{name} must be one of {', '.join(choices)}, got {value[:40]!r}")
    return value


def _number(form: Form, name: str, default: float, low: float, high: float) -> float:
    text = form.text(name)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise OptionError(f"{name} must be a number, got {text[:40]!r}") from None
    if not low <= value <= high:
        raise OptionError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return value


def _flag(form: Form, name: str, default: bool) -> bool:
    text = form.text(name)
    if text is None or not text.strip():
        return default
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise OptionError(f"{name} must be true or false, got {text[:40]!r}")


def _names(form: Form, name: str, default: tuple[str, ...] | None) -> tuple[str, ...] | None:
    text = form.text(name)
    if text is None or not text.strip():
        return default
    from p3m.detection.faces import expand_detector_names

    return expand_detector_names([part.strip() for part in text.split(",") if part.strip()])


def _image(form: Form, name: str = "image") -> bytes:
    upload = form.file(name)
    if upload is None:
        raise OptionError(f"send the photo as a file field named {name!r} (multipart/form-data)")
    return upload.data


def _upload_name(form: Form, name: str = "image") -> str:
    """The client's file name of the upload (its last path part, one line), or ""."""
    upload = form.file(name)
    if upload is None:
        return ""
    return " ".join(upload.filename.replace("\\", "/").rsplit("/", 1)[-1].split())[:200]


# --------------------------------------------------------------------------- the application


def create_app(config: ServeConfig | None = None, preload: bool = False) -> Any:
    """Build the FastAPI app over an inference pool of `config.worker_count` loaded `Matter`s.

    The models are loaded on the first request, or now with `preload` (so that a wrong model or
    missing weights fail at start, not on every request). The worker threads start with the
    app and stop at its shutdown.
    """
    if FastAPI is None:  # pragma: no cover - only without the [serve] extra
        raise MissingDependencyError('the HTTP service needs FastAPI: pip install "p3m[serve]"')

    config = config or ServeConfig()
    pool: InferencePool[Any] = InferencePool(
        config.make_matter, workers=config.worker_count, max_queue=config.max_queue, timeout=config.timeout
    )
    # Anonymisation runs in worker processes behind the pool's threads: dlib's detectors hold
    # the GIL for seconds, which from a thread would stall the event loop (GET /api/health).
    processes = ProcessRunner(workers=config.worker_count)
    if preload:
        pool.load()

    def stop() -> None:
        pool.close()
        processes.close()

    @asynccontextmanager
    async def lifespan(_app: Any):  # type: ignore[no-untyped-def]
        pool.start()
        if preload and config.anonymize_processes:
            processes.start()
        try:
            yield
        finally:
            # Queued jobs are finished; nothing runs on after the server has gone.
            await asyncio.get_running_loop().run_in_executor(None, stop)

    app = FastAPI(
        title="p3m",
        description="Privacy-preserving portrait matting: alpha mattes, cut-outs and P3M-10k face anonymisation.",
        lifespan=lifespan,
    )
    app.state.pool = pool
    app.state.processes = processes
    app.state.config = config
    app.mount("/static", StaticFiles(packages=[("p3m.serve", "static")]), name="static")
    limit = config.max_upload_bytes

    async def handle(
        request: Request, build: Callable[[Form], Callable[[Any], Reply]], fields: tuple[str, ...]
    ) -> Any:
        """Admission, upload, options, the job on a worker, and every failure as a clear 4xx/5xx."""
        try:
            check_declared_length(request.headers, limit)
        except UploadTooLarge as error:
            # Refused before a byte of the body is read; the connection is not reused.
            return _error(413, str(error), {"Connection": "close"})
        except BadUpload as error:
            return _error(400, str(error))
        try:
            ticket = pool.admit()
        except ServiceBusy as error:
            # Answered before the body is read; uvicorn then reads the rest and drops it, so
            # the client gets this answer rather than a reset connection.
            return _error(503, str(error), {"Retry-After": str(error.retry_after)})
        submitted = False
        try:
            try:
                form = await _read_within(request, limit, ticket.deadline)
            except UploadTooLarge as error:
                return _error(413, str(error), {"Connection": "close"})
            except BadUpload as error:
                return _error(400, str(error))
            except ClientDisconnect:
                return Response(status_code=400)  # nobody is listening
            except asyncio.TimeoutError:
                return _error(408, f"the upload did not arrive within {config.timeout:g} s")
            try:
                job = build(form)
            except (ValueError, P3MError) as error:  # OptionError, ConfigError: a bad option
                return _error(400, str(error))
            submitted = True
            reply = await pool.run(ticket, job, abandoned=_client_gone(request))
            ignored = _ignored_fields(form, fields) + _unused_background(form, job)
            if ignored:
                reply.headers["X-P3M-Ignored-Fields"] = ", ".join(ignored)
        except ServiceTimeout as error:
            return _error(504, f"{error}; retry later or send a smaller image", {"Retry-After": "5"})
        except WorkerSetupError as error:
            return _error(503, f"the service cannot load its model: {error}", {"Retry-After": "60"})
        finally:
            if not submitted:
                pool.release(ticket)
        return _to_response(reply)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return _page()

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        loaded = pool.loaded
        return {
            "status": "ok",
            "model": config.model_label,
            "loaded": None if loaded is None else loaded.name,
            "max_upload_bytes": limit,
            **pool.stats(),
        }

    @app.get("/api/models")
    def models() -> dict[str, Any]:
        from p3m.models import list_models
        from p3m.models.hub import installed_weights

        return {
            "models": [
                {"name": name, "weights_installed": installed_weights(name) is not None}
                for name in list_models()
            ],
            "default": config.model_label,
        }

    def matte_job(form: Form) -> MatteJob:
        from p3m.inference.foreground import parse_color

        background_file = form.file("background_image")
        return MatteJob(
            image=_image(form),
            image_name=_upload_name(form),
            output=_choice(form, "output", "rgba", MATTE_OUTPUTS),
            background=parse_color(form.text("background") or "white"),
            background_image=None if background_file is None else background_file.data,
            background_name=_upload_name(form, "background_image"),
            max_image_pixels=config.max_image_pixels,
        )

    default_alpha_from = _default_alpha_from(config)

    def anonymize_in_process(form: Form) -> InProcess | AnonymizeJob:
        job = anonymize_job(form)
        return InProcess(job, processes) if config.anonymize_processes else job

    def anonymize_job(form: Form) -> AnonymizeJob:
        from p3m.detection.faces import DEFAULT_DETECTORS
        from p3m.privacy.obfuscation import METHODS

        alpha_file = form.file("alpha")
        choices = tuple(dict.fromkeys((default_alpha_from, "auto", "selfie-cf", ALPHA_FROM_NONE)))
        alpha_from = _choice(form, "alpha_from", default_alpha_from, choices)
        return AnonymizeJob(
            image=_image(form),
            image_name=_upload_name(form),
            alpha=None if alpha_file is None else alpha_file.data,
            alpha_name=_upload_name(form, "alpha"),
            alpha_from=None if alpha_from == ALPHA_FROM_NONE else alpha_from,
            method=_choice(form, "method", "blur", METHODS),
            detectors=_names(form, "detectors", DEFAULT_DETECTORS) or DEFAULT_DETECTORS,
            landmarks=_choice(form, "landmarks", "mediapipe", ("mediapipe", "dlib68")),
            min_confidence=_number(form, "min_confidence", 0.5, 0.05, 0.99),
            transition_margin=int(_number(form, "transition_margin", 3, 0, 100)),
            strength=_number(form, "strength", 1.0, 0.1, 20.0),
            audit=_flag(form, "audit", True),
            audit_detectors=_names(form, "audit_detectors", None),
            output=_choice(form, "output", "json", ANONYMIZE_OUTPUTS),
            max_image_pixels=config.max_image_pixels,
        )

    @app.post("/api/matte", openapi_extra=_form_schema(_MATTE_FIELDS))
    async def matte_endpoint(request: Request) -> Any:
        """Matte one photo: a PNG (rgba, alpha, foreground, composite) or a JSON bundle."""
        return await handle(request, matte_job, MATTE_FIELDS)

    @app.post("/api/anonymize", openapi_extra=_form_schema(_ANONYMIZE_FIELDS))
    async def anonymize_endpoint(request: Request) -> Any:
        """Obfuscate the faces of one photo the P3M-10k way; JSON report or the PNG alone."""
        return await handle(request, anonymize_in_process, ANONYMIZE_FIELDS)

    @app.exception_handler(P3MError)
    async def p3m_error(_request: Any, error: P3MError) -> Any:
        return _error(400, str(error))

    return app


async def _read_within(request: Any, limit: int, deadline: float) -> Form:
    """The form, read by the request's deadline (`asyncio.TimeoutError` after it)."""
    remaining = max(0.0, deadline - time.monotonic())
    return await asyncio.wait_for(read_form(request, limit), timeout=remaining)


async def _client_gone(request: Any) -> None:
    """Returns when the client disconnects (the body has been read by then)."""
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            return


def _default_alpha_from(config: ServeConfig) -> str:
    """The served model estimates mattes for anonymisation when `p3m.anonymize` can name it."""
    model = config.model
    if not isinstance(model, str) or model.lower().endswith(".onnx"):
        return "auto"
    if model in ("auto", "selfie-cf"):
        return model
    from p3m.models import list_models

    return model if model in list_models() else "auto"


# --------------------------------------------------------------------------- OpenAPI description

_MATTE_FIELDS: dict[str, dict[str, Any]] = {
    "image": {"type": "string", "format": "binary", "description": "a photo (JPEG, PNG, WebP, TIFF, BMP)"},
    "output": {"type": "string", "enum": list(MATTE_OUTPUTS), "default": "rgba"},
    "background": {"type": "string", "default": "white", "description": "composite colour: name, #rrggbb or r,g,b"},
    "background_image": {"type": "string", "format": "binary", "description": "composite over this image (cropped to the photo's aspect)"},
}
_ANONYMIZE_FIELDS: dict[str, dict[str, Any]] = {
    "image": {"type": "string", "format": "binary", "description": "a photo"},
    "alpha": {"type": "string", "format": "binary", "description": "its alpha matte (optional; else estimated)"},
    "alpha_from": {"type": "string", "default": "the served model", "description": "auto, selfie-cf, the served model, or none"},
    "method": {"type": "string", "enum": ["blur", "mosaic", "mask"], "default": "blur"},
    "detectors": {"type": "string", "default": "default", "description": "comma list: default (centerface + mediapipe + dlib-hog where installed, as the CLI and p3m.anonymize), centerface, mediapipe, mediapipe-short, mediapipe-full, dlib-hog, dlib-cnn, dlib"},
    "landmarks": {"type": "string", "enum": ["mediapipe", "dlib68"], "default": "mediapipe"},
    "min_confidence": {"type": "number", "default": 0.5},
    "transition_margin": {"type": "integer", "default": 3},
    "strength": {"type": "number", "default": 1.0},
    "audit": {"type": "boolean", "default": True, "description": "detect faces again on the output and check identity"},
    "audit_detectors": {"type": "string", "description": "comma list (default: every available detector)"},
    "output": {"type": "string", "enum": list(ANONYMIZE_OUTPUTS), "default": "json"},
}


def _form_schema(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": fields, "required": ["image"]}
                }
            },
        }
    }
