"""Deprecated home of model-on-test-set evaluation, kept importable for one release.

`evaluate_on_set`, `SetEvaluation` and `FAST_METRICS` moved to `p3m.evaluation.model`,
`training_protocol` to `p3m.training.config`, and `table_protocol` is `p3m.vocabulary.Protocol.of`.
"""

from __future__ import annotations

import warnings
from typing import Any

_MOVED = {
    "evaluate_on_set": "p3m.evaluation.model",
    "SetEvaluation": "p3m.evaluation.model",
    "FAST_METRICS": "p3m.evaluation.model",
    "training_protocol": "p3m.training.config",
}


def table_protocol(training: str | None, set_name: str) -> str | None:
    """Deprecated: `p3m.vocabulary.Protocol.of(training, set_name)` ('B:B', 'B:N', 'N:N' or None)."""
    from p3m.vocabulary import Protocol

    warnings.warn(
        "p3m.training.validation.table_protocol is p3m.vocabulary.Protocol.of now", DeprecationWarning, stacklevel=2
    )
    protocol = Protocol.of(training, set_name)
    return None if protocol is None else protocol.value


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        warnings.warn(
            f"p3m.training.validation.{name} moved to {_MOVED[name]}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'p3m.training.validation' has no attribute {name!r}")
