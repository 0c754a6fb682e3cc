"""What a run records about each item: its status, outputs, time, error and the task's details.

One `ItemRecord` per item is a line of the run's journal (`p3m.runs.journal`) and an entry of
the run's report (`p3m.runs.engine.RunReport`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DONE", "FAILED", "KEPT", "ItemRecord"]

DONE = "done"
"""The item was processed and its outputs written."""
KEPT = "kept"
"""The item was done by an earlier run (its outputs exist) and was not recomputed."""
FAILED = "failed"
"""The item could not be processed; `ItemRecord.error` says why in one line."""


@dataclass
class ItemRecord:
    """The journal's record of one item: status, outputs, time taken, error, task details.

    `attachments` travel with the record to the driver (its events and report, also from a Ray
    worker) but are never journalled: what a run needs at its end and no later run does (e.g. a
    review thumbnail), too big for a journal line.
    `input`: the fingerprint of the item's source when its outputs were made (resolved path,
    size, modification time; `p3m.runs.sources`), None when not known (no source, an older
    journal): a kept item whose source no longer matches it is redone.
    """

    key: str
    status: str
    source: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] | None = None
    attachments: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the journal line, without `attachments`); `from_json` reads it back."""
        data: dict[str, Any] = {"key": self.key, "status": self.status}
        if self.source is not None:
            data["source"] = self.source
        if self.input is not None:
            data["input"] = dict(self.input)
        if self.outputs:
            data["outputs"] = dict(self.outputs)
        data["seconds"] = round(float(self.seconds), 4)
        if self.error is not None:
            data["error"] = self.error
        if self.details:
            data["details"] = self.details
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ItemRecord:
        return cls(
            key=str(data["key"]),
            status=str(data["status"]),
            source=data.get("source"),
            outputs={str(k): str(v) for k, v in (data.get("outputs") or {}).items()},
            seconds=float(data.get("seconds", 0.0)),
            error=data.get("error"),
            details=dict(data.get("details") or {}),
            input=dict(data["input"]) if isinstance(data.get("input"), Mapping) else None,
        )
