"""Atomic file writes: a temporary file in the destination folder, then `os.replace`.

A reader never sees a half-written file, and a failed write leaves the previous
file (if any) untouched and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO

from p3m.errors import ImageWriteError, P3MError

_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{12}\.tmp$")


def temporary_path(path: str | os.PathLike[str]) -> Path:
    """A hidden, unique, not yet existing path beside `path`, to write and then `os.replace`.

    For writers that need a file name (e.g. ONNX export) rather than a handle; the file they
    create gets the umask permissions, as with a plain open().
    """
    # Same folder, so that os.replace is a rename on one file system.
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str],
    mode: str = "wb",
    encoding: str | None = None,
    newline: str | None = None,
    error_class: type[P3MError] = ImageWriteError,
) -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; on success it replaces `path` atomically.

    Parent folders are created. Any exception inside the block removes the temporary file and
    leaves `path` as it was; OS errors are re-raised as `error_class` naming the file.
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_open writes only ('w', 'wb', 'wt'), got mode {mode!r}")
    target = Path(path)
    temporary = temporary_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # os.open with 0o666 lets the umask decide the permissions, as a plain open() would
        # (tempfile.mkstemp would leave every output at 0o600).
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        blocker = next((folder for folder in target.parents if folder.exists() and not folder.is_dir()), None)
        if blocker is not None:  # `--out afile`: say so, not "afile/x.png: File exists"
            raise error_class(f"is a file, not a folder, so {target} cannot be written in it", blocker) from error
        raise error_class(
            f"cannot create output file: {error.strerror or error}", target
        ) from error
    try:
        with os.fdopen(descriptor, mode, encoding=encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(error, OSError):
            raise error_class(f"cannot write: {error.strerror or error}", target) from error
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically (newlines written as given)."""
    with atomic_open(path, "w", encoding=encoding, newline="") as handle:
        handle.write(text)


def temporary_target(name: str) -> str | None:
    """The file name a temporary of `temporary_path` stands for (`.a.png.0123456789ab.tmp` ->
    `a.png`), or None when `name` is not such a temporary."""
    match = _TEMPORARY.match(name)
    return match.group("name") if match else None


def remove_stale_temporaries(folder: str | os.PathLike[str], names: Collection[str]) -> list[Path]:
    """Delete the temporaries left in `folder` by writes of the files `names` that never finished.

    A process killed while writing (SIGKILL, power loss, a lost cluster worker) cannot remove
    its temporary; a run calls this for its outputs' folders when no write of its own is in
    flight. Only temporaries of the given names are touched (one listing of the folder). Returns
    the files removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        target = temporary_target(entry.name)
        if target is not None and target in names:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def output_folder(path: str | os.PathLike[str]) -> Path:
    """Create the output folder `path` (and its parents) if needed and return it.

    Raises ImageWriteError naming the path, in one line, when it (or a parent) is a file or the
    folder cannot be created (permissions, read-only file system).
    """
    folder = Path(path)
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                raise ImageWriteError("is a file, not a folder: give a folder for the outputs", part)
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ImageWriteError(f"cannot create the output folder: {error.strerror or error}", folder) from error
    return folder
