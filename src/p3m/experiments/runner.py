"""What every study shares: cells run on the folder-run engine, their files, resume, the summary.

A study's table is made of **cells**: one method (a checkpoint, an obfuscation of the input, a
baseline solver) on one group of images (a test set, or the blurred / normal version of one).
Each cell is one run of `p3m.runs` in its own folder under the study's output folder::

    OUT/<row>/<group>/predictions/<name>.png   8-bit alpha, as the official saver writes it
    OUT/<row>/<group>/metrics.csv              per-image metrics (the columns of `p3m eval`)
    OUT/<row>/<group>/metrics.json             the cell's `MetricsRecord` (`p3m table` reads it)
    OUT/<row>/<group>/manifest.jsonl           the run's journal (status, metrics, errors per image)
    OUT/<row>/<group>/settings.json            what the results depend on (model, checkpoint, ...)

**Resume.** An image whose prediction exists is kept, its metrics taken from the journal (or
computed again from the prediction when the journal lost them, e.g. after a crash between the
two), so an interrupted study continues where it stopped. When a cell's `settings.json` differs
from what is asked now (another checkpoint file, strategy, obfuscation strength), or `fresh` is
set, the cell is computed again (`CellReset` says so) in a hidden sibling folder
(`.<group>.p3m-new`) that replaces the cell's folder only once it is complete: a run that is
interrupted, raises, or evaluates no image leaves the earlier results as they were (an
interrupted replacement with the same settings is continued by the next run). A model is
loaded only for cells that have images left to predict.

Scores are computed exactly as `p3m eval` computes them (the official eval.py convention) and
averaged as eval.py does (`accumulate="eval_py"`), so the numbers do not depend on run order,
interruptions or resumption.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p3m.data.layout import Sample
from p3m.errors import DatasetError, ExperimentError, P3MError
from p3m.evaluation.folder import FolderEvaluation, ImageTask, evaluate_image, write_csv
from p3m.evaluation.metrics import DISPLAY_NAMES, summarize
from p3m.evaluation.record import SkippedFile
from p3m.evaluation.tables import Cell, Column, ResultTable, format_metric, mark_best
from p3m.experiments.events import (
    CellProgress,
    CellReset,
    StudyEvent,
    StudyFinished,
    StudyResumed,
    StudyStarted,
)
from p3m.io import atomic_write_text
from p3m.runs import Item, Journal, Outcome, RunOptions, RunStarted, Task, run_items

__all__ = [
    "CELL_FILES",
    "NOTHING_WRITTEN",
    "TABLE_METRICS",
    "CellEvents",
    "CellResult",
    "CellSpec",
    "Group",
    "ModelCache",
    "StudyResult",
    "cell_notes",
    "check_metrics",
    "file_identity",
    "find_test_samples",
    "grouped_table",
    "identify_model",
    "load_model",
    "parse_named_paths",
    "commit_run_dir",
    "prepare_run_dir",
    "report_resumed",
    "run_cells",
    "stage_run_dir",
    "with_normal_images",
    "write_study",
]

logger = logging.getLogger(__name__)

CELL_FILES = {
    "predictions": "predictions",
    "csv": "metrics.csv",
    "record": "metrics.json",
    "journal": "manifest.jsonl",
    "settings": "settings.json",
}
"""The files of a cell's folder (see the module docstring)."""

STUDY_FORMAT = "p3m-experiment/1"

NOTHING_WRITTEN = "No image could be evaluated: nothing was written; results already in {out_dir} are left as they were."
"""The table note of a study run that computed nothing (its files are not written)."""

TABLE_METRICS: tuple[str, ...] = ("sad", "mse", "mad")
"""The columns the studies' tables show by default (every metric is in the per-image CSVs)."""


# --------------------------------------------------------------------------- small helpers


def check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    """Metric keys for a table's columns (sad, mse, mad, sad_t, ...); ExperimentError otherwise."""
    keys = tuple(dict.fromkeys(key.strip().lower() for key in metrics if key.strip()))
    unknown = [key for key in keys if key not in DISPLAY_NAMES]
    if unknown or not keys:
        raise ExperimentError(
            f"unknown metric(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(DISPLAY_NAMES)}"
        )
    return keys


def file_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What identifies a file for resuming: its resolved path, size and modification time.

    Raises ExperimentError naming the file when it does not exist.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ExperimentError("no such file" if not file.exists() else "is not a file", file)
    stat = file.stat()
    return {"path": str(file.resolve()), "bytes": stat.st_size, "modified_ns": stat.st_mtime_ns}


