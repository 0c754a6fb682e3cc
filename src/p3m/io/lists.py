"""Lists of input files: text, CSV or Parquet, for runs whose inputs do not fit a folder.

    >>> read_path_list("inputs.txt")        # one path per line; '#' comments, blank lines skipped
    >>> read_path_list("inputs.csv")        # the "path" column (or "image", "file", ...), else the first
    >>> read_path_list("inputs.parquet")    # the same columns, read with pyarrow

Relative paths are taken relative to the list's own folder (so a list travels with its
images). Paths are not checked here: on a shared file system a listing of millions of files
would cost a round trip each; a file that is missing fails alone when its item runs. Storage
URLs (`s3://...`) are refused: mount the storage and list the mounted paths.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from p3m.errors import DatasetError, MissingDependencyError

__all__ = ["PATH_COLUMNS", "read_path_list"]

PATH_COLUMNS: tuple[str, ...] = ("path", "image", "file", "filename", "filepath", "image_path")
"""Column names (any case) taken as the path column of a CSV or Parquet list."""

_PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_SUFFIXES = (".csv", ".tsv")


def _path_column(names: list[str]) -> int | None:
    lowered = [name.strip().lower() for name in names]
    for wanted in PATH_COLUMNS:
        if wanted in lowered:
            return lowered.index(wanted)
    return None


def _from_text(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _from_csv(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        sample = handle.read(65536)
        handle.seek(0)
        delimiter = "\t" if path.suffix.lower() == ".tsv" or ("\t" in sample and "," not in sample) else ","
        rows = [row for row in csv.reader(handle, delimiter=delimiter) if any(cell.strip() for cell in row)]
    if not rows:
        return []
    column = _path_column(rows[0])
    if column is not None:
        rows = rows[1:]  # a header row
    else:
        column = 0
    return [row[column].strip() for row in rows if len(row) > column and row[column].strip()]


def _from_parquet(path: Path) -> list[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise MissingDependencyError(
            'reading a Parquet list needs pyarrow: pip install "p3m[scale]"', path
        ) from error
    try:
        schema = pq.read_schema(path)
    except Exception as error:  # pyarrow raises its own error types for a bad file
        raise DatasetError(f"not a readable Parquet file ({error})", path) from error
    names = list(schema.names)
    column = _path_column(names)
    if column is None:
        strings = [name for name in names if str(schema.field(name).type) in ("string", "large_string")]
        if len(strings) != 1:
            raise DatasetError(
                f"no path column: name one {'/'.join(PATH_COLUMNS)} (columns: {', '.join(names)})", path
            )
        name = strings[0]
    else:
        name = names[column]
    values = pq.read_table(path, columns=[name]).column(name).to_pylist()
    return [str(value).strip() for value in values if value is not None and str(value).strip()]


def read_path_list(path: str | os.PathLike[str]) -> list[Path]:
    """The files a list names, in its order (see the module doc for the formats).

    Raises DatasetError when the list is missing, unreadable, has no path column or names a
    URL; MissingDependencyError for Parquet without pyarrow.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError("input list not found" if not path.exists() else "input list is not a file", path)
    suffix = path.suffix.lower()
    try:
        if suffix in _PARQUET_SUFFIXES:
            entries = _from_parquet(path)
        elif suffix in _CSV_SUFFIXES:
            entries = _from_csv(path)
        else:
            entries = _from_text(path)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"cannot read the input list: {error}", path) from error
    base = path.parent
    paths = []
    for number, entry in enumerate(entries, start=1):
        if "://" in entry:
            raise DatasetError(
                f"entry {number} is a URL ({entry}); mount the storage and list file paths", path
            )
        listed = Path(entry).expanduser()
        paths.append(listed if listed.is_absolute() else base / listed)
    return paths
