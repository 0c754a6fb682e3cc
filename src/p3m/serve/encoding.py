"""Turning library results into what HTTP carries: PNG data URLs, JSON values, header text.

Nothing of the upload but its pixels reaches a response: PNGs are encoded by `p3m.io.encode_png`
(no EXIF, ICC profile or text chunks), and JSON values come from the result's own fields.
`jsonable` serialises any result generically (`to_dict()` where an object has one, dataclass
fields otherwise, arrays left out: they travel as images), so fields the library adds later
reach clients without a change here.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import math
import unicodedata
from collections.abc import Mapping
from os import PathLike
from typing import Any

import numpy as np

__all__ = ["data_url", "header_text", "jsonable", "result_notes"]

_OMIT = object()

# Characters p3m's messages use that have no ASCII decomposition.
_ASCII_FOLD = str.maketrans(
    {
        "\u2014": "-",
        "\u2013": "-",
        "\u2212": "-",
        "\u00d7": "x",
        "\u2026": "...",
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2248": "~",
        "\u00b5": "u",
        "\u00b7": "-",
        "\u2192": "->",
        "\u03b1": "alpha",
    }
)


def data_url(png: bytes) -> str:
    """`data:image/png;base64,...` for PNG bytes (the JSON answers' image fields)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def header_text(text: str, limit: int = 2000) -> str:
    """`text` as one line of printable ASCII (HTTP header values are Latin-1 without newlines)."""
    folded = unicodedata.normalize("NFKD", str(text).translate(_ASCII_FOLD))
    ascii_text = folded.encode("ascii", "ignore").decode("ascii")
    line = " ".join(ascii_text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def result_notes(result: Any) -> list[str]:
    """The notes a result carries (`note`, `notes`), in order, without repeats."""
    notes: list[str] = []
    for name in ("note", "notes"):
        value = getattr(result, name, None)
        if isinstance(value, str):
            value = [value]
        for note in value or ():
            if note and str(note) not in notes:
                notes.append(str(note))
    return notes


def jsonable(value: Any) -> Any:
    """A JSON-ready copy of `value`: primitives, lists and dicts; numpy arrays are left out.

    Objects with a `to_dict()` method are serialised by it (p3m's records: `Face`,
    `AuditResult`, ...); other dataclasses field by field; non-finite floats become None.
    """
    result = _convert(value)
    return None if result is _OMIT else result


def _convert(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return _OMIT  # pixels travel as PNGs, not as JSON numbers
    if isinstance(value, np.generic):
        return _convert(value.item())
    if isinstance(value, enum.Enum):
        return _convert(value.value)
    if isinstance(value, PathLike):
        return str(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, type):
        return _convert(to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _convert({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, Mapping):
        items = ((str(key), _convert(item)) for key, item in value.items())
        return {key: item for key, item in items if item is not _OMIT}
    if isinstance(value, list | tuple | set | frozenset):
        items = (_convert(item) for item in value)
        return [item for item in items if item is not _OMIT]
    return str(value)
