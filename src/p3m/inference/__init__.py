"""Inference: the official P3M-Net strategies, the offline selfie-cf pipeline, foreground
colours and composites, and `p3m.matte` on top of them (weights: `p3m.models.hub`).

Submodules are imported on first use, so `import p3m.inference` stays cheap.

    >>> from p3m.inference import matte
    >>> result = matte("portrait.jpg")
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "matte": "p3m.inference.api",
    "Matter": "p3m.inference.api",
    "MatteResult": "p3m.inference.api",
    "ResizeInfo": "p3m.inference.api",
    "MATTE_MAX_PIXELS": "p3m.inference.api",
    "predict_alpha_p3mnet": "p3m.inference.strategies",
    "predict_p3mnet": "p3m.inference.strategies",
    "P3MNetPrediction": "p3m.inference.strategies",
    "matte_selfie_cf": "p3m.inference.selfie_cf",
    "SelfieCFConfig": "p3m.inference.selfie_cf",
    "watch_matte": "p3m.inference.watch",
    "run_selfie_cf": "p3m.inference.selfie_cf",
    "SelfieCFResult": "p3m.inference.selfie_cf",
    "solve_closed_form": "p3m.inference.closed_form",
    "estimate_foreground": "p3m.inference.foreground",
    "cutout_rgba": "p3m.inference.foreground",
    "composite": "p3m.inference.foreground",
    "resolve_weights": "p3m.models.hub",
    "MattingBackend": "p3m.inference.backends",
    "BackendOutput": "p3m.inference.backends",
    "SelfieCFBackend": "p3m.inference.backends",
    "P3MNetBackend": "p3m.inference.backends",
    "resolve_backend": "p3m.inference.backends",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'p3m.inference' has no attribute {name!r}")
