"""Deprecated home of `TestSet`, kept importable for one release: use `p3m.vocabulary`."""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    import p3m.vocabulary as vocabulary

    warnings.warn(
        f"p3m.data.sets.{name} moved to p3m.vocabulary; import it from there",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(vocabulary, name)