def parse_named_paths(values: Iterable[str], allowed: Sequence[str], what: str) -> dict[str, Path]:
    """`KEY=PATH` entries (repeatable and/or comma-separated) -> {key: path}, in `allowed` order.

    Raises ExperimentError for an entry without "=", a key not in `allowed`, a key given twice
    or a path that is not a file.
    """
    found: dict[str, Path] = {}
    for value in values:
        for entry in (part.strip() for part in value.split(",")):
            if not entry:
                continue
            key, sep, path = entry.partition("=")
            key = key.strip().lower()
            if not sep or not path.strip():
                raise ExperimentError(f"{what}: expected KEY=PATH, got {entry!r} (keys: {', '.join(allowed)})")
            if key not in allowed:
                raise ExperimentError(f"{what}: unknown key {key!r} (keys: {', '.join(allowed)})")
            if key in found:
                raise ExperimentError(f"{what}: {key} is given twice")
            file = Path(path.strip()).expanduser()
            if not file.is_file():
                raise ExperimentError(f"{what} {key}: no such file", file)
            found[key] = file
    if not found:
        raise ExperimentError(f"{what}: give at least one KEY=PATH (keys: {', '.join(allowed)})")
    return {key: found[key] for key in allowed if key in found}


def distinct_path_labels(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """For each path, its shortest tail of path parts that no other path in `paths` ends with:
    `runs/bb/best.pth` and `runs/nn/best.pth` -> `bb/best.pth`, `nn/best.pth`; distinct file names
    stay bare. Table footers name checkpoints this way (a bare `best.pth` twice says nothing)."""
    parts = [Path(path).parts for path in paths]
    labels = []
    for own in parts:
        for depth in range(1, len(own) + 1):
            tail = own[-depth:]
            if all(other == own or other[-depth:] != tail for other in parts):
                break
        labels.append(str(Path(*tail)) if tail else "")
    return labels


def checkpoint_note(strategy: str, checkpoints: Mapping[str, str | os.PathLike[str]]) -> str:
    """The footer line "<strategy> test strategy; checkpoints: key=file, ..." of a study table."""
    labels = distinct_path_labels(list(checkpoints.values()))
    return f"{strategy} test strategy; checkpoints: " + ", ".join(
        f"{key}={label}" for key, label in zip(checkpoints, labels, strict=True)
    ) + "."


def _normalised(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as they read back from JSON (tuples become lists, paths strings)."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))


class ResetReason(str):
    """Why earlier results are computed again, as text ("made with other settings
    (changed_threshold, obfuscations)"), with what a surface needs to word it in its own terms:
    `settings`, the keys of the settings that changed, and `fresh`, set when it was asked for."""

    settings: tuple[str, ...] = ()
    fresh: bool = False

    @classmethod
    def of(cls, text: str, settings: Sequence[str] = (), fresh: bool = False) -> ResetReason:
        reason = cls(text)
        reason.settings, reason.fresh = tuple(settings), fresh
        return reason


def _discard_reason(
    run_dir: Path, wanted: Mapping[str, Any], fresh: bool, discard: Sequence[str]
) -> ResetReason | None:
    """Why the results in `run_dir` (the names in `discard`) cannot be reused for `wanted`
    (normalised settings), or None when they can or there are none."""
    if not any((run_dir / name).exists() for name in discard):
        return None
    settings_file = run_dir / CELL_FILES["settings"]
    if fresh:
        return ResetReason.of("computed afresh (fresh=True)", fresh=True)
    if not settings_file.is_file():
        return ResetReason.of("results without a settings.json")
    try:
        old = json.loads(settings_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict):
        return ResetReason.of("its settings.json is unreadable")
    if old != wanted:
        changed = _differences(old, wanted)
        return ResetReason.of(f"made with other settings ({', '.join(changed)})", changed)
    return None


def prepare_run_dir(
    run_dir: Path,
    settings: Mapping[str, Any],
    fresh: bool,
    discard: Sequence[str],
) -> str | None:
    """Make `run_dir` ready for results computed with `settings`; returns why earlier results
    were discarded (None when they are kept or there were none).

    Earlier results (the names in `discard`, files or folders under `run_dir`) are removed when
    `fresh` is set or `run_dir/settings.json` records other settings; then the new settings are
    written. Raises ExperimentError when `run_dir` is a file. (A study's cells discard nothing
    before their new results are complete: see `_run_cell`.)
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ExperimentError("is not a folder", run_dir)
    wanted = _normalised(settings)
    reason = _discard_reason(run_dir, wanted, fresh, discard)
    if reason is not None:
        for path in (run_dir / name for name in discard):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CELL_FILES["settings"], json.dumps(wanted, indent=2, sort_keys=True) + "\n")
    return reason


STAGING = ".p3m-new"
"""Suffix of the hidden sibling a cell's results are computed in when they replace earlier ones."""

RETIRED = ".p3m-old"
"""Suffix of the hidden sibling a cell's earlier results are moved to while the new ones move in."""


def _sibling(folder: Path, suffix: str) -> Path:
    return folder.with_name(f".{folder.name}{suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


SET_ASIDE = ".p3m-set-aside"
"""Marker in the retired sibling: every earlier result of an entry-by-entry swap is in it."""


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _move_entries(staging: Path, folder: Path, retired: Path, names: Sequence[str]) -> None:
    """Move the earlier results (`names` in `folder`) into `retired`, then those in `staging`
    into `folder`, each step a rename; run again after a stop, it carries on where it stopped
    (the marker `SET_ASIDE` tells the two phases apart)."""
    marker = retired / SET_ASIDE
    if not marker.exists():
        for name in names:
            if _exists(folder / name) and not _exists(retired / name):
                os.replace(folder / name, retired / name)
        marker.touch()
    for name in names:
        if _exists(staging / name):
            os.replace(staging / name, folder / name)


def _finish_swap(folder: Path, names: Sequence[str]) -> None:
    """Complete a swap of `folder` stopped part-way (`_swap_in`): a staging folder is moved in
    only when complete, so one beside a set-aside (retired) sibling is complete."""
    staging, retired = _sibling(folder, STAGING), _sibling(folder, RETIRED)
    if not retired.exists():
        return
    if staging.is_dir() and not folder.exists():
        os.replace(staging, folder)  # stopped between the two renames of a whole-folder swap
    elif staging.is_dir():
        _move_entries(staging, folder, retired, names)  # stopped in an entry-by-entry swap
        _remove(staging)
    _remove(retired)


def _staging_folder(folder: Path, wanted: Mapping[str, Any], fresh: bool) -> Path:
    """The hidden sibling of `folder` that results replacing earlier ones are computed into: the
    one an interrupted run left is continued when it was made with the same settings (and
    `fresh` is not set), otherwise started empty."""
    staging = _sibling(folder, STAGING)
    settings_file = staging / CELL_FILES["settings"]
    if staging.exists():
        try:
            same = not fresh and json.loads(settings_file.read_text(encoding="utf-8")) == wanted
        except (OSError, ValueError):
            same = False
        if not same:
            _remove(staging)
    staging.mkdir(parents=True, exist_ok=True)
    atomic_write_text(settings_file, json.dumps(wanted, indent=2, sort_keys=True) + "\n")
    return staging


def _swap_in(staging: Path, folder: Path, names: Sequence[str]) -> None:
    """Replace the results in `folder` (`names`) by the complete ones in `staging`. A folder that
    holds nothing else is replaced whole: two renames on one file system, the old folder removed
    after; otherwise entry by entry, the other entries left alone. A stop part-way is completed
    by `_finish_swap`. The journal's output paths are rewritten to name `folder` first."""
    journal = Journal(staging / CELL_FILES["journal"])
    records = list(journal.read().values())
    if records:
        prefix = str(staging)
        for record in records:
            record.outputs = {
                kind: str(folder) + path[len(prefix) :] if path.startswith(prefix) else path
                for kind, path in record.outputs.items()
            }
        journal.rewrite(records)
    retired = _sibling(folder, RETIRED)
    _remove(retired)
    if all(entry.name in names for entry in folder.iterdir()):
        os.replace(folder, retired)
        os.replace(staging, folder)
    else:
        retired.mkdir()
        _move_entries(staging, folder, retired, names)
        _remove(staging)
    _remove(retired)


def stage_run_dir(
    run_dir: Path,
    settings: Mapping[str, Any],
    fresh: bool,
    results: Sequence[str],
) -> tuple[Path, ResetReason | None]:
    """Where to compute results with `settings` for `run_dir`, and why the earlier ones there
    are replaced (None when they are kept, resumed, or there are none).

    `results`: the names of the results under `run_dir` (files or folders, `settings.json`
    aside). When `fresh` is set or `run_dir/settings.json` records other settings, the new
    results are computed in a hidden sibling (`.<name>.p3m-new`, continued after an interruption
    when its settings are the same and `fresh` is not set) and `commit_run_dir` moves them in
    once complete: until then `run_dir` keeps its earlier results, whatever happens to the run.
    Otherwise the folder itself is returned. Raises ExperimentError when `run_dir` is a file.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ExperimentError("is not a folder", run_dir)
    names = [*results, CELL_FILES["settings"]]
    _finish_swap(run_dir, names)
    wanted = _normalised(settings)
    reason = _discard_reason(run_dir, wanted, fresh, results)
    if reason is None:
        _remove(_sibling(run_dir, STAGING))  # an interrupted replacement nobody asks for any more
        prepare_run_dir(run_dir, settings, False, [])
        return run_dir, None
    return _staging_folder(run_dir, wanted, fresh), reason


def commit_run_dir(work: Path, run_dir: Path, results: Sequence[str], complete: bool = True) -> None:
    """End a run computed in `work` (`stage_run_dir`): when `work` is the staging folder, its
    results replace those of `run_dir` if `complete`, else it is removed (the earlier results
    stay). Nothing to do when `work` is `run_dir`."""
    if work == run_dir:
        return
    if complete:
        _swap_in(work, run_dir, [*results, CELL_FILES["settings"]])
    else:
        _remove(work)


class ModelCache:
    """Loads P3M-Net checkpoints for cells, one model in memory at a time (they weigh 100-400 MB).

    `get(model, checkpoint)` returns (registered name, module in eval mode on `device`); `model`
    None identifies the variant from the checkpoint's keys. Errors are `CheckpointError` /
    `ModelNotFoundError` naming the file (a wrong checkpoint stops the study: every image of the
    cell would fail the same way).
    """

    def __init__(self, device: str | None = None) -> None:
        self.device = device
        self._key: tuple[str | None, str] | None = None
        self._value: tuple[str, Any] | None = None

    def get(self, model: str | None, checkpoint: Path) -> tuple[str, Any]:
        key = (model, str(Path(checkpoint).resolve()))
        if self._key != key or self._value is None:
            self._value = None  # let the previous model go before the next one is built
            self._value = load_model(model, checkpoint, self.device)
            self._key = key
        return self._value


def identify_model(checkpoint: Path) -> str:
    """The registered variant a checkpoint holds (from its keys); CheckpointError if unknown."""
    from p3m.errors import CheckpointError
    from p3m.models import identify_variant, list_models, read_state_dict

    variant = identify_variant(read_state_dict(checkpoint))
    if variant is None or variant not in list_models():
        raise CheckpointError(
            "cannot tell which P3M-Net variant this checkpoint is; name it with {model}",
            checkpoint,
            options={"model": "NAME"},
        )
    return variant


def load_model(model: str | None, checkpoint: Path, device: str | None = None) -> tuple[str, Any]:
    """(name, the registered model `name` with the checkpoint's weights, eval mode, on `device`)."""
    from p3m.models import create_model

    name = model or identify_model(checkpoint)
    return name, create_model(name, weights=checkpoint, device=device)


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class CellSpec:
    """One cell of a study's table: `row` (a method) on `group` (a set of images).

    `samples` are the images (their `image` may point to a transformed source, e.g. the normal
    version); `make_task(predictions_dir)` builds the `p3m.runs.Task` that writes
    `predictions_dir/<name>.png` and reports the image's metrics in its outcome's details
    ("metrics"), called only when images are left to predict; `settings` is everything the
    results depend on (compared with the folder's settings.json to decide whether they can be
    reused); `record` are the `MetricsRecord` fields of the cell's metrics.json (method, model,
    set_name, protocol, checkpoint, extra, ...); `label` names the cell in progress and errors.
    """

    row: str
    group: str
    samples: tuple[Sample, ...]
    make_task: Callable[[Path], Task[Any, Any]]
    settings: Mapping[str, Any]
    record: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def key(self) -> str:
        """The cell's folder, relative to the study's: `<row>/<group>`."""
        return f"{self.row}/{self.group}"

    @property
    def name(self) -> str:
        return self.label or self.key


@dataclass
class CellResult:
    """A finished cell: its spec, folder, the evaluation (rows by name, skipped, summary) and
    each image's outcome details (metrics and whatever else the task reported)."""

    spec: CellSpec
    folder: Path
    evaluation: FolderEvaluation
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    kept: int = 0
    """Images whose results came from an earlier run in the cell's folder (not computed again)."""

    @property
    def means(self) -> dict[str, float]:
        return dict(self.evaluation.summary.means)

    @property
    def skipped(self) -> list[SkippedFile]:
        return list(self.evaluation.skipped)


class _NothingLeft:
    """The task of a cell whose images are all done: never called (every item is kept)."""

    def load(self, item: Item) -> None:
        raise AssertionError(f"{item.key}: nothing is left to compute")

    def compute(self, item: Item, loaded: None) -> None:
        raise AssertionError(item.key)

    def write(self, item: Item, result: None) -> Outcome:
        raise AssertionError(item.key)


class CellEvents:
    """The `on_event` of a cell's run: forwards each event to a study's `emit` as a
    `CellProgress` of cell `cell` (`index` of `count`) and notes in `kept` how many items the
    run kept from an earlier one (`p3m.runs.RunStarted.kept`)."""

    def __init__(self, emit: Callable[[StudyEvent], None], cell: str, index: int, count: int) -> None:
        self.emit, self.cell, self.index, self.count = emit, cell, index, count
        self.kept = 0

    def __call__(self, event: Any) -> None:
        if isinstance(event, RunStarted):
            self.kept = event.kept
        self.emit(CellProgress(self.cell, self.index, self.count, event))


def report_resumed(
    study: str, kept: int, total: int, unit: str, out_dir: Path, emit: Callable[[StudyEvent], None]
) -> None:
    """Emit `StudyResumed` (and log it) when `kept` of `total` `unit` came from an earlier run."""
    if kept:
        event = StudyResumed(study, kept, total, unit, str(out_dir))
        logger.info("%s: %s", study, event.message)
        emit(event)


def _single_folder(paths: Iterable[Path | None]) -> Path | None:
    folders = {Path(path).parent for path in paths if path is not None}
    return next(iter(folders)) if len(folders) == 1 else None


def _rescore(item: Item) -> dict[str, float]:
    """Metrics of a kept prediction whose journal line was lost, read as `p3m eval` reads them."""
    sample: Sample = item.payload
    task = ImageTask(sample.name, Path(item.outputs["alpha"]), Path(sample.alpha), sample.trimap)
    return evaluate_image(task)


def _run_cell(
    spec: CellSpec,
    folder: Path,
    fresh: bool,
    emit: Callable[[StudyEvent], None],
    index: int,
    count: int,
) -> CellResult:
    results = [name for kind, name in CELL_FILES.items() if kind != "settings"]
    work, reason = stage_run_dir(folder, spec.settings, fresh, results)
    if reason is not None:
        # The earlier results stay where they are until the new ones are complete.
        logger.info("%s: earlier results replaced once computed again: %s", spec.name, reason)
        emit(CellReset(spec.name, reason, reason.settings, reason.fresh))
    predictions = work / CELL_FILES["predictions"]
    predictions.mkdir(parents=True, exist_ok=True)
    items = [
        Item(sample.name, Path(sample.image), {"alpha": predictions / f"{sample.name}.png"}, sample)
        for sample in spec.samples
    ]
    pending = any(not item.outputs_exist() for item in items)
    task: Task[Any, Any] = spec.make_task(predictions) if pending else _NothingLeft()
    forward = CellEvents(emit, spec.name, index, count)
    report = run_items(
        items, task, journal=work / CELL_FILES["journal"], options=RunOptions(resume=True), on_event=forward
    )
    rows: list[tuple[str, dict[str, float]]] = []
    skipped: list[SkippedFile] = []
    details: dict[str, dict[str, Any]] = {}
    for item, record in zip(items, report.records, strict=True):
        if record.failed:
            skipped.append(SkippedFile(record.key, record.error or "could not be evaluated"))
            continue
        metrics = record.details.get("metrics")
        if not isinstance(metrics, Mapping):
            try:
                metrics = _rescore(item)
            except P3MError as error:
                skipped.append(SkippedFile(record.key, str(error)))
                continue
        rows.append((record.key, {key: float(value) for key, value in metrics.items()}))
        details[record.key] = dict(record.details)
    rows.sort(key=lambda row: row[0])
    skipped.sort(key=lambda item: item.name)
    final_predictions = folder / CELL_FILES["predictions"]
    evaluation = FolderEvaluation(
        rows=rows,
        skipped=skipped,
        summary=summarize([values for _, values in rows], [name for name, _ in rows], accumulate="eval_py"),
        pred_dir=final_predictions,
        gt_dir=_single_folder(sample.alpha for sample in spec.samples) or final_predictions,
        trimap_dir=_single_folder(sample.trimap for sample in spec.samples),
    )
    if work != folder:
        if rows:
            write_csv(work / CELL_FILES["csv"], evaluation)
            evaluation.record(**spec.record).write(work / CELL_FILES["record"])
        # Nothing could be evaluated: the earlier results stay, the failed attempt goes.
        commit_run_dir(work, folder, results, complete=bool(rows))
    elif rows or not (folder / CELL_FILES["record"]).is_file():
        # A cell where nothing could be evaluated leaves the files of an earlier run alone.
        write_csv(folder / CELL_FILES["csv"], evaluation)
        evaluation.record(**spec.record).write(folder / CELL_FILES["record"])
    return CellResult(spec, folder, evaluation, details, forward.kept)


def run_cells(
    study: str,
    cells: Sequence[CellSpec],
    out_dir: Path,
    *,
    fresh: bool = False,
    on_event: Callable[[StudyEvent], None] | None = None,
) -> list[CellResult]:
    """Run every cell (in order) into `out_dir/<row>/<group>/`; see the module docstring.

    Emits `StudyStarted`, per cell `CellReset` (when earlier results are discarded) and
    `CellProgress`, `StudyResumed` when cells kept results of an earlier run, and finally
    `StudyFinished`. Images that fail are recorded in their cell
    (`CellResult.skipped`) and the study goes on; errors of a whole cell (a wrong checkpoint, a
    missing dependency) and KeyboardInterrupt stop it, after the finished images are journalled.
    """
    emit = on_event or (lambda event: None)
    keys = [cell.key for cell in cells]
    if len(set(keys)) != len(keys):
        raise ExperimentError(f"two cells share a folder: {keys}")
    out_dir.mkdir(parents=True, exist_ok=True)
    emit(StudyStarted(study, tuple(cell.name for cell in cells), sum(len(cell.samples) for cell in cells)))
    results = []
    for index, cell in enumerate(cells):
        results.append(_run_cell(cell, out_dir / cell.row / cell.group, fresh, emit, index, len(cells)))
    report_resumed(study, sum(1 for result in results if result.kept), len(results), "cells", out_dir, emit)
    emit(StudyFinished(study, sum(len(result.skipped) for result in results)))
    return results


def find_test_samples(data_root: Path, set_name: str, limit: int | None = None) -> list[Sample]:
    """The samples of a test set under `data_root` (first `limit` by name); DatasetError if none."""
    from p3m.data.layout import find_samples

    samples = find_samples(data_root, set_name)
    if not samples:
        raise DatasetError(f"{set_name} has no samples", data_root)
    return samples[:limit] if limit is not None else samples


def with_normal_images(samples: Sequence[Sample], normal_images: Path, set_name: str) -> list[Sample]:
    """`samples` with each image replaced by its normal (unobfuscated) version from
    `normal_images`, matched by stem; DatasetError listing the images that have none."""
    import dataclasses

    from p3m.io import files_by_stem

    normal = files_by_stem(normal_images)
    missing = [sample.name for sample in samples if sample.name not in normal]
    if missing:
        shown = ", ".join(missing[:3]) + (f", ... ({len(missing)} in all)" if len(missing) > 3 else "")
        raise DatasetError(
            f"{len(missing)} of the {len(samples)} {set_name} images have no normal version here ({shown})",
            normal_images,
        )
    return [dataclasses.replace(sample, image=normal[sample.name]) for sample in samples]


# --------------------------------------------------------------------------- tables and files


@dataclass(frozen=True)
class Group:
    """A column group of a study's table: the cells' `group` key and its label."""

    key: str
    label: str


def grouped_table(
    title: str,
    lead: Sequence[Column],
    rows: Sequence[tuple[Sequence[Cell], Mapping[str, Mapping[str, float]]]],
    groups: Sequence[Group],
    metrics: Sequence[str],
    notes: Sequence[str] = (),
) -> ResultTable:
    """A table in the paper's layout: `lead` columns, then `metrics` under each group.

    Each row is its lead cells and its means by group key (a missing group or metric shows "–").
    In each metric column the lowest value at the displayed precision is bold (ties all bold; a
    column with one value none), as in the paper.
    """
    columns = list(lead) + [
        Column(key, DISPLAY_NAMES[key], group.label) for group in groups for key in metrics
    ]
    table_rows: list[list[Cell]] = []
    for lead_cells, means in rows:
        row = list(lead_cells)
        for group in groups:
            values = means.get(group.key) or {}
            for key in metrics:
                value = values.get(key)
                row.append(Cell(format_metric(value, key), value))
        table_rows.append(row)
    for index in range(len(lead), len(columns)):
        mark_best((row[index], columns[index].key) for row in table_rows)
    return ResultTable(title, columns, table_rows, list(notes))


def cell_notes(results: Sequence[CellResult]) -> list[str]:
    """Notes on skipped images and unequal image counts for a table's footer."""
    notes = []
    for result in results:
        if result.skipped:
            first = result.skipped[0]
            notes.append(
                f"{result.spec.name}: {len(result.skipped)} image(s) skipped (e.g. {first.name}: {first.reason})"
            )
    counts = {len(result.evaluation.rows) for result in results}
    if len(counts) > 1:
        notes.append(
            "cells were evaluated on different numbers of images: "
            + ", ".join(f"{result.spec.name} {len(result.evaluation.rows)}" for result in results)
        )
    return notes


@dataclass
class StudyResult:
    """A finished study: its table, cells and the files written (`markdown`, `csv`, `json`)."""

    study: str
    table: ResultTable
    cells: list[CellResult]
    files: dict[str, Path]
    summary: dict[str, Any]

    @property
    def failures(self) -> list[tuple[str, str]]:
        """(cell/image, reason) of every image that failed, in cell order."""
        return [
            (f"{result.spec.name}: {item.name}", item.reason) for result in self.cells for item in result.skipped
        ]


def _json_number(value: float) -> float | str:
    import math

    return value if math.isfinite(value) else str(value)


def _environment() -> dict[str, str]:
    import torch

    from p3m._version import __version__

    return {"p3m": __version__, "torch": torch.__version__}


def write_study(
    study: str,
    title: str,
    table: ResultTable,
    results: Sequence[CellResult],
    out_dir: Path,
    settings: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> StudyResult:
    """Write `<study>.md`, `<study>.csv` (the table) and `<study>.json` (settings, environment,
    every cell's means, counts, skipped images and files, relative to `out_dir`) atomically.

    A run in which no image could be evaluated (every one failed) writes nothing: the files of
    an earlier run in `out_dir` are left as they were, `StudyResult.files` is empty and the
    table says so in a note.
    """
    files = {kind: out_dir / f"{study}.{suffix}" for kind, suffix in (("markdown", "md"), ("csv", "csv"), ("json", "json"))}
    if not any(result.evaluation.rows for result in results):
        table.notes.append(NOTHING_WRITTEN.format(out_dir=out_dir))
        return StudyResult(study, table, list(results), {}, {})
    summary: dict[str, Any] = {
        "format": STUDY_FORMAT,
        "study": study,
        "title": title,
        "settings": _normalised(settings),
        "environment": _environment(),
        "table": {"markdown": files["markdown"].name, "csv": files["csv"].name},
        "cells": [
            {
                "row": result.spec.row,
                "group": result.spec.group,
                "label": result.spec.name,
                "method": result.spec.record.get("method"),
                "model": result.spec.record.get("model"),
                "set": result.spec.record.get("set_name"),
                "protocol": result.spec.record.get("protocol"),
                "num_images": len(result.evaluation.rows),
                "means": {key: _json_number(value) for key, value in result.evaluation.summary.means.items()},
                "counts": dict(result.evaluation.summary.counts),
                "skipped": [{"name": item.name, "reason": item.reason} for item in result.skipped],
                "files": {
                    kind: str((result.folder / name).relative_to(out_dir))
                    for kind, name in CELL_FILES.items()
                    if kind in ("predictions", "csv", "record")
                },
            }
            for result in results
        ],
        "notes": list(table.notes),
    }
    summary.update(_normalised(extra or {}))
    atomic_write_text(files["markdown"], table.to_markdown())
    atomic_write_text(files["csv"], table.to_csv())
    atomic_write_text(files["json"], json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return StudyResult(study, table, list(results), files, summary)
