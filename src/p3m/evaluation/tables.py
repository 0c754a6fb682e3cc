"""The paper's result tables from per-set summaries, as Markdown and CSV.

Inputs are the metrics.json records p3m writes (`p3m.evaluation.record.MetricsRecord`):
`p3m eval --json`, `p3m evaluate-model --out` and `p3m baseline`. Each gives the means of one
method on one test set; the method and set names are read from the record (`label`, `set`) and
can be given or overridden on the command line as `METHOD[@SET][@PROTOCOL]=FILE`.

* `results_table`: the paper's main layout. Rows are methods, column groups are the test sets
  (P3M-500-P, P3M-500-NP, RWP-636), each with SAD, MSE, MAD, SAD-T, MSE-T, MAD-T, Grad, Conn.
* `protocol_table`: the privacy-preserving training protocols. One row per method and protocol:
  B:B (trained on the face-blurred P3M-10k, tested on P3M-500-P), B:N (blurred training, tested on
  the normal P3M-500-NP) and N:N (normal training images, tested on P3M-500-NP).

Numbers are on the official reporting scale (metrics README section 5): no extra scale factors,
SAD in units of 1000 alpha-units, MSE and MAD as plain fractions, Grad / 10, Conn / 1000. The
Markdown shows SAD-like values with 2 decimals and MSE/MAD with 4 (as the paper); the CSV keeps
full precision. In each numeric column the best (lowest) value, compared at the displayed
precision, is in bold; ties are all bold; a column with a single value has no bold.

Example::

    entries = [load_result("cf/metrics.json"), load_result("runs/r34.json", method="P3M-Net")]
    print(results_table(entries).to_markdown())
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from p3m.errors import DatasetError
from p3m.evaluation.metrics import DISPLAY_NAMES
from p3m.evaluation.record import MetricsRecord
from p3m.vocabulary import Protocol, TestSet, values

__all__ = [
    "MISSING",
    "PROTOCOLS",
    "SET_NAMES",
    "TABLE_METRICS",
    "Cell",
    "Column",
    "ResultEntry",
    "ResultTable",
    "format_metric",
    "load_result",
    "mark_best",
    "parse_result_spec",
    "protocol_table",
    "results_table",
]

TABLE_METRICS: tuple[str, ...] = ("sad", "mse", "mad", "sad_t", "mse_t", "mad_t", "grad", "conn")
"""The paper's columns, in order."""

MISSING = "–"
"""What a table shows for a missing value (the CSV leaves the cell empty)."""

SET_NAMES: tuple[str, ...] = values(TestSet)
SET_LABELS: Mapping[str, str] = {test_set.value: test_set.label for test_set in TestSet}

PROTOCOLS: Mapping[str, tuple[str, str]] = {
    protocol.value: (protocol.training.description, protocol.test_set.value) for protocol in Protocol
}
"""Protocol -> (training images, test set)."""

DIGITS: Mapping[str, int] = {
    "sad": 2, "mse": 4, "mad": 4, "sad_t": 2, "mse_t": 4, "mad_t": 4,
    "sad_fg": 2, "sad_bg": 2, "grad": 2, "conn": 2,
}  # fmt: skip


def canonical_set(name: str) -> str | None:
    """'P3M-500-P', 'P3M-500-NP' or 'RWP' for any accepted spelling; None if not a set name."""
    test_set = TestSet.parse(name)
    return None if test_set is None else test_set.value


def canonical_protocol(name: str) -> str | None:
    """'B:B', 'B:N' or 'N:N' for any accepted spelling (b:n, BN, B2N); None otherwise."""
    protocol = Protocol.parse(name)
    return None if protocol is None else protocol.value


# --------------------------------------------------------------------------- loading results


@dataclass(frozen=True)
class ResultEntry:
    """The means of one method on one test set (optionally under a training protocol)."""

    method: str
    set_name: str | None
    means: Mapping[str, float]
    protocol: str | None = None
    num_images: int | None = None
    notes: tuple[str, ...] = ()
    source: Path | None = None


