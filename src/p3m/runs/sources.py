"""A cheap fingerprint of an item's source file, so that a replaced input is not kept.

Each journal record of an item with a source stores, under "input", the source's resolved path,
its size in bytes and its modification time in ns (one `stat`, no hashing: runs reach millions
of files). On resume, an item whose outputs exist but whose source no longer matches its
record's fingerprint (another picture saved over it, a file of the same name from another
folder) is redone (`p3m.runs.run_items`). A record without a fingerprint (journalled before
fingerprints were) is trusted, as it was then.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Any

__all__ = ["FINGERPRINT_FIELDS", "SourceResolver", "fingerprint_changed", "source_fingerprint"]

FINGERPRINT_FIELDS = ("path", "bytes", "mtime_ns")
"""The keys of a record's "input": resolved path (str), size (bytes), modification time (ns)."""


class SourceResolver:
    """Resolves source paths with one `realpath` per folder (millions of files share a few
    folders) plus one `lstat` per file: a symlinked file is resolved on its own."""

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}

    def fingerprint(self, path: str | os.PathLike[str]) -> dict[str, Any] | None:
        """{"path", "bytes", "mtime_ns"} of the file at `path`, or None when it cannot be read
        (missing: the item fails on its own)."""
        given = os.path.abspath(path)
        try:
            status = os.lstat(given)
            if stat.S_ISLNK(status.st_mode):
                resolved = os.path.realpath(given)
                status = os.stat(resolved)
            else:
                folder, name = os.path.split(given)
                real = self._folders.get(folder)
                if real is None:
                    real = self._folders[folder] = os.path.realpath(folder)
                resolved = os.path.join(real, name)
        except OSError:
            return None
        return {"path": resolved, "bytes": int(status.st_size), "mtime_ns": int(status.st_mtime_ns)}


def source_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The fingerprint of one file (see the module doc), None when it cannot be read."""
    return SourceResolver().fingerprint(path)


def fingerprint_changed(recorded: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> bool:
    """True when a record's fingerprint `recorded` exists and the source's fingerprint `now`
    differs from it (another path, size or time). No recorded fingerprint (an older journal) or
    an unreadable source: False (trusted, as before fingerprints)."""
    if not isinstance(recorded, Mapping) or now is None:
        return False
    return any(recorded.get(name) != now.get(name) for name in FINGERPRINT_FIELDS)
