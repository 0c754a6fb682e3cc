"""Deprecated home of face detection, kept importable for one release: use `p3m.detection`."""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    import p3m.detection as detection
    from p3m.detection import faces

    warnings.warn(
        f"p3m.privacy.detection.{name} moved to p3m.detection; import it from there",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(detection, name) if hasattr(detection, name) else getattr(faces, name)