def _set_from_paths(record: MetricsRecord) -> str | None:
    """The test set named by a folder in the record's paths (`.../P3M-500-NP/mask`), if any."""
    for value in (record.gt_dir, record.pred_dir, record.trimap_dir):
        if not value:
            continue
        for part in (value, *reversed(Path(value).parts)):
            found = canonical_set(part)
            if found:
                return found
    return None


def load_result(
    path: str | os.PathLike[str],
    method: str | None = None,
    set_name: str | None = None,
    protocol: str | None = None,
) -> ResultEntry:
    """Read one metrics.json (a `p3m.evaluation.record.MetricsRecord`); `method`, `set_name`
    and `protocol` override what the file says.

    Without a set name in the file or the arguments (a `p3m eval --json` summary), the set is
    recognised from the folder names in its paths (a `.../P3M-500-P/mask` ground-truth folder);
    the method falls back to the name of the prediction folder.
    """
    path = Path(path)
    record = MetricsRecord.read(path)
    if set_name is not None:
        resolved_set = canonical_set(set_name)
        if resolved_set is None:
            raise DatasetError(f"unknown test set {set_name!r} (use {', '.join(SET_LABELS.values())})", path)
    else:
        resolved_set = (canonical_set(record.set_name) if record.set_name else None) or _set_from_paths(record)
    resolved_protocol = None
    given_protocol = protocol if protocol is not None else record.protocol
    if given_protocol:
        resolved_protocol = canonical_protocol(given_protocol)
        if resolved_protocol is None:
            raise DatasetError(f"unknown protocol {given_protocol!r} (use B:B, B:N or N:N)", path)
    if resolved_set is None and resolved_protocol is not None:
        resolved_set = PROTOCOLS[resolved_protocol][1]
    name = method or record.label
    if not name:
        name = Path(record.pred_dir).name if record.pred_dir else path.stem
    return ResultEntry(
        method=str(name),
        set_name=resolved_set,
        means=record.means,
        protocol=resolved_protocol,
        num_images=record.num_images or None,
        notes=record.notes(),
        source=path,
    )


def parse_result_spec(spec: str) -> ResultEntry:
    """`FILE` or `LABEL=FILE` with LABEL = `METHOD[@SET][@PROTOCOL]` (e.g. `P3M-Net@B:N=bn.json`).

    Each @-field after the method is recognised by its value (a set name or B:B/B:N/N:N); the
    method may be empty (`@P3M-500-P=x.json`) to keep the file's.
    """
    if "=" not in spec or Path(spec).is_file():
        return load_result(spec)
    label, file_name = spec.split("=", 1)
    method, *fields = label.split("@")
    set_name = protocol = None
    for value in fields:
        if canonical_set(value):
            set_name = value
        elif canonical_protocol(value):
            protocol = value
        else:
            raise DatasetError(
                f"{value!r} in {label!r} is neither a test set ({', '.join(SET_LABELS.values())}) "
                "nor a protocol (B:B, B:N, N:N)"
            )
    return load_result(file_name, method=method or None, set_name=set_name, protocol=protocol)


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Column:
    """A table column: a metric key (or '' for a text column), its label and its group."""

    key: str
    label: str
    group: str = ""


@dataclass
class Cell:
    """A cell's text, numeric value (None for text cells or missing numbers) and bold flag."""

    text: str
    value: float | None = None
    bold: bool = False


