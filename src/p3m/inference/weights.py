"""Deprecated home of the weights cache, kept importable for one release: use `p3m.models.hub`.

The cache and index moved to `p3m.models.hub`, the transfer (`download_file`, `sha256_of`,
`google_drive_id`) to `p3m.models.transfer`, so that the model layer no longer reaches up into
inference for its own weights.
"""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    from p3m.models import hub, transfer

    for module in (transfer, hub):
        if hasattr(module, name):
            warnings.warn(
                f"p3m.inference.weights.{name} moved to {module.__name__}; import it from there",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(module, name)
    raise AttributeError(f"module 'p3m.inference.weights' has no attribute {name!r}")
