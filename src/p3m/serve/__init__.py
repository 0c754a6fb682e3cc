"""HTTP service: `p3m serve` runs a FastAPI app with a web page and a JSON/PNG API.

    >>> from p3m.serve import ServeConfig, create_app
    >>> app = create_app(ServeConfig(model="selfie-cf", workers=1))   # then: uvicorn.run(app)

Modules: `config` (ServeConfig), `pool` (bounded inference workers), `uploads` (multipart in
memory within a size limit), `jobs` (the work of one request), `encoding` (PNG data URLs,
JSON and header text), `app` (the routes), `listen` (the port, claimed before the models load).
"""

from __future__ import annotations

from p3m.serve.app import create_app
from p3m.serve.config import ServeConfig
from p3m.serve.listen import listening_socket

__all__ = ["ServeConfig", "create_app", "listening_socket"]
