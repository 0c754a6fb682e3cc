"""Deprecated home of P3M-CP's source sets, kept importable for one release: use `p3m.training.copy_paste.sources`.

P3M-CP (operation, sources, ICP/FCP hooks) is one package now, `p3m.training.copy_paste`;
`p3m.privacy` is the obfuscation recipe.
"""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    from p3m.training.copy_paste import sources

    warnings.warn(
        f"p3m.privacy.cp_sources.{name} moved to p3m.training.copy_paste.sources; import it from there",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(sources, name)
