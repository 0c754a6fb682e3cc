"""Deprecated home of the copy-and-paste operation, kept importable for one release: use `p3m.training.copy_paste.operation`.

P3M-CP (operation, sources, ICP/FCP hooks) is one package now, `p3m.training.copy_paste`;
`p3m.privacy` is the obfuscation recipe.
"""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    from p3m.training.copy_paste import operation

    warnings.warn(
        f"p3m.privacy.copy_paste.{name} moved to p3m.training.copy_paste.operation; import it from there",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(operation, name)
