"""Which settings made each output file: the provenance a run journal keeps per output.

A task that records the settings shaping its outputs puts them in its record's details as
"settings", and the files it wrote this time as "written" (paths relative to the journal's
folder; without "written", every output of the record counts as written). The engine
(`p3m.runs.run_items`) then stores `details["output_settings"]`: for each output file, keyed by
its path relative to the journal's folder (posix), the settings that made it (the string
"settings" when they are the record's own "settings", as they are for the files it wrote). Files of the
item that this run did not write but an earlier run did (a kind left as it was, another
container of a video, the kinds of an `--overwrite` run that asked for fewer) keep the
settings their earlier record gave them, as long as they exist; a failed item keeps them too.

So a later run can tell, per file, whether its settings made it (`settings_of_outputs`), and
a kept file is never credited to settings that did not make it.

Journals written before "output_settings" existed stay readable: such a record's "settings"
apply to the outputs it lists; a record without "settings" at all says nothing (None).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from p3m.runs.records import FAILED, KEPT, ItemRecord

__all__ = ["OUTPUT_SETTINGS", "SETTINGS", "carry_provenance", "output_key", "settings_of_outputs", "stored_output_key"]

SETTINGS = "settings"
"""The details key of the settings a run used for an item (a JSON object)."""
OUTPUT_SETTINGS = "output_settings"
"""The details key of the per-file provenance: {path relative to the journal folder: settings}."""
SAME = "settings"
"""An `OUTPUT_SETTINGS` value: the file was made with the record's own `SETTINGS`."""
WRITTEN = "written"


def output_key(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> str:
    """`path` relative to the journal's `folder`, posix (the key of `OUTPUT_SETTINGS`)."""
    absolute, base = os.path.abspath(path), os.path.join(os.path.abspath(folder), "")
    if absolute.startswith(base):  # the usual case, without relpath's cost (millions of files)
        relative = absolute[len(base):]
    else:
        relative = os.path.relpath(absolute, base)
    return relative.replace(os.sep, "/")


def stored_output_key(stored: str, folder: Path) -> str:
    """The key of an output path as an older record stored it (absolute, or relative to the
    directory that run was started in): the longest tail of it that exists in `folder`."""
    path = Path(stored)
    if path.is_absolute():
        return output_key(path, folder)
    parts = path.parts
    for start in range(len(parts)):
        tail = Path(*parts[start:])
        if (folder / tail).exists():
            return tail.as_posix()
    return path.name


def settings_of_outputs(
    record: ItemRecord | None,
    folder: str | os.PathLike[str],
    legacy: Callable[[ItemRecord], Mapping[str, Any] | None] | None = None,
) -> dict[str, dict[str, Any]] | None:
    """{output key: the settings that made that file} as `record` says (see the module doc).

    {} for no record (nothing is known about the item's files); None for a record that does not
    record settings (journalled before settings were, or by a task that records none), unless
    `legacy(record)` reads them from what such a record says."""
    if record is None:
        return {}
    details = record.details or {}
    per_file = details.get(OUTPUT_SETTINGS)
    if isinstance(per_file, Mapping):
        own = details.get(SETTINGS)
        return {
            str(key): dict(own if made == SAME and isinstance(own, Mapping) else made)
            for key, made in per_file.items()
            if isinstance(made, Mapping) or (made == SAME and isinstance(own, Mapping))
        }  # fmt: skip
    made = details.get(SETTINGS)
    if not isinstance(made, Mapping) and legacy is not None:
        made = legacy(record)
    if not isinstance(made, Mapping):
        return None
    folder = Path(folder)
    return {stored_output_key(path, folder): dict(made) for path in record.outputs.values()}


def carry_provenance(
    record: ItemRecord, previous: ItemRecord | None, folder: str | os.PathLike[str]
) -> ItemRecord:
    """`record` with `details["output_settings"]`: this run's settings for the files it wrote,
    the earlier record's for the item's other files that still exist (see the module doc).

    A kept record is returned as it is (the earlier record stays); so is a record of a task
    that records no settings and an item with no earlier provenance."""
    if record.status == KEPT:
        return record
    folder = Path(folder)
    details = record.details or {}
    settings = details.get(SETTINGS)
    provenance: dict[str, dict[str, Any]] = {}
    written: set[str] = set()
    if isinstance(settings, Mapping) and record.status != FAILED:
        listed = details.get(WRITTEN)
        if isinstance(listed, list):
            written = {_written_key(str(name), record, folder) for name in listed}
        else:
            written = {output_key(path, folder) for path in record.outputs.values()}
        provenance = {key: dict(settings) for key in written}
    earlier = settings_of_outputs(previous, folder) or {}
    carried = {
        key: made for key, made in earlier.items() if key not in written and (folder / key).exists()
    }
    if not provenance and not carried:
        return record
    merged = {**carried, **provenance}
    if isinstance(settings, Mapping):  # the record's own settings once, not once per file
        merged = {key: SAME if made == settings else made for key, made in merged.items()}
    record.details = {**details, OUTPUT_SETTINGS: merged}
    return record


def _written_key(name: str, record: ItemRecord, folder: Path) -> str:
    """A "written" entry as a key: tasks list paths relative to the journal folder; a bare
    name that is one of the record's outputs is placed by that output."""
    for path in record.outputs.values():
        if Path(path).name == name and "/" not in name:
            return output_key(path, folder)
    return Path(name).as_posix()


def keys_of(paths: Iterable[str | os.PathLike[str]], folder: str | os.PathLike[str]) -> list[str]:
    """`output_key` of each path."""
    return [output_key(path, folder) for path in paths]
