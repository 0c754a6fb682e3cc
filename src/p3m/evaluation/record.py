"""`metrics.json`: the one record of a method's scores on a set, written and read by every command.

`p3m eval --json` (a folder of predictions), `p3m baseline` (a trimap-based baseline) and
`p3m evaluate-model` (a model on a test set) all write a `MetricsRecord`; `p3m table` reads them
back with `MetricsRecord.read`. The fields say what was evaluated (method, model, test set,
protocol, strategy, checkpoint, folders), how (the official input convention and accumulation),
the means with their counts and exclusions, and what was skipped and why. What only one writer
knows (a baseline's solver, budget and trimaps) goes into `extra`, kept at the top level of the
JSON under its own keys.

Strict JSON: non-finite means are written as the strings "nan" / "inf" and read back as floats.
Files written before the record existed (no "format" key) are read too: their "model" names the
method, "num_images" counts the images, "failed" lists the images left out.

    >>> record = MetricsRecord.read("results/cf/metrics.json")
    >>> record.label, record.set_name, record.means["sad"]
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p3m.errors import DatasetError, ImageWriteError
from p3m.io.atomic import atomic_open

__all__ = ["CONVENTION", "FORMAT", "MetricsRecord", "SkippedFile"]

FORMAT = "p3m-metrics"
VERSION = 1
CONVENTION = "p3mnet_eval_py: prediction and gt = uint8 PNG / 255 (float32); trimap raw 0..255"
"""The input convention of every p3m score: the official eval.py's (`p3m.evaluation.folder`)."""


@dataclass(frozen=True)
class SkippedFile:
    """An image left out of an evaluation, and why (one line naming the file and the problem)."""

    name: str
    reason: str


# JSON keys of the record's own fields, in the order they are written; `extra` may not use them.
_IDENTITY = (
    ("method", "method"),
    ("method_label", "method_label"),
    ("model", "model"),
    ("set", "set_name"),
    ("protocol", "protocol"),
    ("training_protocol", "training_protocol"),
    ("strategy", "strategy"),
    ("checkpoint", "checkpoint"),
    ("pred_dir", "pred_dir"),
    ("gt_dir", "gt_dir"),
    ("trimap_dir", "trimap_dir"),
)
_OWN_KEYS = frozenset(
    {"format", "version", "convention", "accumulate", "metric_keys", "num_evaluated", "num_images",
     "num_skipped", "means", "counts", "excluded_nonfinite", "skipped", "per_image"}
    | {key for key, _ in _IDENTITY}
)  # fmt: skip


