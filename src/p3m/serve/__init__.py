"""HTTP service: `p3m serve` runs a FastAPI app with a small web page and a JSON/PNG API.

    >>> from p3m.serve import ServeConfig, create_app
    >>> app = create_app(ServeConfig(model="selfie-cf"))   # then: uvicorn.run(app)
"""

from __future__ import annotations

from p3m.serve.app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