@dataclass
class ResultTable:
    """A rendered-ready table: columns, rows of cells, and notes printed below it."""

    title: str
    columns: list[Column]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        """GitHub Markdown: a group header row when columns are grouped, then metric labels."""
        grouped = any(column.group for column in self.columns)
        align = ["---" if not column.key else "---:" for column in self.columns]
        lines = [f"**{self.title}**", ""] if self.title else []
        if grouped:
            header, previous = [], None
            for column in self.columns:
                header.append(column.group if column.group and column.group != previous else "")
                previous = column.group
            lines.append(_md_row(header))
            lines.append(_md_row(align))
            lines.append(_md_row([column.label for column in self.columns]))
        else:
            lines.append(_md_row([column.label for column in self.columns]))
            lines.append(_md_row(align))
        for row in self.rows:
            lines.append(_md_row([f"**{cell.text}**" if cell.bold else cell.text for cell in row]))
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """One header row (`group/label`), full-precision numbers, empty cells for missing values
        (a number without a value, or a text cell showing "–")."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            [f"{column.group}/{column.label}" if column.group else column.label for column in self.columns]
        )
        for row in self.rows:
            writer.writerow(
                [
                    (cell.text if cell.text != MISSING else "")
                    if not column.key
                    else ""
                    if cell.value is None
                    else repr(cell.value)
                    for column, cell in zip(self.columns, row, strict=True)
                ]
            )
        return buffer.getvalue()


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _format(value: float | None, key: str) -> str:
    if value is None:
        return MISSING
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{DIGITS.get(key, 4)}f}"


def _mark_best(cells: Iterable[tuple[Cell, str]]) -> None:
    """Bold the lowest finite value(s) at the displayed precision, if there are at least two."""
    candidates = [
        (round(cell.value, DIGITS.get(key, 4)), cell)
        for cell, key in cells
        if cell.value is not None and math.isfinite(cell.value)
    ]
    if len(candidates) < 2:
        return
    best = min(value for value, _ in candidates)
    for value, cell in candidates:
        cell.bold = value == best


def format_metric(value: float | None, key: str) -> str:
    """A mean as the paper prints it: 2 decimals for SAD-like keys, 4 for MSE/MAD; "–" if None."""
    return _format(value, key)


def mark_best(cells: Iterable[tuple[Cell, str]]) -> None:
    """Bold the lowest finite value(s) of a column, (cell, metric key) pairs, at the displayed
    precision, when there are at least two values (ties are all bold)."""
    _mark_best(cells)


def _check_metrics(metrics: Sequence[str]) -> list[str]:
    unknown = [key for key in metrics if key not in DIGITS]
    if unknown:
        raise DatasetError(f"unknown metric(s) {unknown}; choose from {list(DIGITS)}")
    return list(metrics)


def _index(entries: Iterable[ResultEntry], key_of: str) -> dict[tuple[str, str], ResultEntry]:
    table: dict[tuple[str, str], ResultEntry] = {}
    for entry in entries:
        group = entry.set_name if key_of == "set" else entry.protocol
        if group is None:
            continue
        key = (entry.method, group)
        if key in table:
            raise DatasetError(
                f"two results for {entry.method} on {group}: {table[key].source} and {entry.source}; "
                "rename one with METHOD=FILE (or evaluate with `p3m evaluate-model --label`)"
            )
        table[key] = entry
    return table


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _scale_note() -> str:
    return (
        "Official scale: SAD/SAD-T in 1000s of alpha units, MSE/MAD as fractions (not x1000), "
        "Grad / 10, Conn / 1000; MSE-T/MAD-T over the trimap's unknown pixels; lower is better, "
        "best in bold."
    )


def _entry_notes(entries: Iterable[ResultEntry], where: str) -> list[str]:
    return [f"{entry.method} on {where}: {'; '.join(entry.notes)}" for entry in entries if entry.notes]


def results_table(
    entries: Sequence[ResultEntry],
    metrics: Sequence[str] = TABLE_METRICS,
    sets: Sequence[str] | None = None,
    title: str = "",
) -> ResultTable:
    """The paper's main table: rows = methods (in the given order), groups = test sets.

    `sets` defaults to the sets present, in the paper's order. Entries without a known set
    raise DatasetError (name them with METHOD@SET=FILE).
    """
    metrics = _check_metrics(metrics)
    for entry in entries:
        if entry.set_name is None:
            raise DatasetError(
                f"cannot tell which test set {entry.method} was evaluated on; "
                "name it as METHOD@P3M-500-P=FILE (or @P3M-500-NP, @RWP)",
                entry.source,
            )
    by_key = _index(entries, "set")
    present = {entry.set_name for entry in entries}
    chosen = [name for name in SET_NAMES if name in present] if sets is None else [
        canonical_set(name) or name for name in sets
    ]
    methods = _unique(entry.method for entry in entries)
    columns = [Column("", "Method")] + [
        Column(key, DISPLAY_NAMES[key], SET_LABELS.get(set_name, set_name))
        for set_name in chosen
        for key in metrics
    ]
    rows: list[list[Cell]] = []
    for method in methods:
        row = [Cell(method)]
        for set_name in chosen:
            entry = by_key.get((method, set_name))
            for key in metrics:
                value = None if entry is None else entry.means.get(key)
                row.append(Cell(_format(value, key), value))
        rows.append(row)
    for index in range(1, len(columns)):
        _mark_best((row[index], columns[index].key) for row in rows)
    notes = [_scale_note()]
    for set_name in chosen:
        counts = {e.num_images for (m, s), e in by_key.items() if s == set_name and e.num_images is not None}
        if len(counts) > 1:
            notes.append(
                f"{SET_LABELS.get(set_name, set_name)}: methods were evaluated on different numbers "
                f"of images ({', '.join(str(c) for c in sorted(counts))})"
            )
        notes += _entry_notes(
            (e for (m, s), e in by_key.items() if s == set_name), SET_LABELS.get(set_name, set_name)
        )
    return ResultTable(title, columns, rows, notes)


def protocol_table(
    entries: Sequence[ResultEntry],
    metrics: Sequence[str] = TABLE_METRICS,
    title: str = "",
) -> ResultTable:
    """The training-protocol table: one row per method and protocol (B:B, B:N, N:N).

    Columns: method, protocol, training images, test set, then the metrics. Only entries tagged
    with a protocol are used (the others are named in a note: a record without training images,
    such as a `p3m baseline` one, fits no row); the best value per column is marked among the
    rows of the same protocol (the best method under that protocol). A tagged entry evaluated on
    a set other than the protocol's test set raises DatasetError.
    """
    metrics = _check_metrics(metrics)
    tagged = [entry for entry in entries if entry.protocol is not None]
    if not tagged:
        raise DatasetError("no result is tagged with a protocol; name them as METHOD@B:B=FILE (B:B, B:N, N:N)")
    for entry in tagged:
        expected = PROTOCOLS[entry.protocol][1]  # type: ignore[index]
        if entry.set_name is not None and entry.set_name != expected:
            raise DatasetError(
                f"{entry.method} tagged {entry.protocol} was evaluated on {entry.set_name}, but "
                f"{entry.protocol} tests on {expected}",
                entry.source,
            )
    by_key = _index(tagged, "protocol")
    columns = [Column("", "Method"), Column("", "Protocol"), Column("", "Training"), Column("", "Test")]
    columns += [Column(key, DISPLAY_NAMES[key]) for key in metrics]
    rows: list[list[Cell]] = []
    row_protocols: list[str] = []
    for method in _unique(entry.method for entry in tagged):
        for protocol, (training, test_set) in PROTOCOLS.items():
            entry = by_key.get((method, protocol))
            if entry is None:
                continue
            row = [Cell(method), Cell(protocol), Cell(training), Cell(test_set)]
            row += [Cell(_format(entry.means.get(key), key), entry.means.get(key)) for key in metrics]
            rows.append(row)
            row_protocols.append(protocol)
    for protocol in PROTOCOLS:
        same = [row for row, tag in zip(rows, row_protocols, strict=True) if tag == protocol]
        for index in range(4, len(columns)):
            _mark_best((row[index], columns[index].key) for row in same)
    notes = [_scale_note().replace("best in bold", "best per protocol in bold")]
    untagged = [entry for entry in entries if entry.protocol is None]
    if untagged:
        names = ", ".join(
            f"{entry.method} ({entry.set_name})" if entry.set_name else entry.method for entry in untagged
        )
        notes.append(
            f"left out, no training protocol: {names}; a protocol row needs the training images "
            "(name a result as METHOD@B:B=FILE, or @B:N, @N:N)"
        )
    notes += [
        f"{entry.method} ({protocol}): {'; '.join(entry.notes)}"
        for (_, protocol), entry in by_key.items()
        if entry.notes
    ]
    return ResultTable(title, columns, rows, notes)