def _json_number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _number(value: object) -> float | None:
    """A mean from JSON: numbers, and "nan" / "inf" strings (strict JSON's non-finite spelling)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass
class MetricsRecord:
    """The scores of one method on one set of images, and what they were computed from.

    `means` (metric key -> mean, official scale; non-finite values possible), `counts` (images
    per mean), `excluded_nonfinite` (images left out of a mean, by metric), `num_images` (images
    evaluated), `skipped` (images that could not be evaluated). `method` is the short name
    (a baseline's `cf`, a model's name), `method_label` the name in tables; `set_name` a
    `p3m.vocabulary.TestSet` value, `protocol` a `Protocol` value (B:B, B:N, N:N) and
    `training_protocol` the training images (B / N) when known. `per_image` holds each image's
    metrics when the writer keeps them; `extra` the writer's own fields.
    """

    means: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)
    excluded_nonfinite: dict[str, list[str]] = field(default_factory=dict)
    num_images: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    method: str | None = None
    method_label: str | None = None
    model: str | None = None
    set_name: str | None = None
    protocol: str | None = None
    training_protocol: str | None = None
    strategy: str | None = None
    checkpoint: str | None = None
    pred_dir: str | None = None
    gt_dir: str | None = None
    trimap_dir: str | None = None
    convention: str = CONVENTION
    accumulate: str = "eval_py"
    metric_keys: list[str] = field(default_factory=list)
    per_image: dict[str, dict[str, float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = _OWN_KEYS & set(self.extra)
        if clash:
            raise ValueError(f"extra fields may not use the record's own keys: {sorted(clash)}")

    @classmethod
    def from_summary(cls, summary: Any, **fields: Any) -> MetricsRecord:
        """A record from a `p3m.evaluation.metrics.MetricSummary` and the other fields."""
        from p3m.evaluation.metrics import METRIC_KEYS

        fields.setdefault("metric_keys", list(METRIC_KEYS))
        return cls(
            means=dict(summary.means),
            counts=dict(summary.counts),
            excluded_nonfinite={key: list(names) for key, names in summary.excluded.items()},
            num_images=int(summary.num_images),
            **fields,
        )

    @property
    def label(self) -> str | None:
        """The method's name in a table: its label, else its short name, else the model's."""
        return self.method_label or self.method or self.model

    def notes(self) -> tuple[str, ...]:
        """Caveats a table should print beside these numbers (generated trimaps, budget, skips)."""
        notes: list[str] = []
        trimaps = self.extra.get("trimaps")
        if isinstance(trimaps, Mapping) and trimaps.get("source") == "generated":
            notes.append(
                "trimaps generated from the ground truth with gen_trimap_with_dilate "
                f"(kernel {trimaps.get('kernel_size')})"
            )
        budget = self.extra.get("budget")
        if isinstance(budget, Mapping) and budget.get("num_resized"):
            notes.append(
                f"{budget.get('num_resized')} image(s) solved at <= {budget.get('max_pixels'):,} pixels "
                "then upsampled, known trimap regions re-imposed"
            )
        if self.skipped:
            notes.append(f"{len(self.skipped)} image(s) skipped")
        return tuple(notes)

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        """The JSON object of metrics.json (identity fields that are None are left out)."""
        data: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        for key, attribute in _IDENTITY:
            value = getattr(self, attribute)
            if value is not None:
                data[key] = value
        data.update(
            {
                "convention": self.convention,
                "accumulate": self.accumulate,
                "metric_keys": list(self.metric_keys),
                "num_evaluated": self.num_images,
                "num_images": self.num_images,
                "num_skipped": len(self.skipped),
                "means": {key: _json_number(value) for key, value in self.means.items()},
                "counts": dict(self.counts),
                "excluded_nonfinite": {key: list(names) for key, names in self.excluded_nonfinite.items()},
                "skipped": [{"name": item.name, "reason": item.reason} for item in self.skipped],
            }
        )
        data.update(self.extra)
        if self.per_image is not None:
            data["per_image"] = {
                name: {key: _json_number(value) for key, value in values.items()}
                for name, values in self.per_image.items()
            }
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str | os.PathLike[str] | None = None) -> MetricsRecord:
        """Read a record (or a file written before the record existed); DatasetError if it has no means."""
        if not isinstance(data, Mapping) or not isinstance(data.get("means"), Mapping):
            raise DatasetError(
                "no 'means' in this file; expected a p3m eval / evaluate-model / baseline summary", source
            )
        means = {str(key).lower(): _number(value) for key, value in data["means"].items()}
        fields: dict[str, Any] = {attribute: _text(data.get(key)) for key, attribute in _IDENTITY}
        count = data.get("num_evaluated", data.get("num_images"))
        skipped = [
            SkippedFile(str(item.get("name", "")), str(item.get("reason", "")))
            for item in data.get("skipped") or []
            if isinstance(item, Mapping)
        ]
        if not skipped and isinstance(data.get("failed"), list):  # evaluate-model before the record
            skipped = [SkippedFile(str(name), "could not be evaluated") for name in data["failed"] if isinstance(name, str)]
        per_image = data.get("per_image")
        return cls(
            means={key: value for key, value in means.items() if value is not None},
            counts={str(k): int(v) for k, v in (data.get("counts") or {}).items() if isinstance(v, int)},
            excluded_nonfinite={str(k): list(v) for k, v in (data.get("excluded_nonfinite") or {}).items()},
            num_images=count if isinstance(count, int) and not isinstance(count, bool) else 0,
            skipped=skipped,
            convention=_text(data.get("convention")) or CONVENTION,
            accumulate=_text(data.get("accumulate")) or "eval_py",
            metric_keys=[str(key) for key in data.get("metric_keys") or []],
            per_image=(
                {
                    str(name): {k: v for k, v in ((str(k), _number(v)) for k, v in values.items()) if v is not None}
                    for name, values in per_image.items()
                    if isinstance(values, Mapping)
                }
                if isinstance(per_image, Mapping)
                else None
            ),
            extra={key: value for key, value in data.items() if key not in _OWN_KEYS},
            **fields,
        )

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the record atomically as indented strict JSON."""
        text = json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n"
        with atomic_open(path, "w", encoding="utf-8", error_class=ImageWriteError) as handle:
            handle.write(text)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> MetricsRecord:
        """Read a metrics.json; DatasetError naming the file when it is missing or not a summary."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise DatasetError("result file not found", path) from error
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DatasetError(f"not a readable JSON summary ({error})", path) from error
        return cls.from_json(data, source=path)
