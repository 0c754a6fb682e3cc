"""Evaluate a folder of predicted alpha mattes against ground truths (the official eval.py recipe).

PNG files are matched by stem; predictions may carry a suffix (`<stem>_alpha.png`, what
`p3m matte` writes), detected or given as `pred_suffix`. Predictions and ground truths are read as 8-bit PNG / 255 in
float32 and trimaps as raw 0..255 values in float32, which is how the official P3M-Net
`eval.py` reads its inputs, so the per-image numbers are the official ones. Files that cannot
be evaluated (no ground truth, no prediction, no trimap, different sizes, unreadable) are
listed with a reason and skipped; the rest is evaluated. Images are spread over a process pool
by the folder-run engine (`p3m.runs`, `RunOptions(processes=...)`); every image is computed
independently and the results are sorted by name, so they do not depend on the number of
workers.

Example::

    evaluation = evaluate_folder("preds/", "gts/", trimap_dir="trimaps/")
    write_csv("metrics.csv", evaluation)
    write_json("summary.json", evaluation)      # a `p3m.evaluation.record.MetricsRecord`
    print(evaluation.summary.means["sad"])
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from p3m.errors import DatasetError, ImageWriteError, ShapeMismatchError
from p3m.evaluation.metrics import METRIC_KEYS, MetricSummary, compute_metrics, summarize
from p3m.evaluation.record import CONVENTION, MetricsRecord, SkippedFile
from p3m.io import atomic_open, files_by_stem, read_alpha_u8, read_trimap
from p3m.runs import Event, Item, ItemFinished, Outcome, RunOptions, run_items
from p3m.vocabulary import OutputKind

logger = logging.getLogger(__name__)

CSV_HEADER: tuple[str, ...] = ("name", *METRIC_KEYS)

MATTE_SUFFIX = f"_{OutputKind.alpha.value}"
"""The suffix of the alpha mattes `p3m matte` writes (`<stem>_alpha.png`)."""


@dataclass(frozen=True)
class ImageTask:
    """One image to evaluate: its name (the shared file stem) and its files."""

    name: str
    pred_path: Path
    gt_path: Path
    trimap_path: Path | None = None


@dataclass
class FolderEvaluation:
    """Per-image results (sorted by name), skipped files, and the summary over the results."""

    rows: list[tuple[str, dict[str, float]]]
    skipped: list[SkippedFile]
    summary: MetricSummary
    pred_dir: Path
    gt_dir: Path
    trimap_dir: Path | None = None
    accumulate: str = "eval_py"
    pred_suffix: str = ""

    def record(self, **fields: object) -> MetricsRecord:
        """The metrics.json record of this evaluation; `fields` add or override record fields."""
        values: dict[str, object] = {
            "skipped": list(self.skipped),
            "pred_dir": str(self.pred_dir),
            "gt_dir": str(self.gt_dir),
            "trimap_dir": None if self.trimap_dir is None else str(self.trimap_dir),
            "convention": CONVENTION,
            "accumulate": self.accumulate,
        }
        values.update(fields)
        return MetricsRecord.from_summary(self.summary, **values)

    def to_json_dict(self) -> dict[str, object]:
        """The JSON summary (`record().to_json()`): means, counts, exclusions, skipped files."""
        return self.record().to_json()


def _png_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.exists():
        raise DatasetError(f"{what} folder not found", folder)
    if not folder.is_dir():
        raise DatasetError(f"{what} path is not a folder", folder)
    return files_by_stem(folder, suffixes=(".png",))


def _strip_suffix(files: dict[str, Path], suffix: str) -> dict[str, Path]:
    """The files whose stem ends with `suffix`, by the stem without it."""
    if not suffix:
        return dict(files)
    return {stem[: -len(suffix)]: path for stem, path in files.items() if stem.endswith(suffix) and stem != suffix}


def detect_pred_suffix(pred_dir: str | os.PathLike[str], gt_dir: str | os.PathLike[str]) -> str:
    """The suffix of the prediction files: `MATTE_SUFFIX` ("_alpha") when the folder holds what
    `p3m matte` writes (`<stem>_alpha.png` pairs more ground truths than `<stem>.png`), else ""."""
    predictions = _png_files(Path(pred_dir), "prediction")
    ground_truths = _png_files(Path(gt_dir), "ground-truth")
    direct = len(predictions.keys() & ground_truths.keys())
    suffixed = len(_strip_suffix(predictions, MATTE_SUFFIX).keys() & ground_truths.keys())
    return MATTE_SUFFIX if suffixed > direct else ""


def match_files(
    pred_dir: Path, gt_dir: Path, trimap_dir: Path | None = None, pred_suffix: str = ""
) -> tuple[list[ImageTask], list[SkippedFile]]:
    """Pair predictions, ground truths (and trimaps) by file stem; list what cannot be paired.

    Prediction `<stem><pred_suffix>.png` pairs with ground truth `<stem>.png`; prediction files
    without the suffix are then not predictions (e.g. the `_rgba.png` cut-outs beside
    `p3m matte`'s `_alpha.png`).
    """
    found = _png_files(pred_dir, "prediction")
    ground_truths = _png_files(gt_dir, "ground-truth")
    trimaps = _png_files(trimap_dir, "trimap") if trimap_dir is not None else None
    if not found:
        raise DatasetError("no PNG predictions in this folder", pred_dir)
    suffix = pred_suffix
    predictions = _strip_suffix(found, suffix)
    tasks: list[ImageTask] = []
    skipped: list[SkippedFile] = []
    for stem in sorted(set(predictions) | set(ground_truths)):
        if stem not in predictions:
            skipped.append(SkippedFile(stem, f"no prediction {pred_dir / (stem + suffix + '.png')}"))
        elif stem not in ground_truths:
            skipped.append(SkippedFile(stem, f"no ground truth {gt_dir / (stem + '.png')}"))
        elif trimaps is not None and stem not in trimaps:
            skipped.append(
                SkippedFile(stem, f"no trimap {Path(trimap_dir or '') / (stem + '.png')}")
            )
        else:
            trimap = None if trimaps is None else trimaps[stem]
            tasks.append(ImageTask(stem, predictions[stem], ground_truths[stem], trimap))
    return tasks, skipped


def evaluate_image(task: ImageTask, metrics: Iterable[str] | None = None) -> dict[str, float]:
    """All metrics of one image, read the eval.py way; raises P3MError if it cannot be evaluated."""
    pred_u8 = read_alpha_u8(task.pred_path)
    gt_u8 = read_alpha_u8(task.gt_path)
    if pred_u8.shape != gt_u8.shape:
        raise ShapeMismatchError(
            f"prediction is {pred_u8.shape[1]}x{pred_u8.shape[0]} but the ground truth "
            f"{task.gt_path.name} is {gt_u8.shape[1]}x{gt_u8.shape[0]}",
            task.pred_path,
        )
    trimap = None
    if task.trimap_path is not None:
        # Raw values, as the official eval.py reads them (non-canonical values keep their
        # documented official effect on the trimap metrics).
        trimap_u8 = read_trimap(task.trimap_path, noncanonical="keep")
        if trimap_u8.shape != gt_u8.shape:
            raise ShapeMismatchError(
                f"trimap is {trimap_u8.shape[1]}x{trimap_u8.shape[0]} but the ground truth is "
                f"{gt_u8.shape[1]}x{gt_u8.shape[0]}",
                task.trimap_path,
            )
        trimap = trimap_u8.astype(np.float32)
    pred = pred_u8.astype(np.float32) / np.float32(255.0)
    gt = gt_u8.astype(np.float32) / np.float32(255.0)
    return compute_metrics(pred, gt, trimap, metrics=metrics)


@dataclass(frozen=True)
class ScoreTask:
    """The `p3m.runs.Task` of a folder evaluation: score one `ImageTask` (the item's payload).

    Everything happens in `compute` (one image's metrics; picklable, so it runs in worker
    processes as well); the outcome's details hold the metrics under "metrics".
    """

    metrics: tuple[str, ...] | None = None

    def load(self, item: Item) -> None:
        return None

    def compute(self, item: Item, loaded: None) -> dict[str, float]:
        return evaluate_image(item.payload, self.metrics)

    def write(self, item: Item, result: dict[str, float]) -> Outcome:
        return Outcome(details={"metrics": result})


def evaluate_folder(
    pred_dir: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str],
    trimap_dir: str | os.PathLike[str] | None = None,
    workers: int = 2,
    metrics: Iterable[str] | None = None,
    accumulate: Literal["float64", "eval_py"] = "eval_py",
    on_progress: Callable[[int, int], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    pred_suffix: str | None = None,
) -> FolderEvaluation:
    """Evaluate every prediction PNG in `pred_dir` against the same-stem PNG in `gt_dir`.

    `pred_suffix`: predictions are `<stem><pred_suffix>.png` (e.g. "_alpha", what `p3m matte`
    writes); None detects it (`detect_pred_suffix`); the result's `pred_suffix` says which was used.

    `workers` processes share the images (1 = in this process; as with any multiprocessing code,
    call this under `if __name__ == "__main__":` in a script); the images go through
    `p3m.runs.run_items` and `on_event` receives its progress events. `on_progress(done, total)`,
    the older callback, is still called after each image. The summary uses `accumulate`
    ("eval_py": the official float32 running sum; "float64") and excludes non-finite values,
    listing them.
    """
    pred_path, gt_path = Path(pred_dir), Path(gt_dir)
    trimap_path = None if trimap_dir is None else Path(trimap_dir)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    chosen = None if metrics is None else tuple(metrics)
    suffix = detect_pred_suffix(pred_path, gt_path) if pred_suffix is None else pred_suffix
    tasks, skipped = match_files(pred_path, gt_path, trimap_path, suffix)
    items = [Item(task.name, task.pred_path, payload=task) for task in tasks]
    options = RunOptions(
        resume=False,
        io_threads=0,  # nothing to overlap: reading and scoring are one step
        processes=workers if workers > 1 else 0,
        preload=("p3m.evaluation.folder",),
    )

    def forward(event: Event) -> None:
        if on_event is not None:
            on_event(event)
        if on_progress is not None and isinstance(event, ItemFinished):
            on_progress(event.finished, event.pending)

    report = run_items(items, ScoreTask(chosen), options=options, on_event=forward)
    results: dict[str, dict[str, float]] = {}
    for record in report.records:
        if record.failed:
            skipped.append(SkippedFile(record.key, record.error or "could not be evaluated"))
        else:
            results[record.key] = record.details["metrics"]

    names = sorted(results)
    rows = [(name, results[name]) for name in names]
    skipped.sort(key=lambda item: item.name)
    summary = summarize([values for _, values in rows], names, accumulate=accumulate)
    return FolderEvaluation(
        rows=rows,
        skipped=skipped,
        summary=summary,
        pred_dir=pred_path,
        gt_dir=gt_path,
        trimap_dir=trimap_path,
        accumulate=accumulate,
        pred_suffix=suffix,
    )


def _csv_number(value: float | None) -> str:
    if value is None:
        return ""
    return repr(float(value)) if math.isfinite(value) else str(float(value))


def csv_text(evaluation: FolderEvaluation) -> str:
    """Per-image CSV: header `name,sad,...,conn`; trimap columns empty without a trimap."""
    return rows_csv_text(evaluation.rows)


def rows_csv_text(rows: Iterable[tuple[str, Mapping[str, float]]]) -> str:
    """The per-image CSV of `(name, metrics)` rows (`csv_text`), in the order given."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for name, values in rows:
        writer.writerow([name, *(_csv_number(values.get(key)) for key in METRIC_KEYS)])
    return buffer.getvalue()


def write_csv(path: str | os.PathLike[str], evaluation: FolderEvaluation) -> None:
    """Write the per-image CSV atomically."""
    write_rows_csv(path, evaluation.rows)


def write_rows_csv(path: str | os.PathLike[str], rows: Iterable[tuple[str, Mapping[str, float]]]) -> None:
    """Write the per-image CSV of `(name, metrics)` rows atomically (ImageWriteError on failure)."""
    with atomic_open(
        path, "w", encoding="utf-8", newline="", error_class=ImageWriteError
    ) as handle:
        handle.write(rows_csv_text(rows))


def write_json(path: str | os.PathLike[str], evaluation: FolderEvaluation) -> None:
    """Write the JSON summary (a `MetricsRecord`) atomically; non-finite values as strings."""
    evaluation.record().write(path)


__all__ = [
    "CSV_HEADER",
    "MATTE_SUFFIX",
    "FolderEvaluation",
    "ImageTask",
    "ScoreTask",
    "SkippedFile",
    "csv_text",
    "detect_pred_suffix",
    "evaluate_folder",
    "evaluate_image",
    "match_files",
    "rows_csv_text",
    "write_csv",
    "write_rows_csv",
    "write_json",
]
