"""p3m: privacy-preserving portrait matting (P3M-Net, the P3M-10k recipe, PPT and evaluation).

The top-level names are imported lazily so that `import p3m` stays cheap:
`p3m.matte`, `p3m.anonymize`, `p3m.create_model`, and for video (`p3m[video]`)
`p3m.matte_video`, `p3m.iter_matte_video`, `p3m.anonymize_video`.
"""

from __future__ import annotations

from typing import Any

from p3m._version import __version__
from p3m.errors import P3MError

_LAZY = {
    "matte": ("p3m.inference", "matte"),
    "MatteResult": ("p3m.inference", "MatteResult"),
    "anonymize": ("p3m.privacy", "anonymize"),
    "AnonymizeResult": ("p3m.privacy", "AnonymizeResult"),
    "create_model": ("p3m.models", "create_model"),
    "matte_video": ("p3m.video.matte", "matte_video"),
    "iter_matte_video": ("p3m.video.matte", "iter_matte_video"),
    "anonymize_video": ("p3m.video.anonymize", "anonymize_video"),
}

__all__ = ["P3MError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        return getattr(importlib.import_module(module_name), attribute)
    raise AttributeError(f"module 'p3m' has no attribute {name!r}")
