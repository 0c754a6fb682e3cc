"""The run journal: one JSON line per finished item, the record of what a folder run has done.

A line is appended (and flushed to disk) only after the item's outputs are complete, so after a
crash or Ctrl-C the journal never claims more than exists. A torn last line (the process died
while writing it) is ignored when the journal is read. At the end of a run the journal is
compacted atomically to one line per item (`Journal.rewrite`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from p3m.errors import ImageWriteError
from p3m.io.atomic import atomic_write_text
from p3m.runs.records import ItemRecord

__all__ = ["JOURNAL_NAME", "Journal", "read_journal"]

logger = logging.getLogger(__name__)

JOURNAL_NAME = "manifest.jsonl"
"""The usual file name of a run's journal, in the run's output folder."""


class Journal:
    """An append-only JSON-lines file of `ItemRecord`s; the last record of a key wins."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def read(self) -> dict[str, ItemRecord]:
        """The latest record of every key ({} when the file does not exist)."""
        records: dict[str, ItemRecord] = {}
        if not self.path.is_file():
            return records
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as error:
            logger.warning("%s: unreadable run journal (%s), starting afresh", self.path, error)
            return records
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = ItemRecord.from_json(json.loads(line))
            except (ValueError, TypeError, KeyError):
                logger.warning("%s:%d: unreadable journal line ignored", self.path, number)
                continue
            records[record.key] = record
        return records

    def append(self, record: ItemRecord) -> None:
        """Append one record and flush it to disk."""
        self.append_many([record])

    def append_many(self, records: Iterable[ItemRecord]) -> None:
        """Append records with one write and one flush to disk (a group commit: a disk syncs a
        few hundred times a second, a run of many workers finishes more items than that)."""
        line = "".join(
            json.dumps(record.to_json(), ensure_ascii=False, allow_nan=False) + "\n" for record in records
        )
        if not line:
            return
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as handle:
                    handle.write(line)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as error:
                raise ImageWriteError(
                    f"cannot write the run journal: {error.strerror or error}", self.path
                ) from error

    def rewrite(self, records: Iterable[ItemRecord]) -> None:
        """Replace the journal atomically with `records` (one line each)."""
        lines = [
            json.dumps(record.to_json(), ensure_ascii=False, allow_nan=False) + "\n"
            for record in records
        ]
        with self._lock:
            atomic_write_text(self.path, "".join(lines))


def read_journal(path: str | os.PathLike[str]) -> dict[str, ItemRecord]:
    """The latest record of every key in the journal at `path` ({} if there is none)."""
    return Journal(path).read()
